"""Ranking quality of NeuMF scores: HR@K and NDCG@K over the leave-one-out test series, the validation
loss, and the popularity baseline (ncf.train after every epoch, ncf.evaluate for a checkpoint, ncf.demo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common import distributed, metrics
from common.distributed import DistEnv
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
