"""Evaluate a DLRM checkpoint: exact ROC AUC and BCE loss over a whole split.

  python -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt
  python -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt --split validation
  torchrun --nproc_per_node=8 -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt
  python -m dlrm.evaluate --checkpoint runs/synthetic.pt    # a --synthetic_dataset run: same generator

The model is rebuilt from the checkpoint alone (its stored sizes); no model flags are needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common import amp as amp_lib
from common import cli, config, entry
from common.config import flag
from common.distributed import DistEnv
from common.errors import InputError, RecipeError, UsageError
from common.kernels import HELP as KERNELS_HELP
from dlrm import data as dlrm_data
from dlrm.model import DLRM
from dlrm.scoring import check_compatible, evaluate, load_model

METRICS = {
    "auc": {"format": ":.6f"},
    "validation_loss": {"format": ":.6f"},
    "eval_throughput": {"unit": "samples/s", "format": ":.3e"},
    "eval_time": {"unit": "s", "format": ":.3f"},
}


@dataclass(frozen=True)
class EvaluateConfig:
    checkpoint: Path | None = flag(None, "checkpoint written by dlrm.train (required)")
    dataset: Path | None = flag(None, "prepared dataset directory; none = the checkpoint's synthetic data")
    feature_spec: str = flag("feature_spec.yaml", "feature spec file name, relative to --dataset")
    split: Literal["test", "validation"] = flag("test", "the split to score")
    test_batch_size: int | None = flag(None, "global batch; none = the training run's --test_batch_size")
    prefetch_batches: int = flag(8, "batches read ahead by the background loader thread")
    amp: bool = flag(False, "mixed precision autocast")
    device: Literal["auto", "cpu", "cuda"] = flag(
        "auto", "auto = the local rank's GPU when present, else CPU"
    )
    log_path: Path | None = flag(None, "DLLogger JSON log (rank 0 only)")
    progress: bool = flag(True, "show a tqdm progress bar on rank 0")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)

    def validate(self) -> None:
        if self.checkpoint is None:
            raise ValueError("--checkpoint is required (a checkpoint written by dlrm.train)")
        if self.prefetch_batches <= 0 or (self.test_batch_size is not None and self.test_batch_size <= 0):
            raise ValueError("--prefetch_batches and --test_batch_size must be positive")


def build_source(
    saved: dict, dataset: Path | None, spec_file: str, env: DistEnv, depth: int
) -> dlrm_data.DiskSource | dlrm_data.SyntheticSource:
    """The dataset given, else the synthetic generator the checkpoint was trained on."""
    if dataset is not None:
        ds = dlrm_data.open_dataset(dataset, spec_file)
        return dlrm_data.DiskSource(ds, env.rank, env.world_size, env.device, depth)
    if not saved.get("synthetic_dataset"):
        raise UsageError("--dataset is required (the checkpoint was not trained on --synthetic_dataset)")
    synthetic = dlrm_data.SyntheticCriteo(tuple(saved["synthetic_dataset_table_sizes"]), seed=saved["seed"])
    return dlrm_data.SyntheticSource(
        synthetic, saved["synthetic_dataset_num_entries"], saved["synthetic_dataset_test_entries"],
        env.rank, env.world_size, env.device,
    )  # fmt: skip


def open_inputs(
    cfg: EvaluateConfig, env: DistEnv
) -> tuple[DLRM, dlrm_data.DiskSource | dlrm_data.SyntheticSource, int]:
    """(model, source, global batch), checked against each other before any work; typed errors."""
    try:
        model, ckpt = load_model(cfg.checkpoint, env.device)
        saved = ckpt.get("config", {})
        source = build_source(saved, cfg.dataset, cfg.feature_spec, env, cfg.prefetch_batches)
        check_compatible(model, source, str(cfg.checkpoint), ckpt)
        source.rows(cfg.split)  # a missing split fails here, before any work
    except RecipeError:
        raise
    except (FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from None
    return model, source, cfg.test_batch_size or saved.get("test_batch_size", 32768)


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(
        EvaluateConfig, argv, prog="python -m dlrm.evaluate", description=__doc__.split("\n\n")[0]
    )
    env = entry.start(cfg)
    model, source, batch = open_inputs(cfg, env)
    log = entry.open_log(cfg, env, METRICS, test_batch_size=batch)
    amp = amp_lib.setup(cfg.amp, env.device, "auto")
    t0 = time.perf_counter()
    result = evaluate(model, source.eval_batches(cfg.split, batch), env, amp, cfg.progress and env.is_main)
    elapsed = time.perf_counter() - t0
    summary = {"auc": result["auc"], "validation_loss": result["loss"], "eval_time": elapsed,
               "eval_throughput": result["samples"] / elapsed, "samples": result["samples"]}  # fmt: skip
    return entry.finish(env, log, summary)


if __name__ == "__main__":
    cli.run(main)
