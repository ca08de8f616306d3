"""Evaluate a trained NeuMF checkpoint: HR@K and NDCG@K over the leave-one-out test series.

  python -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt
  torchrun --nproc_per_node=8 -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt

The model is rebuilt from the checkpoint alone (its stored sizes); no model flags are needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import cli, distributed, kernels, throughput
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data
from ncf.ranking import evaluate, popularity_scores, ranking_metrics

METRICS = {"hr@10": {"format": ":.5f"}, "ndcg@10": {"format": ":.5f"}, "validation_loss": {"format": ":.5f"},
           "eval_throughput": {"unit": "samples/s", "format": ":.3e"}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m ncf.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory (required)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="best.pt / last.pt written by ncf.train")
    what.add_argument("--baseline", choices=("popularity",), help="score a baseline instead of a model")
    parser.add_argument(
        "--feature_spec_file", default="feature_spec.yaml", help="(default: feature_spec.yaml)"
    )
    parser.add_argument("--topk", "-k", type=int, default=10, help="K of HR@K / NDCG@K (default: 10)")
    parser.add_argument(
        "--valid_batch_size", type=int, default=2**20, help="rows per forward (default: 1048576)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: auto)")
    parser.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log (default: None)")
    kernels.add_argument(parser)
    args = parser.parse_args(argv)
    kernels.set_policy(args.kernels)
    env = distributed.init(args.device)
    log = JsonLogger(args.log_path, enabled=env.is_main, metadata=METRICS)
    log.parameters({**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "world_size": env.world_size})  # fmt: skip
    try:
        data = ncf_data.load(args.data, args.feature_spec_file, env.device)
        model = None
        if args.checkpoint:
            model, ckpt = ncf_checkpoints.load_model(args.checkpoint, env.device)
            ncf_checkpoints.check_dataset(args.checkpoint, ckpt, data, args.data)
    except (FeatureSpecError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    clock = throughput.Clock(env.device)
    if model is not None:
        result = evaluate(model, data, env, args.topk, args.valid_batch_size)
    else:
        hr, ndcg = ranking_metrics(popularity_scores(data, env), data, env, args.topk)
        result = {f"hr@{args.topk}": hr, f"ndcg@{args.topk}": ndcg}
    result["eval_throughput"] = data.test_items.numel() / clock.lap()
    log.summary(result)
    log.close()
    distributed.shutdown(env)
    return result


if __name__ == "__main__":
    cli.run(main)
