"""Small synthetic datasets written in the RAW source formats, with a known planted signal.

Why: the preparation code must be tested on files that look exactly like the real downloads (MovieLens,
Criteo, Amazon 2014), and a trained model must be compared to the generator's oracle, which only a
synthetic generator can expose. Everything is vectorised numpy on a seeded ``numpy.random.Generator``;
the same arguments give byte-identical files. The generators are meant for small/medium sizes (tests,
smoke runs), not for simulating the full public datasets.
"""

from __future__ import annotations

import gzip as _gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_ALNUM = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_DIGITS = np.array(list("0123456789"))
_MOVIELENS_FILES = {
    "ml-20m": "ratings.csv",
    "ml-1m": "ratings.dat",
    "ml-100k": "u.data",
    "csv": "ratings.csv",
}


def _join(columns: list[np.ndarray], sep: str) -> str:
    """Join equal-length columns into newline-terminated lines (numbers become strings in numpy)."""
    lists = [np.asarray(col).astype(str).tolist() for col in columns]
    return "\n".join(map(sep.join, zip(*lists))) + "\n"


def _write(path: Path, text: str, compress: bool = False) -> None:
    """Write UTF-8 bytes with '\\n' endings; gzip with mtime=0 so seeded output stays byte-identical."""
    data = text.encode("utf-8")
    if compress:
        with open(path, "wb") as raw, _gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def _codes(rng: np.random.Generator, n: int, length: int, alphabet: np.ndarray) -> np.ndarray:
    """``n`` random strings of ``length`` characters (numpy '<U' array, built by viewing a char matrix)."""
    chars = alphabet[rng.integers(0, len(alphabet), size=(n, length))]
    return np.ascontiguousarray(chars).view(f"<U{length}").ravel()


def _distinct(make: Callable[[int], np.ndarray], n: int) -> np.ndarray:
    """Draw from ``make(k)`` until ``n`` distinct values exist; keeps the first-seen order."""
    values = make(n + n // 10 + 8)
    _, first = np.unique(values, return_index=True)
    if len(first) < n:
        raise RuntimeError("id space too small for the requested number of distinct ids")
    return values[np.sort(first)[:n]]


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a [N, K] probability matrix (inverse CDF, vectorised)."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]  # last entry exactly 1.0, so zero-padded tails are never drawn
    return (cdf < rng.random((probs.shape[0], 1))).sum(axis=1)


# ----------------------------------------------------------------------------------------- MovieLens
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
        pert = logits + rng.gumbel(size=logits.shape)  # Gumbel-top-k == sampling without replacement
        top = np.argpartition(-pert, hi - 1, axis=1)[:, :hi]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(pert, top, 1), axis=1), 1)
        n = counts[b0 : b0 + block]
        valid = np.arange(hi) < n[:, None]
        shuffled = np.argsort(np.where(valid, rng.random(top.shape), 2.0), axis=1)  # random time order
        top = np.take_along_axis(top, shuffled, 1)
        gaps = rng.exponential(2 * 86400.0, top.shape).astype(np.int64) + 1
        gaps[rng.random(top.shape) < 0.03] = 0
        start = rng.integers(946_684_800, 1_420_070_400, size=(len(n), 1))
        ts = start + np.cumsum(gaps, axis=1)
        aff = np.take_along_axis(logits, top, 1)
        aff = (aff - logits.mean(1, keepdims=True)) / (logits.std(1, keepdims=True) + 1e-9)
        parts.append((np.repeat(np.arange(b0, b0 + len(n)), n), top[valid], ts[valid], aff[valid]))
    u, i, ts, aff = (np.concatenate(x) for x in zip(*parts))
    perm = rng.permutation(len(u))
    u, i, ts, aff = u[perm], i[perm], ts[perm], aff[perm]
    raw = 3.0 + 0.6 * aff + rng.normal(0.0, 0.6, len(u))
    half = np.clip(np.round(2 * raw) / 2, 0.5, 5.0)
    whole = np.clip(np.round(raw), 1, 5).astype(np.int64)
    cols: list[np.ndarray] = [user_ids[u], item_ids[i]]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / _MOVIELENS_FILES[layout]
    if layout == "ml-20m":
        text = "userId,movieId,rating,timestamp\n" + _join([*cols, np.char.mod("%.1f", half), ts], ",")
    elif layout == "csv":
        text = _join([*cols, ts], ",")
    else:
        text = _join([*cols, whole, ts], "::" if layout == "ml-1m" else "\t")
    _write(path, text)
    return MovieLensSynthetic(path, user_ids, item_ids, user_factors, item_factors, item_bias)


# -------------------------------------------------------------------------------------------- Criteo
# Shapes measured on the first 1,999 lines of the real Kaggle train.txt (shared/data/criteo): per integer
# column the share of zeros, the median and 99th percentile of the positive values; per column (13 + 26)
# the share of empty cells. Cardinalities follow Kaggle's (capped at 200 k so a generator stays small).
_INT_ZERO = (0.47, 0.18, 0.01, 0.09, 0.02, 0.07, 0.25, 0.13, 0.03, 0.51, 0.27, 0.72, 0.06)
_INT_MEDIAN = (3, 16, 6, 5, 2933, 50, 5, 10, 47, 1, 2, 1, 6)
_INT_Q99 = (68, 2647, 411, 43, 234621, 1947, 194, 48, 1233, 3, 22, 32, 75)
_MISSING_PROFILE = (0.44, 0, 0.22, 0.21, 0.05, 0.25, 0.05, 0, 0.05, 0.44, 0.05, 0.78, 0.21) + (
    0, 0, 0.03, 0.03, 0, 0.13, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0, 0.48, 0.48, 0.03, 0.82, 0, 0.03, 0.48, 0.48
)  # fmt: skip
_MISSING_TOGETHER = (13 + 18, 13 + 19, 13 + 24, 13 + 25)  # C19, C20, C25, C26 are empty on the same lines
_DEFAULT_CARDINALITIES = (
    3, 583, 200000, 100000, 305, 4000, 12517, 633, 3, 50000, 5683, 200000, 3194,
    27, 14992, 150000, 10, 5652, 2173, 4, 200000, 18, 15, 100000, 105, 80000,
)  # fmt: skip
_INFORMATIVE = (1, 2, 4, 5, 6, 9, 12, 13, 14, 17, 18, 23, 25)  # C-features whose values carry hidden weights
_BASE_CTR = 0.25


@dataclass
class CriteoSynthetic:
    """A written Criteo-format file and each line's true click probability (file order)."""

    path: Path
    probabilities: np.ndarray
    labels: np.ndarray
    generator: _CriteoGenerator | None = None

    def logits(self, integers: np.ndarray, categoricals: np.ndarray) -> np.ndarray:
        """The true click logit from what a pipeline kept: ``integers`` [N, 13] float (NaN = missing),
        ``categoricals`` [N, 26] raw 32-bit values (-1 = missing or dropped). So a test can measure how much
        of the oracle survives a transform (e.g. rare values mapped to one OOV id)."""
        gen = self.generator
        miss = np.concatenate([np.isnan(integers), categoricals < 0], axis=1)
        ints = np.where(np.isnan(integers), 0, np.round(integers)).astype(np.int64)
        cats = np.zeros(categoricals.shape, np.int64)
        for j, vocab in enumerate(gen.vocab):
            order = np.argsort(vocab)
            pos = np.clip(np.searchsorted(vocab[order], categoricals[:, j]), 0, len(vocab) - 1)
            known = vocab[order][pos] == categoricals[:, j]
            cats[:, j] = np.where(known, order[pos], 0)
            miss[:, 13 + j] |= ~known
        return gen._logits(ints, cats, miss) + gen.bias


def _missing_rates(missing_rate: float) -> np.ndarray:
    """Per-column missing rates shaped like the real profile, scaled (then clipped) to the requested mean."""
    profile = np.asarray(_MISSING_PROFILE) + 0.01
    lo, hi = 0.0, 1.0 / profile.min()
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.clip(mid * profile, 0, 0.95).mean() < missing_rate else (lo, mid)
    return np.clip(lo * profile, 0.0, 0.95)


class _CriteoGenerator:
    """Hidden parameters shared by every day file of one seed (vocabularies, weights, missing rates).

    Why this shape: a model that handles only easy data (log-normal counts, small vocabularies, additive
    effects) can look perfect here and still fall far short on real logs. So, as in the real logs:
    zero-inflated heavy-tailed integers (I5 reaches 10^5-10^6), I2 with negatives, whole groups of columns
    empty together; Zipf categoricals with vocabularies up to 200 k, most values seen once or twice; and a
    click function with non-monotone numerical effects, missing-is-informative cells, negative-I2 signal,
    one numerical x numerical, one categorical x numerical and two categorical x categorical interactions.
    Weights of rare values shrink towards 0 (rank r > 100 scales by sqrt(100 / r)): a value seen a handful
    of times cannot be learned by any model, and the oracle should stay within reach of a good one.
    """

    def __init__(self, seed: int, missing_rate: float, cardinalities: list[int] | None) -> None:
        rng = np.random.default_rng([seed, 0])
        cards = list(cardinalities or _DEFAULT_CARDINALITIES)
        if len(cards) != 26:
            raise ValueError("cardinalities must list 26 vocabulary sizes")
        self.cards = cards
        self.vocab = [rng.choice(1 << 32, size=c, replace=False) for c in cards]  # formatted when written
        self.cdf = [np.cumsum(1.0 / np.arange(1, c + 1) ** rng.uniform(1.05, 1.3)) for c in cards]  # Zipf
        self.cdf = [c / c[-1] for c in self.cdf]
        shrink = [np.minimum(1.0, np.sqrt(100.0 / np.arange(1, c + 1))) for c in cards]
        self.weights = {j: rng.normal(0.0, 0.55, cards[j]) * shrink[j] for j in _INFORMATIVE}
        self.pair_a = rng.normal(0.0, 0.7, (23, 19))  # C6 x C14 (hashed)
        self.pair_b = rng.normal(0.0, 0.5, (61, 53))  # C2 x C11 (hashed, so rare values share cells)
        self.slope = rng.normal(0.0, 0.35, cards[16])  # C17 sets the slope of log(I7)
        self.num_mu = np.log(np.asarray(_INT_MEDIAN, float))
        self.num_sigma = np.maximum(0.3, (np.log(_INT_Q99) - self.num_mu) / 2.33)
        self.missing = _missing_rates(missing_rate)
        logits = self._logits(*self._features(np.random.default_rng([seed, 2]), 20_000))
        lo, hi = -10.0, 10.0
        for _ in range(50):  # bisection: bias so that the mean click probability is the base CTR
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _sigmoid(logits + mid).mean() < _BASE_CTR else (lo, mid)
        self.bias = (lo + hi) / 2

    def _features(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        positive = np.ceil(np.exp(rng.normal(self.num_mu, self.num_sigma, (n, 13)))).astype(np.int64)
        ints = np.where(rng.random((n, 13)) < _INT_ZERO, 0, positive)
        neg = rng.random(n) < 0.11  # I2 has small negative values in the real logs
        ints[neg, 1] = rng.choice([-1, -2, -3], size=int(neg.sum()), p=[0.8, 0.17, 0.03])
        cats = np.stack([np.searchsorted(c, rng.random(n), side="right") for c in self.cdf], axis=1)
        cats = np.minimum(cats, np.asarray(self.cards) - 1)
        draw = rng.random((n, 39))
        draw[:, _MISSING_TOGETHER] = draw[:, _MISSING_TOGETHER[:1]]
        return ints, cats, draw < self.missing

    def _logits(self, ints: np.ndarray, cats: np.ndarray, miss: np.ndarray) -> np.ndarray:
        """The planted CTR function; a missing categorical contributes nothing, a missing integer its own
        constant (missingness is informative in the real logs)."""
        logs = np.log1p(np.maximum(ints, 0).astype(np.float64))

        def num(j: int, value: np.ndarray, if_missing: float) -> np.ndarray:
            return np.where(miss[:, j], if_missing, value)

        out = num(0, 0.45 * (logs[:, 0] - 1.0), 0.3)
        out += num(4, -0.2 * (logs[:, 4] - 8.0), 0.0)
        out += num(2, -0.5 * (logs[:, 2] - 2.0) ** 2 / 2 + 0.4, -0.2)  # non-monotone bump
        out += num(1, np.where(ints[:, 1] < 0, 0.6, -0.1 * (logs[:, 1] - 2.5)), 0.0)
        out += num(6, self.slope[cats[:, 16]] * (logs[:, 6] - 1.5), 0.0) * ~miss[:, 13 + 16]
        out += num(10, num(7, 0.25 * (logs[:, 10] - 1.0) * (logs[:, 7] - 2.0), 0.0), 0.0)
        for j, w in self.weights.items():
            out += np.where(miss[:, 13 + j], 0.0, w[cats[:, j]])
        pair_a = self.pair_a[cats[:, 5] % self.pair_a.shape[0], cats[:, 13] % self.pair_a.shape[1]]
        pair_b = self.pair_b[cats[:, 1] % 61, cats[:, 10] % 53]
        out += np.where(miss[:, 13 + 5] | miss[:, 13 + 13], 0.0, pair_a)
        out += np.where(miss[:, 13 + 1] | miss[:, 13 + 10], 0.0, pair_b)
        return out

    def write(self, path: Path, rng: np.random.Generator, n: int) -> CriteoSynthetic:
        ints, cats, missing = self._features(rng, n)
        prob = _sigmoid(self._logits(ints, cats, missing) + self.bias)
        labels = (rng.random(n) < prob).astype(np.int64)
        cols = [labels]
        cols += [np.where(missing[:, j], "", ints[:, j].astype(str)) for j in range(13)]
        cols += [
            np.where(missing[:, 13 + j], "", np.char.mod("%08x", self.vocab[j][cats[:, j]]))
            for j in range(26)
        ]
        _write(path, _join(cols, "\t"))
        return CriteoSynthetic(path, prob, labels, self)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_criteo(
    path: str | Path,
    *,
    num_lines: int = 2000,
    seed: int = 0,
    missing_rate: float = 0.15,
    cardinalities: list[int] | None = None,
) -> CriteoSynthetic:
    """Write a Criteo Kaggle/Terabyte-format file: ``label \\t I1..I13 \\t C1..C26`` (40 fields).

    Shaped like the real logs (see ``_CriteoGenerator``): zero-inflated heavy-tailed integers with the
    real per-column medians and 99th percentiles, I2 sometimes -1/-2/-3; categoricals 8 lowercase hex
    digits from Zipf vocabularies (default sizes Kaggle's, capped at 200 k: most values are rare, so a
    frequency threshold cuts a long tail); '' when missing, per-column rates shaped like the real ones and
    averaging ``missing_rate``, C19/C20/C25/C26 empty together. label ~ Bernoulli(sigmoid(logit)): hidden
    per-value weights of 13 categoricals, non-linear numerical terms, informative missing cells, and
    num x num, cat x num, cat x cat interactions; the bias set for a ~25% base CTR. Equals day_0 of
    ``write_criteo_days`` with the same seed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = _CriteoGenerator(seed, missing_rate, cardinalities)
    return gen.write(path, np.random.default_rng([seed, 1, 0]), num_lines)


def write_criteo_days(
    directory: str | Path,
    *,
    days: int = 3,
    lines_per_day: int = 1000,
    seed: int = 0,
    missing_rate: float = 0.15,
    cardinalities: list[int] | None = None,
) -> list[CriteoSynthetic]:
    """Write Terabyte-layout files ``day_0 .. day_{days-1}`` sharing one generator and vocabularies."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gen = _CriteoGenerator(seed, missing_rate, cardinalities)
    return [
        gen.write(directory / f"day_{d}", np.random.default_rng([seed, 1, d]), lines_per_day)
        for d in range(days)
    ]


# -------------------------------------------------------------------------------------------- Amazon
_SHELVES = ("Literature & Fiction", "Children's Books", "Mystery, Thriller & Suspense", "Science & Math")
_TITLES = ("The Long Road", "Don't Look Back", 'A "Quiet" Winter', "Night's Edge", "Gardens of Stone")
_NAMES = ('Amaranth "music fan"', "bethtexas", "J. Smith", "O'Brien", "reader42")


@dataclass
class AmazonSynthetic:
    """Written reviews/meta files plus the sequence generator (category preferences + history copying)."""

    reviews_path: Path
    meta_path: Path
    item_categories: dict[str, str]  # asin -> categories[0][-1], only for meta lines that have categories
    categories: list[str]  # leaf names: the column order of the preference vectors
    user_category_pref: dict[str, np.ndarray]  # reviewerID -> probability over ``categories``
    history_prob: float  # P(next category is copied from one of the last 3 reviews)

    def next_category_probs(self, reviewer_id: str, recent: list[str]) -> np.ndarray:
        """The generator's distribution of the next review's category given earlier categories (oracle)."""
        pref = self.user_category_pref[reviewer_id]
        idx = [self.categories.index(c) for c in recent[-3:]]
        if not idx:
            return pref.copy()
        out = (1.0 - self.history_prob) * pref
        np.add.at(out, idx, self.history_prob / len(idx))
        return out


def write_amazon(
    directory: str | Path,
    *,
    category: str = "Books",
    num_users: int = 300,
    num_items: int = 400,
    num_categories: int = 12,
    reviews_per_user: tuple[int, int] = (5, 30),
    seed: int = 0,
    gzip: bool = False,
) -> AmazonSynthetic:
    """Write ``reviews_<Category>.json`` (strict JSON lines) and ``meta_<Category>.json`` (Python literals).

    Each user prefers 1-3 leaf categories; review t copies the category of one of the last 3 reviews with
    probability ``history_prob`` and otherwise draws from the preference, then picks an unseen item of
    that category by popularity (repeats only once the category is exhausted). Times are whole days with
    some ties. Reviews are sorted by asin like the real file. Edge cases: some meta lines lack
    'categories', some reviewed items have no meta line, some meta items are never reviewed, some items
    have a second category path, some reviews lack reviewerName.
    """
    lo, hi = reviews_per_user
    rng = np.random.default_rng(seed)
    n_extra = max(2, num_items // 20)
    n_all = num_items + n_extra

    def make_asins(k: int) -> np.ndarray:
        isbn = np.char.add("0", _codes(rng, k, 9, _DIGITS))
        return np.where(rng.random(k) < 0.5, isbn, np.char.add("B00", _codes(rng, k, 7, _ALNUM)))

    asins = _distinct(make_asins, n_all)
    users = _distinct(lambda k: np.char.add("A", _codes(rng, k, 13, _ALNUM)), num_users)
    leaves = [f"{_SHELVES[c % 4]} {c}" for c in range(num_categories)]
    item_cat = rng.permutation(np.arange(n_all) % num_categories)
    members = [np.flatnonzero(item_cat[:num_items] == c) for c in range(num_categories)]
    width = max(len(m) for m in members)
    cat_items = np.zeros((num_categories, width), np.int64)
    cat_probs = np.zeros((num_categories, width))
    for c, m in enumerate(members):  # per category (not per row): padded popularity table
        w = rng.lognormal(0.0, 1.0, len(m))
        cat_items[c, : len(m)], cat_probs[c, : len(m)] = m, w / w.sum()
    chosen = np.argsort(rng.random((num_users, num_categories)), axis=1).argsort(axis=1)
    g = rng.gamma(1.0, size=chosen.shape) * (chosen < rng.integers(1, 4, (num_users, 1)))
    pref = 0.9 * g / g.sum(axis=1, keepdims=True) + 0.1 / num_categories
    history_prob, rows = 0.6, np.arange(num_users)
    cats = np.zeros((num_users, hi), np.int64)
    items = np.zeros((num_users, hi), np.int64)
    seen = np.zeros((num_users, num_items), bool)
    for t in range(hi):  # vectorised over users; the Markov chain is sequential in t only
        c = _categorical(rng, pref)
        if t > 0:
            back = cats[rows, t - 1 - rng.integers(0, min(t, 3), num_users)]
            c = np.where(rng.random(num_users) < history_prob, back, c)
        probs = cat_probs[c] * ~seen[rows[:, None], cat_items[c]]  # no repeats while the category lasts
        probs = np.where(probs.sum(1, keepdims=True) > 0, probs, cat_probs[c])
        cats[:, t], items[:, t] = c, cat_items[c, _categorical(rng, probs)]
        seen[rows, items[:, t]] = True
    valid = np.arange(hi) < rng.integers(lo, hi + 1, (num_users, 1))
    gaps = rng.geometric(1 / 30, (num_users, hi)) - 1  # zero gaps: same-day ties
    days = rng.integers(10_957, 15_706, (num_users, 1)) + np.cumsum(gaps, axis=1)  # 2000 .. 2013
    u, i, d = np.broadcast_to(rows[:, None], valid.shape)[valid], items[valid], days[valid]
    order = np.lexsort((rng.random(len(u)), asins[i]))
    u, i, d = u[order], i[order], d[order]
    iso = np.datetime_as_string(d.astype("datetime64[D]")).tolist()  # YYYY-MM-DD
    overall = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], len(u), p=[0.05, 0.05, 0.1, 0.3, 0.5]).tolist()
    helpful = np.cumsum(rng.integers(0, 4, (len(u), 2)), axis=1).tolist()  # [helpful, total votes]
    named = rng.random(num_users) > 0.05  # the real dump omits reviewerName for some reviewers
    reviews = []
    for k, (uu, ii, dd) in enumerate(zip(u.tolist(), i.tolist(), d.tolist())):  # formatting only
        rec = {"reviewerID": str(users[uu]), "asin": str(asins[ii]), "reviewerName": _NAMES[uu % 5]}
        if not named[uu]:
            del rec["reviewerName"]
        rec |= {"helpful": helpful[k], "reviewText": f"Review {k} of {asins[ii]}: it's fine."}
        rec |= {"overall": overall[k], "summary": _TITLES[k % 5], "unixReviewTime": dd * 86400}
        rec["reviewTime"] = f"{iso[k][5:7]} {int(iso[k][8:])}, {iso[k][:4]}"  # '06 3, 2001' as real
        reviews.append(json.dumps(rec))
    perm = rng.permutation(n_all)
    no_cats = set(perm[: max(1, n_all // 30)].tolist())
    no_meta = set(perm[len(no_cats) : len(no_cats) + max(1, num_items // 50)].tolist())
    second = rng.integers(0, num_categories, n_all)
    price, rank = np.round(rng.uniform(1, 60, n_all), 2).tolist(), rng.integers(1, 3_000_000, n_all).tolist()
    metas, item_categories = [], {}
    for k in rng.permutation(n_all).tolist():
        if k in no_meta:
            continue
        rec = {"asin": str(asins[k]), "title": f"{_TITLES[k % 5]} {k}", "price": price[k]}
        rec |= {
            "imUrl": f"http://ecx.images-amazon.com/images/I/{asins[k]}.jpg",
            "salesRank": {category: rank[k]},
        }
        if k not in no_cats:
            rec["categories"] = [[category, _SHELVES[item_cat[k] % 4], leaves[item_cat[k]]]]
            if second[k] != item_cat[k] and k % 5 == 0:
                rec["categories"].append([category, leaves[second[k]]])
            item_categories[rec["asin"]] = leaves[item_cat[k]]
        metas.append(repr(rec))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix, stem = (".json.gz" if gzip else ".json"), category.replace(" ", "_")
    reviews_path, meta_path = directory / f"reviews_{stem}{suffix}", directory / f"meta_{stem}{suffix}"
    _write(reviews_path, "\n".join(reviews) + "\n", gzip)
    _write(meta_path, "\n".join(metas) + "\n", gzip)
    prefs = {str(users[k]): pref[k] for k in range(num_users)}
    return AmazonSynthetic(reviews_path, meta_path, item_categories, leaves, prefs, history_prob)
