"""Evaluate a DLRM checkpoint: exact ROC AUC and BCE loss over a whole split.

  python -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt
  python -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt --split validation
  torchrun --nproc_per_node=8 -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt
  python -m dlrm.evaluate --checkpoint runs/synthetic.pt    # a --synthetic_dataset run: same generator

The model is rebuilt from the checkpoint alone (its stored sizes); no model flags are needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import amp as amp_lib
from common import cli, distributed, kernels
from common.distributed import DistEnv
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from dlrm import data as dlrm_data
from dlrm.scoring import check_compatible, evaluate, load_model

METRICS = {
    "auc": {"format": ":.6f"},
    "validation_loss": {"format": ":.6f"},
    "eval_throughput": {"unit": "samples/s", "format": ":.3e"},
    "eval_time": {"unit": "s", "format": ":.3f"},
}


def build_source(
    saved: dict, dataset: Path | None, spec_file: str, env: DistEnv, depth: int
) -> dlrm_data.DiskSource | dlrm_data.SyntheticSource:
    """The dataset given, else the synthetic generator the checkpoint was trained on."""
    if dataset is not None:
        ds = dlrm_data.open_dataset(dataset, spec_file)
        return dlrm_data.DiskSource(ds, env.rank, env.world_size, env.device, depth)
    if not saved.get("synthetic_dataset"):
        raise ValueError("--dataset is required (the checkpoint was not trained on --synthetic_dataset)")
    synthetic = dlrm_data.SyntheticCriteo(tuple(saved["synthetic_dataset_table_sizes"]), seed=saved["seed"])
    return dlrm_data.SyntheticSource(
        synthetic, saved["synthetic_dataset_num_entries"], saved["synthetic_dataset_test_entries"],
        env.rank, env.world_size, env.device,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="python -m dlrm.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="checkpoint written by dlrm.train (required)"
    )
    p.add_argument("--dataset", type=Path, default=None,
                   help="prepared dataset directory (default: None = the checkpoint's synthetic data)")  # fmt: skip
    p.add_argument("--feature_spec", default="feature_spec.yaml", help="(default: feature_spec.yaml)")
    p.add_argument("--split", choices=("test", "validation"), default="test", help="(default: test)")
    p.add_argument("--test_batch_size", type=int, default=None,
                   help="global batch (default: None = the training run's --test_batch_size)")  # fmt: skip
    p.add_argument("--prefetch_batches", type=int, default=8, help="read-ahead batches (default: 8)")
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=False, help="autocast (default: False)"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: auto)")
    p.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log (default: None)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="(default: True)")
    kernels.add_argument(p)
    args = p.parse_args(argv)
    kernels.set_policy(args.kernels)
    owns_group = not torch.distributed.is_initialized()  # a caller's process group is left to the caller
    env = distributed.init(args.device)
    try:
        model, ckpt = load_model(args.checkpoint, env.device)
        saved = ckpt.get("config", {})
        source = build_source(saved, args.dataset, args.feature_spec, env, args.prefetch_batches)
        check_compatible(model, source, str(args.checkpoint), ckpt)
        batch = args.test_batch_size or saved.get("test_batch_size", 32768)
        source.rows(args.split)  # a missing split fails here, before any work
    except (FeatureSpecError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    log = JsonLogger(args.log_path, enabled=env.is_main, metadata=METRICS)
    log.parameters({**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "test_batch_size": batch, "world_size": env.world_size})  # fmt: skip
    amp = amp_lib.setup(args.amp, env.device, "auto")
    t0 = time.perf_counter()
    result = evaluate(model, source.eval_batches(args.split, batch), env, amp, args.progress and env.is_main)
    elapsed = time.perf_counter() - t0
    summary = {"auc": result["auc"], "validation_loss": result["loss"], "eval_time": elapsed,
               "eval_throughput": result["samples"] / elapsed, "samples": result["samples"]}  # fmt: skip
    log.summary(summary)
    log.close()
    if owns_group:
        distributed.shutdown(env)
    return summary


if __name__ == "__main__":
    cli.run(main)
