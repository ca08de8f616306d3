"""Evaluate a DLRM checkpoint: exact ROC AUC and BCE loss over a whole split.

  python -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt
  python -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt --split validation
  torchrun --nproc_per_node=8 -m dlrm.evaluate --dataset /data/dlrm --checkpoint runs/dlrm.pt
  python -m dlrm.evaluate --checkpoint runs/synthetic.pt    # a --synthetic_dataset run: same generator

The model is rebuilt from the checkpoint alone (its stored sizes); no model flags are needed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import amp as amp_lib
from common import checkpoint, distributed, metrics
from common.distributed import DistEnv
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from dlrm import data as dlrm_data
from dlrm.data import DlrmBatch
from dlrm.model import DLRM, DlrmSizes

METRICS = {
    "auc": {"format": ":.6f"},
    "validation_loss": {"format": ":.6f"},
    "eval_throughput": {"unit": "samples/s", "format": ":.3e"},
    "eval_time": {"unit": "s", "format": ":.3f"},
}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: Iterable[DlrmBatch], env: DistEnv, amp: amp_lib.Amp | None = None,
    show: bool = False,
) -> dict[str, float]:  # fmt: skip
    """{"auc", "loss", "samples"} of `model` over this rank's batches, combined over all ranks.

    AUC is exact over the WHOLE split (dlrm.md §5.1): every rank's logits are gathered and ranked once
    (float64 counts, ties as scikit-learn), so 1 and N ranks give the same value. Logits rather than
    sigmoid(logit) are ranked: fp32 sigmoid saturates and would add ties the model did not make.
    `model` takes (numerical, categorical): a DLRM or a sharded wrapper (then every rank must call it
    the same number of times, which dlrm.data's eval batches guarantee).
    """
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in tqdm(batches, disable=not show, leave=False, desc="eval", file=sys.stderr):
        with amp.autocast() if amp is not None else contextlib.nullcontext():
            logits.append(model(batch.numerical, batch.categorical).float())
        labels.append(batch.label)
    model.train(was_training)
    device = env.device
    logits_t = torch.cat(logits) if logits else torch.empty(0, device=device)
    labels_t = torch.cat(labels) if labels else torch.empty(0, device=device)
    # float64 sum: the result must not depend on how rows are split over ranks
    loss_sum = F.binary_cross_entropy_with_logits(logits_t.double(), labels_t.double(), reduction="sum")
    loss_sum = distributed.all_reduce_sum(loss_sum.reshape(1), env)
    all_logits = distributed.all_gather_cat(logits_t, env)
    all_labels = distributed.all_gather_cat(labels_t, env)
    n = all_labels.numel()
    if n == 0 or all_labels.min() == all_labels.max():
        raise ValueError(f"AUC needs both classes among the evaluated samples; got {n} samples of one class")
    auc = metrics.roc_auc(all_logits, all_labels)
    return {"auc": float(auc), "loss": float(loss_sum) / n, "samples": n}


def load_model(path: Path, device: torch.device) -> tuple[DLRM, dict]:
    """The checkpoint's DLRM; another recipe's checkpoint, or one from before checkpoints named their
    recipe whose hyperparameters are not DLRM's, is one ValueError naming the file."""
    model, ckpt = checkpoint.load_model(
        path, build_model, recipe="dlrm", what="a DLRM checkpoint written by dlrm.train"
    )
    return model.to(device), ckpt


def build_model(hyperparams: dict) -> DLRM:
    """The checkpoint's DLRM with DENSE embeddings: sparse=True only changes the gradient layout, not the
    forward (same weights either way)."""
    return DLRM(DlrmSizes.from_dict(hyperparams), sparse=False)


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


def dataset_facts(source) -> dict:
    """What a checkpoint records about its training data (checkpoint.save(dataset=...)): the categorical
    cardinalities as the data states them (before any --max_table_size clip), the numerical width and
    the training rows. Evaluation checks the first two; a resume checks all three."""
    return {
        "cardinalities": [int(n) for n in source.table_sizes],
        "num_numerical": int(source.num_numerical),
        "train_rows": int(source.rows("train")),
    }


def check_compatible(model: DLRM, source, where: str, ckpt: dict) -> None:
    """The data must be the kind the model was trained on: the checkpoint's recorded cardinalities must
    equal the data's (an id means another value in a dataset with another vocabulary, even where hashing
    would make every id fit), and the tables must be what training builds from the data's cardinalities
    (each one, clipped to the checkpoint's --max_table_size when that was set)."""
    s = model.sizes
    if s.num_numerical != source.num_numerical or len(s.table_sizes) != len(source.table_sizes):
        raise ValueError(
            f"{where}: the model takes {s.num_numerical} numerical and {len(s.table_sizes)} categorical "
            f"features, the data has {source.num_numerical} and {len(source.table_sizes)}"
        )
    recorded = (ckpt.get("dataset") or {}).get("cardinalities")
    if recorded is not None and list(recorded) != list(source.table_sizes):
        raise ValueError(
            f"{where} was trained on data with categorical cardinalities {list(recorded)}, this data has "
            f"{list(source.table_sizes)}: a different dataset or vocabulary"
        )
    cap = (ckpt.get("config") or {}).get("max_table_size")
    if list(s.table_sizes) != [min(n, cap) if cap else n for n in source.table_sizes]:
        raise ValueError(
            f"{where}: tables {list(s.table_sizes)} do not match this data's cardinalities "
            f"{list(source.table_sizes)}" + (f" clipped to --max_table_size {cap}" if cap else "")
        )


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
    args = p.parse_args(argv)
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
    distributed.run_main(main)
