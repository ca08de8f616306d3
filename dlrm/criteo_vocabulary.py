"""Categorical value counts, the frequency-ranked vocabulary, and the two per-value transforms.

Reference semantics (NVIDIA DLRM's Spark path): counted over every day / line (train, test and
validation); a value is kept iff it occurs at least `threshold` times; kept values get ids 1..K by
DESCENDING count (Spark breaks ties arbitrarily; we break them by ascending raw 32-bit value, so reruns are
identical); missing and rare values share id 0; cardinality K + 1. Numerical: ln(x + 3) for present
values, 0 for missing ones and for x <= -3 (Spark's log returns NULL for a non-positive argument and the
NULL is filled with 0; NVTabular's formula would give -inf at x = -3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

Run = tuple[np.ndarray, np.ndarray]  # (sorted unique uint32 keys, int64 counts)


def count_values(values: list[np.ndarray]) -> Run:
    """Counts of the raw values in `values` (uint32 pieces, e.g. one per block), as a sorted run."""
    if not values:
        return np.empty(0, np.uint32), np.empty(0, np.int64)
    keys, counts = np.unique(np.concatenate(values), return_counts=True)
    return keys, counts.astype(np.int64)


def merge_runs(a: Run, b: Run) -> Run:
    """Sum two sorted runs without sorting: values of `b` already in `a` add to a's counts (IN PLACE,
    the merger owns its runs), the others are inserted at their searchsorted positions.

    Memory: the output (12 bytes per entry) plus 9 bytes per entry of `b`; an argsort-based merge needed
    ~5x more at the final, largest merges of pass 1.
    """
    (a_keys, a_counts), (b_keys, b_counts) = a, b
    if not len(a_keys) or not len(b_keys):
        return a if len(a_keys) else b
    pos = np.searchsorted(a_keys, b_keys)
    known = pos < len(a_keys)
    known[known] = a_keys[pos[known]] == b_keys[known]
    a_counts[pos[known]] += b_counts[known]  # positions are distinct: keys are unique within a run
    new = ~known
    dest = pos[new] + np.arange(int(new.sum()))  # where b's new values land in the merged run
    from_a = np.ones(len(a_keys) + len(dest), bool)
    from_a[dest] = False
    keys = np.empty(len(from_a), a_keys.dtype)
    counts = np.empty(len(from_a), np.int64)
    keys[from_a], counts[from_a] = a_keys, a_counts
    keys[dest], counts[dest] = b_keys[new], b_counts[new]
    return keys, counts


def combine_runs(runs: list[Run]) -> Run:
    """Sum sorted runs: one stable argsort of the concatenation (timsort merges sorted runs in linear
    time), then a segmented sum."""
    if len(runs) == 1:
        return runs[0]
    keys = np.concatenate([keys for keys, _ in runs])
    counts = np.concatenate([counts for _, counts in runs]).astype(np.int64, copy=False)
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    return keys[starts], np.add.reduceat(counts, starts) if len(starts) else counts


class CountMerger:
    """Per-feature value counts accumulated from per-segment runs, in memory bounded by the vocabulary.

    New runs wait in a pending list until they hold half as many entries as the accumulated run (at
    least 1M), then are combined with one sort and merged in (merge_runs: known values add their counts,
    new ones are inserted). Each incoming entry is thus sorted once and merged a few times: O(U) work
    for U run entries when most values recur (Criteo's heavy heads), O(U log U) at worst. Peak memory
    grows with distinct values (12 bytes each at rest; the accumulated run, pending runs and the merge
    output together peak at several times that), never with rows.
    """

    min_flush = 1 << 20  # entries: below this, pending runs just wait (tests lower it)

    def __init__(self, features: int) -> None:
        empty = (np.empty(0, np.uint32), np.empty(0, np.int64))
        self.runs: list[Run] = [empty] * features
        self.pending: list[list[Run]] = [[] for _ in range(features)]
        self.pending_entries = [0] * features

    def add(self, feature: int, run: Run) -> None:
        self.pending[feature].append(run)
        self.pending_entries[feature] += len(run[0])
        if self.pending_entries[feature] >= max(len(self.runs[feature][0]) // 2, self.min_flush):
            self._flush(feature)

    def _flush(self, feature: int) -> None:
        if self.pending[feature]:
            self.runs[feature] = merge_runs(self.runs[feature], combine_runs(self.pending[feature]))
            self.pending[feature], self.pending_entries[feature] = [], 0

    def result(self, feature: int) -> Run:
        """The feature's (sorted raw values, counts); the merger drops its reference to them."""
        self._flush(feature)
        run, self.runs[feature] = self.runs[feature], (np.empty(0, np.uint32), np.empty(0, np.int64))
        return run


def build_vocabulary(run: Run, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lookup keys: kept raw values ascending, their ids, raw value of id 1..K in id order).

    Ids are in the feature's output dtype (smallest_int_dtype(K + 1)), so lookups need no cast.
    """
    from common.feature_spec import smallest_int_dtype  # imports torch: kept out of the worker processes

    keys, counts = run
    kept = counts >= threshold
    keys, counts = keys[kept], counts[kept]
    by_id = np.lexsort((keys, -counts))  # most frequent first; ties by ascending raw value
    dtype = smallest_int_dtype(len(keys) + 1)
    ids = np.empty(len(keys), dtype)
    ids[by_id] = np.arange(1, len(keys) + 1)
    return keys, ids, keys[by_id]


def save_lookup(directory: Path, feature: int, keys: np.ndarray, ids: np.ndarray) -> None:
    np.save(directory / f"keys_{feature}.npy", keys)
    np.save(directory / f"ids_{feature}.npy", ids)


def load_lookups(directory: str | Path, features: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Memory-mapped, so every worker process shares one copy through the page cache."""
    directory = Path(directory)
    return [
        (
            np.load(directory / f"keys_{j}.npy", mmap_mode="r"),
            np.load(directory / f"ids_{j}.npy", mmap_mode="r"),
        )
        for j in range(features)
    ]


def lookup(values: np.ndarray, present: np.ndarray, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Id of each raw value: binary search in the sorted kept values; missing or rare -> 0."""
    if not len(keys):
        return np.zeros(len(values), ids.dtype)
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    hit = present & (keys[pos] == values)
    return np.where(hit, ids[pos], 0).astype(ids.dtype, copy=False)


def log_transform(integers: np.ndarray) -> np.ndarray:
    """float64 [n, 13] (NaN = missing) -> float16 [n, 13]: ln(x + 3), and 0 for missing or x <= -3."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log(integers + 3.0)
    out[~(integers > -3.0)] = 0.0  # NaN > -3 is False: missing values land here too
    return out.astype(np.float16)
