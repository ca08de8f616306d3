"""Evaluate a SIM/DIN/DIEN checkpoint: exact AUC and loss over a split (the train loop calls `evaluate`).

  python -m sim.evaluate --dataset_dir /data/sim --checkpoint runs/sim/ckpt.pt
  torchrun --nproc_per_node=8 -m sim.evaluate --dataset_dir /data/sim --checkpoint runs/sim/ckpt.pt --split train

The model is rebuilt from the checkpoint alone (its stored sizes). Each rank scores its contiguous row
shard; scores and labels are gathered for an exact AUC, so 1 and N ranks give the same AUC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from common import amp as amp_lib
from common import checkpoint, distributed, metrics
from common.distributed import DistEnv
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from sim import checkpoint_rules
from sim import data as sim_data
from sim.losses import classification_per_sample
from sim.models import SimSizes


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


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """(model on CPU with the checkpoint's weights, checkpoint dict); another recipe's file is refused."""
    build = checkpoint_rules.model_builder(path)
    return checkpoint.load_model(path, build, recipe=checkpoint_rules.RECIPE, what="a SIM model")


def check_compatible(sizes: SimSizes, schema: sim_data.SimSchema, source: object) -> None:
    """The dataset must have the tables (and history split) the model was built for."""
    have = (schema.user_cardinalities, schema.item_cardinalities)
    want = (sizes.user_cardinalities, sizes.item_cardinalities)
    if have != want:
        raise ValueError(f"{source} was built for user/item cardinalities {want}, the dataset has {have}")
    if sizes.uses_negatives and schema.history_length <= sizes.long_seq_length:
        raise ValueError(
            f"{sizes.model_type} needs history longer than long_seq_length={sizes.long_seq_length}; "
            f"the dataset's history length is {schema.history_length}"
        )


METRICS = {f"{split}_{m}": {"format": ":.5f"} for split in ("train", "test") for m in ("auc", "loss")}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="python -m sim.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--dataset_dir", type=Path, required=True, help="prepared dataset directory (required)")
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="a checkpoint written by sim.train (required)"
    )
    p.add_argument("--feature_spec", default="feature_spec.yaml", help="spec file name inside --dataset_dir")
    p.add_argument("--split", choices=("train", "test"), default="test", help="which mapping to score")
    p.add_argument("--batch_size", type=int, default=131072, help="GLOBAL evaluation batch")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16/fp16 autocast")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    p.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log")
    args = p.parse_args(argv)
    env = distributed.init(args.device)
    log = JsonLogger(args.log_path, enabled=env.is_main, metadata=METRICS)
    log.parameters({**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "world_size": env.world_size})  # fmt: skip
    try:
        model, ckpt = load_model(args.checkpoint)
        spec, schema = sim_data.open_spec(args.dataset_dir, args.feature_spec)
        checkpoint_rules.check_dataset(ckpt, schema, args.checkpoint, checkpoint_rules.CARDINALITIES)
        check_compatible(model.sizes, schema, args.checkpoint)
        shard = distributed.shard_range(sim_data.split_length(spec, args.split), env)
        negatives = schema.history_length - model.sizes.long_seq_length if model.sizes.uses_negatives else 0
        data = sim_data.load_split(spec, schema, args.split, negative_length=negatives, shard=shard,
                                   device=env.device, show=env.is_main)  # fmt: skip
    except (FeatureSpecError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    model = model.to(env.device)
    local_batch = max(1, args.batch_size // env.world_size)
    try:
        result = evaluate(model, data, env, local_batch, amp_lib.setup(args.amp, env.device), env.is_main)
    except FloatingPointError as e:
        print(f"error: {args.checkpoint}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    result = {f"{args.split}_{k}": v for k, v in result.items()}
    log.summary(result)
    log.close()
    distributed.shutdown(env)
    return result


if __name__ == "__main__":
    distributed.run_main(main)
