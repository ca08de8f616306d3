"""Scoring a SIM/DIN/DIEN model: exact AUC and loss over a split (sim.train after every epoch, sim.evaluate
for a checkpoint), and the check that a dataset has the tables a model was built for."""

from __future__ import annotations

import torch
from tqdm import tqdm

from common import amp as amp_lib
from common import distributed, metrics
from common.distributed import DistEnv
from common.errors import InputError
from sim import data as sim_data
from sim.losses import classification_per_sample
from sim.models import SimSizes
from sim.schema import SimSchema


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: sim_data.SplitData, env: DistEnv, batch_size: int, amp: amp_lib.Amp,
    show: bool = False,
) -> dict[str, float]:  # fmt: skip
    """{"auc", "loss"} of the unwrapped `model` over every rank's shard of a split, in eval mode.

    auc: exact ROC AUC of the gathered logits (not the reference's 8000-bin approximation). A NaN/inf
    logit (diverged weights) raises FloatingPointError instead of ranking garbage.
    loss: the training objective in eval mode, aggregated exactly (the reference averages per-batch means):
    classification loss summed over samples / rows + aux loss summed over valid pairs / pairs.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=data.rows.device)  # classification, aux, aux pairs
    scores = []
    starts = range(0, len(data), batch_size)
    for lo in tqdm(starts, desc="evaluate", disable=not show, leave=False):
        batch = data.batch(slice(lo, lo + batch_size))
        with amp.autocast():
            out = model(batch)
        scores.append(out.logits.float())
        sums[0] += classification_per_sample(out, batch.label).double().sum()
        if out.aux_loss is not None:
            sums[1] += out.aux_loss.double() * out.aux_pairs
            sums[2] += out.aux_pairs
    model.train(was_training)
    local = torch.cat(scores) if scores else data.rows.new_zeros(0, dtype=torch.float32)
    logits = distributed.all_gather_cat(local, env)  # the same on every rank: all refuse alike
    if bad := int((~torch.isfinite(logits)).sum()):
        raise FloatingPointError(
            f"the model gives non-finite (NaN/inf) logits for {bad} of {len(logits)} rows"
        )
    auc = metrics.roc_auc(logits, distributed.all_gather_cat(data.rows[:, 0], env))
    sums = distributed.all_reduce_sum(sums, env)
    loss = sums[0] / data.total_rows + sums[1] / sums[2].clamp_min(1)
    return {"auc": float(auc), "loss": float(loss)}


def evaluate_splits(
    model: torch.nn.Module, splits: dict[str, sim_data.SplitData], env: DistEnv, batch_size: int,
    amp: amp_lib.Amp, show: bool = False,
) -> dict[str, float]:  # fmt: skip
    """`evaluate` of each split, named as the logs and summaries name them: {"<split>_auc", "<split>_loss"}."""
    record = {}
    for name, data in splits.items():
        result = evaluate(model, data, env, batch_size, amp, show)
        record |= {f"{name}_auc": result["auc"], f"{name}_loss": result["loss"]}
    return record


def check_compatible(sizes: SimSizes, schema: SimSchema, source: object) -> None:
    """The dataset must have the tables (and history split) the model was built for."""
    have = (schema.user_cardinalities, schema.item_cardinalities)
    want = (sizes.user_cardinalities, sizes.item_cardinalities)
    if have != want:
        raise InputError(f"{source} was built for user/item cardinalities {want}, the dataset has {have}")
    if sizes.uses_negatives and schema.history_length <= sizes.long_seq_length:
        raise InputError(
            f"{sizes.model_type} needs history longer than long_seq_length={sizes.long_seq_length}; "
            f"the dataset's history length is {schema.history_length}"
        )
