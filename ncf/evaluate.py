"""Evaluate a trained NeuMF checkpoint: HR@K and NDCG@K over the leave-one-out test series.

  python -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt
  torchrun --nproc_per_node=8 -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt

The model is rebuilt from the checkpoint alone (its stored sizes); no model flags are needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from common import distributed, metrics, throughput
from common.distributed import DistEnv
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data


def ranking_metrics(
    scores: torch.Tensor, data: ncf_data.NcfData, env: DistEnv, k: int
) -> tuple[float, float]:
    """HR@k and NDCG@k of this rank's [S_local, C] candidate scores (any scorer: model, oracle, baseline).

    Ranks all-reduce integer top-k position counts, so the metrics are bit-identical for any number of
    ranks. Masked duplicates rank last (reference dedup semantics).
    """
    start, stop = distributed.shard_range(data.series, env)
    counts = metrics.topk_position_counts(scores, data.test_labels[start:stop], data.test_mask[start:stop], k)
    hits, ndcg = metrics.hit_ndcg_from_counts(distributed.all_reduce_sum(counts, env))
    return float(hits) / data.series, float(ndcg) / data.series


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ncf_data.NcfData, env: DistEnv, k: int, chunk_rows: int) -> dict:
    """HR@k, NDCG@k and validation loss of `model` (unwrapped, fp32) on this rank's whole series.

    Validation loss is the BCE over every candidate (duplicates included, as the reference), averaged
    over all rows of all ranks.
    """
    was_training = model.training
    model.eval()
    start, stop = distributed.shard_range(data.series, env)
    users, items = data.test_users[start:stop], data.test_items[start:stop]
    per_series = items.shape[1]
    chunk_series = max(1, chunk_rows // per_series)  # whole series per forward chunk
    logits = torch.cat(
        [model(u.reshape(-1), i.reshape(-1)).float().view(-1, per_series)
         for u, i in zip(users.split(chunk_series), items.split(chunk_series))]
        or [torch.empty(0, per_series, device=items.device)]
    )  # fmt: skip
    model.train(was_training)
    hr, ndcg = ranking_metrics(logits, data, env, k)
    labels = data.test_labels[start:stop].double()  # float64 sum: rank count must not move the result
    loss = F.binary_cross_entropy_with_logits(logits.double(), labels, reduction="sum")
    loss = distributed.all_reduce_sum(loss, env)
    return {f"hr@{k}": hr, f"ndcg@{k}": ndcg, "validation_loss": float(loss) / data.test_labels.numel()}


def popularity_scores(data: ncf_data.NcfData, env: DistEnv) -> torch.Tensor:
    """Score = the item's number of training interactions: the baseline a model must clearly beat."""
    counts = torch.bincount(data.train_items.long(), minlength=data.num_items).to(torch.float32)
    start, stop = distributed.shard_range(data.series, env)
    return counts[data.test_items[start:stop].long()]


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
    args = parser.parse_args(argv)
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
    distributed.run_main(main)
