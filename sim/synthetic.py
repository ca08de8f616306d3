"""Small synthetic Amazon Reviews 2014 files (reviews + meta, RAW formats) with a known planted signal.

Why: sim.prepare_data must be tested on files that look exactly like the real downloads, and a trained
model compared to the generator's oracle (category preferences + history copying). Shared by the tests
and the benchmarks; the same arguments give byte-identical files (see common.synthetic).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.synthetic import write_text

_ALNUM = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_DIGITS = np.array(list("0123456789"))


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
    rng = np.random.default_rng(seed)  # one stream, drawn in this order: the same arguments, the same bytes
    n_all = num_items + max(2, num_items // 20)  # + items that are never reviewed

    def make_asins(k: int) -> np.ndarray:
        isbn = np.char.add("0", _codes(rng, k, 9, _DIGITS))
        return np.where(rng.random(k) < 0.5, isbn, np.char.add("B00", _codes(rng, k, 7, _ALNUM)))

    asins = _distinct(make_asins, n_all)
    users = _distinct(lambda k: np.char.add("A", _codes(rng, k, 13, _ALNUM)), num_users)
    leaves = [f"{_SHELVES[c % 4]} {c}" for c in range(num_categories)]
    item_cat = rng.permutation(np.arange(n_all) % num_categories)
    cat_items, cat_probs = _popularity(rng, item_cat[:num_items], num_categories)
    pref = _preferences(rng, num_users, num_categories)
    history_prob = 0.6
    items = _sequences(rng, pref, cat_items, cat_probs, reviews_per_user[1], history_prob)
    reviews = _review_lines(rng, items, users, asins, reviews_per_user)
    metas, item_categories = _meta_lines(rng, asins, item_cat, leaves, category, num_items)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix, stem = (".json.gz" if gzip else ".json"), category.replace(" ", "_")
    reviews_path, meta_path = directory / f"reviews_{stem}{suffix}", directory / f"meta_{stem}{suffix}"
    write_text(reviews_path, "\n".join(reviews) + "\n", gzip)
    write_text(meta_path, "\n".join(metas) + "\n", gzip)
    prefs = {str(users[k]): pref[k] for k in range(num_users)}
    return AmazonSynthetic(reviews_path, meta_path, item_categories, leaves, prefs, history_prob)


def _popularity(
    rng: np.random.Generator, item_cat: np.ndarray, num_categories: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per category: its reviewable items and their (log-normal) popularity, padded to [C, width]."""
    members = [np.flatnonzero(item_cat == c) for c in range(num_categories)]
    width = max(len(m) for m in members)
    cat_items = np.zeros((num_categories, width), np.int64)
    cat_probs = np.zeros((num_categories, width))
    for c, m in enumerate(members):  # per category (not per row): padded popularity table
        w = rng.lognormal(0.0, 1.0, len(m))
        cat_items[c, : len(m)], cat_probs[c, : len(m)] = m, w / w.sum()
    return cat_items, cat_probs


def _preferences(rng: np.random.Generator, num_users: int, num_categories: int) -> np.ndarray:
    """[users, C]: 90% of each user's mass on 1-3 random categories, 10% spread evenly."""
    chosen = np.argsort(rng.random((num_users, num_categories)), axis=1).argsort(axis=1)
    g = rng.gamma(1.0, size=chosen.shape) * (chosen < rng.integers(1, 4, (num_users, 1)))
    return 0.9 * g / g.sum(axis=1, keepdims=True) + 0.1 / num_categories


def _sequences(
    rng: np.random.Generator, pref: np.ndarray, cat_items: np.ndarray, cat_probs: np.ndarray, length: int,
    history_prob: float,
) -> np.ndarray:  # fmt: skip
    """[users, length] item indices: the category Markov chain, then an unseen item by popularity."""
    num_users, num_items = pref.shape[0], int(cat_items.max()) + 1
    rows = np.arange(num_users)
    cats = np.zeros((num_users, length), np.int64)
    items = np.zeros((num_users, length), np.int64)
    seen = np.zeros((num_users, num_items), bool)
    for t in range(length):  # vectorised over users; the Markov chain is sequential in t only
        c = _categorical(rng, pref)
        if t > 0:
            back = cats[rows, t - 1 - rng.integers(0, min(t, 3), num_users)]
            c = np.where(rng.random(num_users) < history_prob, back, c)
        probs = cat_probs[c] * ~seen[rows[:, None], cat_items[c]]  # no repeats while the category lasts
        probs = np.where(probs.sum(1, keepdims=True) > 0, probs, cat_probs[c])
        cats[:, t], items[:, t] = c, cat_items[c, _categorical(rng, probs)]
        seen[rows, items[:, t]] = True
    return items


def _review_lines(
    rng: np.random.Generator,
    items: np.ndarray,
    users: np.ndarray,
    asins: np.ndarray,
    per_user: tuple[int, int],
) -> list[str]:
    """The first lo..hi reviews of each user as the real file's JSON lines, sorted by asin, with days."""
    num_users, hi = items.shape
    rows = np.arange(num_users)
    valid = np.arange(hi) < rng.integers(per_user[0], hi + 1, (num_users, 1))
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
    return reviews


def _meta_lines(
    rng: np.random.Generator, asins: np.ndarray, item_cat: np.ndarray, leaves: list[str], category: str,
    num_items: int,
) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """The metadata file's Python-literal lines in random order, and asin -> leaf category of those that
    have categories; some items lack 'categories' or a line, some have a second category path."""
    n_all, num_categories = len(asins), len(leaves)
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
    return metas, item_categories
