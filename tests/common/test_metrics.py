"""Tests for common.metrics: dedup mask, HR/NDCG vs the authors' dict-based evaluation, exact ROC AUC."""

from __future__ import annotations

import heapq
import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from common.metrics import duplicate_mask, hit_ndcg_sums, hit_rate_at_k, ndcg_at_k, roc_auc

# ---------------------------------------------------------------------------------------------------------
# duplicate_mask


def _mask_of(items: list[list[int]], labels: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return duplicate_mask(torch.tensor(items), torch.tensor(labels))


def test_duplicate_mask_repeated_negatives_keep_first_copy() -> None:
    order, mask = _mask_of([[5, 3, 5, 7, 5, 3]], [[0, 0, 0, 1, 0, 0]])
    assert mask.tolist() == [[False, False, True, False, True, True]]
    assert order.dtype == torch.int64 and mask.dtype == torch.bool


@pytest.mark.parametrize("pos_col", [0, 2, 4])
def test_duplicate_mask_negative_equal_to_positive_keeps_positive(pos_col: int) -> None:
    items = [4, 9, 4, 4, 4]  # column 1 is an unrelated negative; the positive sits at 0, 2 or 4
    labels = [0] * 5
    labels[pos_col] = 1
    _, mask = _mask_of([items], [labels])
    expected = [it == 4 and c != pos_col for c, it in enumerate(items)]
    assert mask[0].tolist() == expected


def test_duplicate_mask_positive_first_middle_last_in_batch() -> None:
    items = [[2, 8, 2, 1], [8, 2, 2, 1], [8, 1, 2, 2]]
    labels = [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    order, mask = _mask_of(items, labels)
    assert mask.tolist() == [
        [False, False, True, False],
        [False, True, False, False],
        [False, False, True, False],
    ]
    # Sorted rows: items ascending, the positive first among its equals.
    sorted_items = torch.tensor(items).gather(1, order)
    sorted_labels = torch.tensor(labels).gather(1, order)
    assert sorted_items.tolist() == [[1, 2, 2, 8]] * 3
    assert sorted_labels.tolist() == [[0, 1, 0, 0]] * 3


def test_duplicate_mask_no_duplicates_and_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    items = torch.stack([torch.randperm(50, generator=g)[:11] for _ in range(7)])
    labels = torch.zeros_like(items)
    labels[:, 3] = 1
    order, mask = duplicate_mask(items, labels)
    assert not mask.any()
    assert (order.sort(dim=1).values == torch.arange(11)).all()
    assert (items.gather(1, order).diff(dim=1) > 0).all()


def test_duplicate_mask_random_rows_are_permutations_and_dedup_exactly() -> None:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(0, 6, (40, 12), generator=g)
    labels = torch.zeros_like(items, dtype=torch.bool)
    labels[torch.arange(40), torch.randint(0, 12, (40,), generator=g)] = True
    order, mask = duplicate_mask(items, labels)
    assert (order.sort(dim=1).values == torch.arange(12)).all()
    for s in range(40):
        kept = items[s][~mask[s]].tolist()
        assert sorted(kept) == sorted(set(items[s].tolist()))  # exactly one copy per distinct item
        assert not mask[s][labels[s]].any()  # the positive is never masked


# ---------------------------------------------------------------------------------------------------------
# hit_ndcg_sums / hit_rate_at_k / ndcg_at_k


def _authors_reference(items, labels, scores, k: int) -> tuple[float, float]:
    """Dict-based evaluation of the NCF authors / MLPerf reference: item->score, heapq.nlargest."""
    hits = ndcg = 0.0
    for row_items, row_labels, row_scores in zip(items, labels, scores):
        gt = next(it for it, lab in zip(row_items, row_labels) if lab)
        negatives = [(it, sc) for it, lab, sc in zip(row_items, row_labels, row_scores) if not lab]
        gt_score = next(sc for it, lab, sc in zip(row_items, row_labels, row_scores) if lab)
        item_score: dict[int, float] = {}
        for it, sc in [*negatives, (gt, gt_score)]:  # test item appended last, duplicates collapse
            item_score[it] = sc
        ranklist = heapq.nlargest(k, item_score, key=item_score.get)
        if gt in ranklist:
            hits += 1.0
            ndcg += math.log(2) / math.log(ranklist.index(gt) + 2)
    return hits, ndcg


def _random_eval_batch(seed: int, s: int = 64, c: int = 21, n_items: int = 15):
    """Rows with many duplicate negatives and the positive often among them; score = f(series, item)."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(0, n_items, (s, c), generator=g)
    labels = torch.zeros(s, c, dtype=torch.int64)
    labels[torch.arange(s), torch.randint(0, c, (s,), generator=g)] = 1
    table = torch.rand(s, n_items, generator=g, dtype=torch.float64)  # continuous: no ties across items
    scores = table.gather(1, items)
    return items, labels, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 10, 21, 30])
def test_hit_ndcg_sums_match_authors_dict_evaluation(seed: int, k: int) -> None:
    items, labels, scores = _random_eval_batch(seed)
    positive_duplicated = ((items == items[labels.bool()].unsqueeze(1)) & (labels == 0)).any(1)
    assert positive_duplicated.any()  # the random data really exercises positive-among-negatives
    _, mask = duplicate_mask(items, labels)
    hits, ndcg = hit_ndcg_sums(scores, labels, mask, k)
    ref_hits, ref_ndcg = _authors_reference(items.tolist(), labels.tolist(), scores.tolist(), k)
    assert hits.dtype == torch.float64 and hits.dim() == 0 and ndcg.dim() == 0
    assert abs(hits.item() - ref_hits) < 1e-12
    assert abs(ndcg.item() - ref_ndcg) < 1e-12
    s = items.shape[0]
    assert abs(hit_rate_at_k(scores, labels, mask, k).item() - ref_hits / s) < 1e-12
    assert abs(ndcg_at_k(scores, labels, mask, k).item() - ref_ndcg / s) < 1e-12


def test_hit_ndcg_float32_logits() -> None:
    items, labels, scores = _random_eval_batch(3)
    logits = torch.logit(scores).float()  # negative values too: masking with -1 would not be enough
    _, mask = duplicate_mask(items, labels)
    hits, ndcg = hit_ndcg_sums(logits, labels, mask, 10)
    ref_hits, ref_ndcg = _authors_reference(items.tolist(), labels.tolist(), logits.tolist(), 10)
    assert abs(hits.item() - ref_hits) < 1e-12 and abs(ndcg.item() - ref_ndcg) < 1e-12


def test_k_larger_than_candidates_is_clamped() -> None:
    items, labels, scores = _random_eval_batch(4, c=8)
    _, mask = duplicate_mask(items, labels)
    assert all(
        torch.equal(a, b)
        for a, b in zip(hit_ndcg_sums(scores, labels, mask, 8), hit_ndcg_sums(scores, labels, mask, 100))
    )
    with pytest.raises(ValueError):
        hit_ndcg_sums(scores, labels, mask, 0)


def test_oracle_and_worst_scorers() -> None:
    items, labels, _ = _random_eval_batch(5)
    _, mask = duplicate_mask(items, labels)
    # Oracle: score = label (int scores are accepted). Ties among negatives are irrelevant.
    assert hit_rate_at_k(labels, labels, mask, 10).item() == 1.0
    assert ndcg_at_k(labels, labels, mask, 1).item() == 1.0
    # Worst: the positive ranks last among unmasked candidates, so it misses for k < distinct count.
    worst = -labels.double()
    distinct = (~mask).sum(1).min().item()
    for k in (1, 5, distinct - 1):
        hits, ndcg = hit_ndcg_sums(worst, labels, mask, k)
        assert hits.item() == 0.0 and ndcg.item() == 0.0
    # With k = C the positive (still above its -inf masked copies) is always found.
    assert hit_rate_at_k(worst, labels, mask, labels.shape[1]).item() == 1.0


def test_hand_computed_ndcg_position() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.7, 0.8, 0.2]])
    labels = torch.tensor([[0, 0, 1, 0, 0]])  # the positive is third: 0-based position 2
    hits, ndcg = hit_ndcg_sums(scores, labels, None, 3)
    assert hits.item() == 1.0 and ndcg.item() == pytest.approx(0.5, abs=1e-15)
    hits, ndcg = hit_ndcg_sums(scores, labels, None, 2)
    assert hits.item() == 0.0 and ndcg.item() == 0.0
    # Masking the top entry moves the positive to position 1: 1/log2(3).
    mask = torch.tensor([[True, False, False, False, False]])
    _, ndcg = hit_ndcg_sums(scores, labels, mask, 3)
    assert ndcg.item() == pytest.approx(1 / math.log2(3), abs=1e-15)


def test_masked_entries_rank_below_logits() -> None:
    scores = torch.tensor([[5.0, -3.0, -2.0]])  # the masked duplicate has the highest score
    labels = torch.tensor([[0, 1, 0]])
    mask = torch.tensor([[True, False, False]])
    hits, ndcg = hit_ndcg_sums(scores, labels, mask, 2)
    assert hits.item() == 1.0 and ndcg.item() == pytest.approx(1 / math.log2(3), abs=1e-15)


# ---------------------------------------------------------------------------------------------------------
# roc_auc


def test_roc_auc_hand_computed() -> None:
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])).item() == 0.75
    # Pairs: (0.5+ vs 0.2) 1, (0.5+ vs 0.5-) 1/2, (0.9+ vs both) 2 -> 3.5 / 4.
    auc = roc_auc(torch.tensor([0.2, 0.5, 0.5, 0.9]), torch.tensor([False, True, False, True]))
    assert auc.item() == 0.875 and auc.dtype == torch.float64 and auc.dim() == 0
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() == 0.5
    assert roc_auc(torch.tensor([0.3, 0.1]), torch.tensor([1, 0])).item() == 1.0
    assert roc_auc(torch.tensor([0.3, 0.1]), torch.tensor([0, 1])).item() == 0.0


def test_roc_auc_single_class_or_empty_is_nan() -> None:
    assert math.isnan(roc_auc(torch.rand(10), torch.ones(10)).item())
    assert math.isnan(roc_auc(torch.rand(10), torch.zeros(10, dtype=torch.bool)).item())
    assert math.isnan(roc_auc(torch.empty(0), torch.empty(0)).item())


_TIE_MAKERS = {
    "round1": lambda x: torch.round(x * 10) / 10,
    "fp16": lambda x: (x * 1e-3).half(),  # tiny logits: fp16 spacing creates many ties
    "bf16": lambda x: x.bfloat16(),
    "fp32": lambda x: x.float(),
}


@pytest.mark.parametrize("n", [2, 3, 17, 1000, 100_000])
@pytest.mark.parametrize("pos_rate", [0.5, 0.01])
@pytest.mark.parametrize("ties", list(_TIE_MAKERS))
def test_roc_auc_matches_sklearn(n: int, pos_rate: float, ties: str) -> None:
    g = torch.Generator().manual_seed(n * 7 + int(pos_rate * 100))
    labels = torch.rand(n, generator=g) < pos_rate
    labels[0], labels[1] = True, False  # both classes present even for tiny / imbalanced draws
    raw = torch.randn(n, generator=g, dtype=torch.float64) + labels.double()  # informative scores
    scores = _TIE_MAKERS[ties](raw)
    expected = roc_auc_score(labels.numpy(), scores.double().numpy())
    for lab in (labels, labels.long(), labels.float()):
        auc = roc_auc(scores, lab)
        assert auc.dtype == torch.float64
        assert abs(auc.item() - expected) < 1e-12


def test_roc_auc_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        roc_auc(torch.rand(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError):
        roc_auc(torch.rand(3), torch.ones(4))


# ---------------------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    dev = torch.device("cuda")
    items, labels, scores = _random_eval_batch(6, s=500, c=101, n_items=120)
    order, mask = duplicate_mask(items, labels)
    items_d, labels_d, scores_d = items.to(dev), labels.to(dev), scores.float().to(dev)
    torch.cuda.synchronize()
    # duplicate_mask and hit_ndcg_sums must not synchronise with the host (copies done beforehand).
    torch.cuda.set_sync_debug_mode("error")
    try:
        order_d, mask_d = duplicate_mask(items_d, labels_d)
        sums_d = hit_ndcg_sums(scores_d, labels_d, mask_d, 10)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert order_d.device.type == "cuda" and sums_d[0].device.type == "cuda"
    assert torch.equal(order_d.cpu(), order) and torch.equal(mask_d.cpu(), mask)
    for a, b in zip(sums_d, hit_ndcg_sums(scores.float(), labels, mask, 10)):
        assert abs(a.item() - b.item()) < 1e-12
    g = torch.Generator().manual_seed(7)
    lab = torch.rand(200_000, generator=g) < 0.03
    sc = (torch.randn(200_000, generator=g) + lab.float()).half()
    auc_d = roc_auc(sc.to(dev), lab.to(dev))
    assert auc_d.device.type == "cuda"
    assert abs(auc_d.item() - roc_auc(sc, lab).item()) < 1e-12
