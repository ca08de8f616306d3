"""Small synthetic MovieLens ratings files in the RAW download layouts, with a known planted signal.

Why: ncf.prepare_data must be tested on files that look exactly like the real downloads, and a trained
model compared to the generator's oracle scores. Shared by the tests, ``python -m ncf.demo`` and the
benchmarks; the same arguments give byte-identical files (see common.synthetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.synthetic import join_lines, write_text

_MOVIELENS_FILES = {
    "ml-20m": "ratings.csv",
    "ml-1m": "ratings.dat",
    "ml-100k": "u.data",
    "csv": "ratings.csv",
}


@dataclass
class MovieLensSynthetic:
    """A written ratings file plus the generator behind it (raw ids -> factors)."""

    path: Path
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray

    def scores(self, raw_users: np.ndarray, raw_items: np.ndarray) -> np.ndarray:
        """True affinity logit ``u . v + b`` for raw id pairs (broadcasts); KeyError on unknown ids."""
        u = _lookup(self.user_ids, np.asarray(raw_users))
        i = _lookup(self.item_ids, np.asarray(raw_items))
        return np.einsum("...d,...d->...", self.user_factors[u], self.item_factors[i]) + self.item_bias[i]


def _lookup(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Generator index of each raw id (vectorised searchsorted instead of a dict per call)."""
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], raw), 0, len(ids) - 1)
    if not np.array_equal(ids[order][pos], raw):
        raise KeyError("unknown raw id")
    return order[pos]


def write_movielens(
    directory: str | Path,
    *,
    layout: str = "ml-20m",
    num_users: int = 500,
    num_items: int = 300,
    ratings_per_user: tuple[int, int] = (20, 60),
    factors: int = 8,
    seed: int = 0,
) -> MovieLensSynthetic:
    """Write a MovieLens-style ratings file; interactions are drawn from softmax(U V^T + b).

    Each user samples ``n ~ U[lo, hi]`` distinct items without replacement (Gumbel-top-k on the logits,
    users in blocks so memory stays bounded); the items get increasing timestamps in a random order, so
    the latest item is an ordinary draw from the user's preference. A few gaps are zero (exact ties).
    Ratings follow the within-user affinity. Raw ids are random distinct ints (non-dense), rows shuffled.
    Layouts: "ml-20m" (ratings.csv with header), "ml-1m" (ratings.dat, '::'), "ml-100k" (u.data, tab),
    "csv" (ratings.csv ``user,item,timestamp``, no header: the generic bring-your-own layout).
    """
    if layout not in _MOVIELENS_FILES:
        raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(_MOVIELENS_FILES)}")
    lo, hi = ratings_per_user
    if not 1 <= lo <= hi <= num_items:
        raise ValueError("ratings_per_user must satisfy 1 <= lo <= hi <= num_items")
    rng = np.random.default_rng(seed)
    sigma = 1.6 / factors**0.25  # u.v then has std 1.6**2 ~ 2.6 whatever d: a strong, learnable signal
    user_factors = rng.normal(0.0, sigma, (num_users, factors))
    item_factors = rng.normal(0.0, sigma, (num_items, factors))
    item_bias = rng.normal(0.0, 0.5, num_items)
    user_ids = rng.choice(10 * num_users, size=num_users, replace=False) + 1
    item_ids = rng.choice(10 * num_items, size=num_items, replace=False) + 1
    counts = rng.integers(lo, hi + 1, size=num_users)
    parts = []
    block = max(1, (1 << 22) // num_items)
    for b0 in range(0, num_users, block):
        logits = user_factors[b0 : b0 + block] @ item_factors.T + item_bias
        parts.append(_user_block(rng, logits, counts[b0 : b0 + block], hi, b0))
    u, i, ts, aff = (np.concatenate(x) for x in zip(*parts))
    perm = rng.permutation(len(u))
    u, i, ts, aff = u[perm], i[perm], ts[perm], aff[perm]
    raw = 3.0 + 0.6 * aff + rng.normal(0.0, 0.6, len(u))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / _MOVIELENS_FILES[layout]
    write_text(path, _file_text(layout, [user_ids[u], item_ids[i]], raw, ts))
    return MovieLensSynthetic(path, user_ids, item_ids, user_factors, item_factors, item_bias)


def _user_block(
    rng: np.random.Generator, logits: np.ndarray, n: np.ndarray, hi: int, first_user: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, timestamp, within-user affinity) of a block of users: n[k] distinct items each,
    drawn without replacement from softmax(logits[k]), in a random time order."""
    pert = logits + rng.gumbel(size=logits.shape)  # Gumbel-top-k == sampling without replacement
    top = np.argpartition(-pert, hi - 1, axis=1)[:, :hi]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(pert, top, 1), axis=1), 1)
    valid = np.arange(hi) < n[:, None]
    shuffled = np.argsort(np.where(valid, rng.random(top.shape), 2.0), axis=1)  # random time order
    top = np.take_along_axis(top, shuffled, 1)
    gaps = rng.exponential(2 * 86400.0, top.shape).astype(np.int64) + 1
    gaps[rng.random(top.shape) < 0.03] = 0
    start = rng.integers(946_684_800, 1_420_070_400, size=(len(n), 1))
    ts = start + np.cumsum(gaps, axis=1)
    aff = np.take_along_axis(logits, top, 1)
    aff = (aff - logits.mean(1, keepdims=True)) / (logits.std(1, keepdims=True) + 1e-9)
    return np.repeat(np.arange(first_user, first_user + len(n)), n), top[valid], ts[valid], aff[valid]


def _file_text(layout: str, cols: list[np.ndarray], raw: np.ndarray, ts: np.ndarray) -> str:
    """The ratings file of `layout` for raw (user, item) ids, real-valued ratings `raw` and timestamps:
    half stars in ratings.csv, whole stars in ratings.dat / u.data, none in the generic csv."""
    if layout == "ml-20m":
        half = np.clip(np.round(2 * raw) / 2, 0.5, 5.0)
        return "userId,movieId,rating,timestamp\n" + join_lines([*cols, np.char.mod("%.1f", half), ts], ",")
    if layout == "csv":
        return join_lines([*cols, ts], ",")
    whole = np.clip(np.round(raw), 1, 5).astype(np.int64)
    return join_lines([*cols, whole, ts], "::" if layout == "ml-1m" else "\t")
