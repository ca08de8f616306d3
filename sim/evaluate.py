"""Evaluate a SIM/DIN/DIEN checkpoint: exact AUC and loss over a split (sim/scoring.py).

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

from common import amp as amp_lib
from common import checkpoint, cli, distributed, kernels
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from sim import checkpoint_rules
from sim import data as sim_data
from sim.scoring import check_compatible, evaluate


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """(model on CPU with the checkpoint's weights, checkpoint dict); another recipe's file is refused."""
    build = checkpoint_rules.model_builder(path)
    return checkpoint.load_model(path, build, recipe=checkpoint_rules.RECIPE, what="a SIM model")


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
    kernels.add_argument(p)
    args = p.parse_args(argv)
    kernels.set_policy(args.kernels)
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
    cli.run(main)
