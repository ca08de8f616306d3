"""Ranking and classification metrics as pure tensor functions.

Shapes: S = number of series (one per evaluated user), C = candidates per series, N = samples.

Everything here is device-agnostic: results live on the inputs' device, nothing calls ``.item()``,
and only ``roc_auc`` synchronises with the host (see its docstring). Nothing here all-reduces;
``hit_ndcg_sums`` returns sums precisely so that a caller can all-reduce them and divide by the
global series count (averaging per-rank means is wrong when ranks hold unequal numbers of series).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "duplicate_mask",
    "hit_ndcg_from_counts",
    "hit_ndcg_sums",
    "hit_rate_at_k",
    "ndcg_at_k",
    "roc_auc",
    "topk_position_counts",
]


def _check_2d(name: str, t: Tensor, shape: torch.Size) -> None:
    if t.dim() != 2 or t.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)} ([S, C]), got {tuple(t.shape)}")


def duplicate_mask(items: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Find candidates that repeat an item already present in their series.

    Args:
        items: [S, C] item ids (integer dtype; float ids are accepted but must be exact).
        labels: [S, C], nonzero (1) for the positive, 0 for the negatives; bool/int/float.

    Returns:
        ``(order, mask)``, both [S, C]. ``order`` (int64) is a per-row permutation (a gather index)
        that sorts each row by the key ``item - 0.5 * label``: items ascending, the label-1 entry
        first among equal items. ``mask`` (bool) is in the ORIGINAL column positions and is True
        where the candidate equals the previous entry of that sorted order, so repeated negatives
        keep one copy and a negative equal to the positive item is masked while the positive is
        kept. Callers typically do ``scores.masked_fill(mask, -inf)`` before ranking.

    This reproduces the reference (NVIDIA DLE ``_deduplication_augmentation``) semantics, which are
    computed once at data-load time. Deduplicating at evaluation time rather than at negative
    generation is deliberate: it matches the MLPerf/authors' dict-based ranking, and moving dedup to
    generation lowers HR@10 by about 0.01 (more distinct candidates).
    """
    _check_2d("labels", labels, items.shape)
    is_negative = labels == 0
    # Integer key 2*item + is_negative orders exactly like item - 0.5*label without float rounding
    # (int64 keeps ids exact up to 2**62).
    key = items.to(torch.float64) if items.is_floating_point() else items.to(torch.int64)
    key = 2 * key + is_negative.to(key.dtype)
    # Stable so that, among identical (item, label) copies, the one kept is the first in column order:
    # deterministic and identical on every device.
    order = torch.sort(key, dim=1, stable=True).indices
    sorted_items = items.gather(1, order)
    dup_sorted = torch.zeros_like(items, dtype=torch.bool)
    dup_sorted[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]  # the first entry is never masked
    mask = torch.empty_like(dup_sorted).scatter_(1, order, dup_sorted)
    return order, mask


def topk_position_counts(scores: Tensor, labels: Tensor, mask: Tensor | None, k: int) -> Tensor:
    """How many label-1 entries sit at each 0-based top-k position, over all S series: int64 [k].

    Args:
        scores: [S, C] candidate scores, e.g. sigmoid probabilities or raw logits. Non-float
            scores are converted to float64.
        labels: [S, C], nonzero for the positive(s).
        mask: [S, C] bool (see ``duplicate_mask``) or None. Masked entries are set to -inf, so they
            rank below every real score, logits included (the reference uses -1, valid for sigmoids only).
        k: cut-off; values above C are clamped to C (the result then has C entries).

    Integer counts are what ranks should all-reduce: the sum is exact whatever the sharding, so HR and
    NDCG derived from it (``hit_ndcg_from_counts``) are bit-identical on 1 and on N ranks.
    Ties between equal scores are ordered by ``torch.topk`` (unspecified order), as in the reference.
    """
    _check_2d("labels", labels, scores.shape)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if mask is not None:
        _check_2d("mask", mask, scores.shape)
        scores = scores.masked_fill(mask, float("-inf"))
    k = min(k, scores.shape[1])
    top_idx = torch.topk(scores, k, dim=1, largest=True, sorted=True).indices
    return (labels.gather(1, top_idx) != 0).sum(0, dtype=torch.int64)  # [k]


def hit_ndcg_from_counts(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(hits, ndcg) sums from top-k position counts: NDCG adds ``1/log2(p + 2)`` per positive at position p."""
    discount = 1.0 / torch.log2(torch.arange(counts.numel(), device=counts.device, dtype=torch.float64) + 2.0)
    counts = counts.to(torch.float64)
    return counts.sum(), (counts * discount).sum()


def hit_ndcg_sums(scores: Tensor, labels: Tensor, mask: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
    """Summed HR@k and NDCG@k over series (sums, not means), as float64 0-dim tensors.

    Arguments as in ``topk_position_counts``. ``hits`` is the number of label-1 entries in the top k,
    summed over series; ``ndcg`` sums ``1/log2(p + 2)`` over label-1 entries at 0-based top-k position p.
    Divide both by the (global) number of series. Every label-1 entry counts, so keep exactly one
    positive per series or HR can exceed 1.
    """
    return hit_ndcg_from_counts(topk_position_counts(scores, labels, mask, k))


def hit_rate_at_k(scores: Tensor, labels: Tensor, mask: Tensor | None = None, k: int = 10) -> Tensor:
    """HR@k averaged over the S series of [S, C] ``scores``; float64 0-dim (NaN when S == 0)."""
    hits, _ = hit_ndcg_sums(scores, labels, mask, k)
    return hits / scores.shape[0]


def ndcg_at_k(scores: Tensor, labels: Tensor, mask: Tensor | None = None, k: int = 10) -> Tensor:
    """NDCG@k averaged over the S series of [S, C] ``scores``; float64 0-dim (NaN when S == 0)."""
    _, ndcg = hit_ndcg_sums(scores, labels, mask, k)
    return ndcg / scores.shape[0]


def roc_auc(scores: Tensor, labels: Tensor) -> Tensor:
    """Exact ROC AUC, ties handled like ``sklearn.metrics.roc_auc_score``.

    Args:
        scores: [N] scores of any float dtype (probabilities or logits; AUC is rank-based). They
            are compared in their own dtype, so ties created by low precision (fp16/bf16) are real
            ties, exactly as sklearn would see those values.
        labels: [N] bool/int/float; nonzero is the positive class.

    Returns:
        float64 0-dim tensor on the inputs' device. NaN when only one class (or no sample) is present,
        where AUC is undefined (sklearn raises instead).

    This is the Mann-Whitney U with average ranks: a positive/negative pair counts 1 when the positive
    scores higher and 1/2 when tied. Scores are sorted once; for each tie group g (from
    ``unique_consecutive``) with p_g positives and n_g negatives and B_g negatives in lower groups,
    ``U = sum_g p_g * (B_g + n_g / 2)`` -- the same as summing the positives' average ranks. Counts
    are accumulated as exact int64 (2U <= N**2/2 fits for N < 4e9) and only the final ratio is float64,
    so there is no fp32 counting error at Criteo size (~89M rows, beyond fp32's 2**24 exact integers).

    Host sync: ``unique_consecutive`` has a data-dependent output size, so it synchronises once.
    """
    if scores.dim() != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {scores.shape}, {labels.shape}")
    sorted_scores, perm = torch.sort(scores)
    positive = (labels != 0)[perm].to(torch.int64)
    _, counts = torch.unique_consecutive(sorted_scores, return_counts=True)  # [G] tie-group sizes
    group_end = torch.cumsum(counts, 0) - 1  # last sorted index of each group
    pos_cum = torch.cumsum(positive, 0).index_select(0, group_end)  # positives up to each group end
    neg_cum = group_end + 1 - pos_cum
    pos_in_group = torch.diff(pos_cum, prepend=pos_cum.new_zeros(1))
    neg_in_group = counts - pos_in_group
    neg_below = neg_cum - neg_in_group
    twice_u = (pos_in_group * (2 * neg_below + neg_in_group)).sum()
    n_pos = positive.sum()
    n_neg = positive.numel() - n_pos
    # 0/0 -> NaN for a single class, computed on-device (no branch on a tensor value).
    return twice_u.to(torch.float64) / (2 * n_pos * n_neg).to(torch.float64)
