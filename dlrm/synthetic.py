"""Small synthetic Criteo click logs in the RAW Kaggle/Terabyte layout, with a known planted signal.

Why: dlrm.prepare_data must be tested on files that look exactly like the real logs, and a trained model
compared to the true click probabilities, which only a synthetic generator can expose. Shared by the
tests and the benchmarks; the same arguments give byte-identical files (see common.synthetic). Not to be
confused with dlrm.data.SyntheticCriteo, which draws prepared batches on the device for --synthetic_dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.synthetic import join_lines, write_text

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
        write_text(path, join_lines(cols, "\t"))
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
