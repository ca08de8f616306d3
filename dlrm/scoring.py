"""Scoring a DLRM model: exact ROC AUC and BCE loss over a split (dlrm.train at every evaluation,
dlrm.evaluate for a checkpoint), loading a checkpoint's model, and the data facts a checkpoint must match."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import amp as amp_lib
from common import checkpoint, distributed, metrics
from common.distributed import DistEnv
from dlrm.data import DlrmBatch
from dlrm.model import DLRM, DlrmSizes


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: Iterable[DlrmBatch], env: DistEnv, amp: amp_lib.Amp | None = None,
    show: bool = False,
) -> dict[str, float]:  # fmt: skip
    """{"auc", "loss", "samples"} of `model` over this rank's batches, combined over all ranks.

    AUC is exact over the WHOLE split (NVIDIA's too): every rank's logits are gathered and ranked once
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
