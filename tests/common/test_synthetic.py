"""Tests for common.synthetic: raw formats match the real downloads, and the planted signal is really there.

The format checks parse the files with each source's own conventions (what the preparation code will do),
so a format drift in the writer shows up here rather than as a confusing failure in a recipe test.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import torch

from common.metrics import roc_auc
from common.synthetic import write_amazon, write_criteo, write_criteo_days, write_movielens

_ML_COLUMNS = ["user", "item", "rating", "timestamp"]


def _read_movielens(path, layout: str) -> pd.DataFrame:
    """Parse like the real loaders do, then give every layout the same column names."""
    if layout == "ml-20m":
        df = pd.read_csv(path)
        assert list(df.columns) == ["userId", "movieId", "rating", "timestamp"]
        return df.set_axis(_ML_COLUMNS, axis=1)
    if layout == "ml-1m":
        return pd.read_csv(path, sep="::", engine="python", header=None, names=_ML_COLUMNS)
    if layout == "ml-100k":
        return pd.read_csv(path, sep="\t", header=None, names=_ML_COLUMNS)
    return pd.read_csv(path, header=None, names=["user", "item", "timestamp"])


@pytest.mark.parametrize(
    ("layout", "filename"),
    [("ml-20m", "ratings.csv"), ("ml-1m", "ratings.dat"), ("ml-100k", "u.data"), ("csv", "ratings.csv")],
)
def test_movielens_layouts_parse_with_real_conventions(tmp_path, layout, filename):
    syn = write_movielens(tmp_path, layout=layout, num_users=120, num_items=80, ratings_per_user=(5, 20))
    assert syn.path == tmp_path / filename
    first = syn.path.read_text().splitlines()[0]
    df = _read_movielens(syn.path, layout)
    assert df["timestamp"].dtype == np.int64 and df["user"].dtype == np.int64
    counts = df.groupby("user").size()
    assert len(counts) == 120 and counts.between(5, 20).all()
    assert not df.duplicated(["user", "item"]).any()
    assert set(df["user"]) <= set(syn.user_ids) and set(df["item"]) <= set(syn.item_ids)
    # Raw ids are not 1..N, so an id remapping step is needed and exercised.
    assert df["user"].max() > df["user"].nunique() and df["item"].max() > syn.item_ids.size
    assert not df["user"].is_monotonic_increasing  # shuffled rows, as raw files are not sorted
    assert df.duplicated(["user", "timestamp"]).any()  # a few exact timestamp ties
    if layout == "ml-20m":
        assert first == "userId,movieId,rating,timestamp"
        assert ((df["rating"] * 2) % 1 == 0).all() and df["rating"].between(0.5, 5.0).all()
        assert re.fullmatch(r"\d+,\d+,\d\.\d,\d{9,10}", syn.path.read_text().splitlines()[1])
    elif layout == "csv":
        assert re.fullmatch(r"\d+,\d+,\d{9,10}", first)
    else:
        assert df["rating"].dtype == np.int64 and df["rating"].between(1, 5).all()
        sep = "::" if layout == "ml-1m" else "\t"
        assert re.fullmatch(rf"\d+{sep}\d+{sep}[1-5]{sep}\d{{9,10}}", first)


def test_movielens_is_seeded_and_scores_reject_unknown_ids(tmp_path):
    a = write_movielens(tmp_path / "a", seed=3, num_users=50, num_items=60, ratings_per_user=(5, 10))
    b = write_movielens(tmp_path / "b", seed=3, num_users=50, num_items=60, ratings_per_user=(5, 10))
    c = write_movielens(tmp_path / "c", seed=4, num_users=50, num_items=60, ratings_per_user=(5, 10))
    assert a.path.read_bytes() == b.path.read_bytes() != c.path.read_bytes()
    u, i = a.user_ids[:3], a.item_ids[:3]
    expected = (a.user_factors[:3] * a.item_factors[:3]).sum(1) + a.item_bias[:3]
    np.testing.assert_allclose(a.scores(u, i), expected)
    assert a.scores(u[:, None], a.item_ids[None, :]).shape == (3, 60)
    with pytest.raises(KeyError):
        a.scores(np.array([a.user_ids.max() + 1]), i[:1])


def test_movielens_oracle_beats_popularity_on_latest_item(tmp_path):
    syn = write_movielens(tmp_path, seed=0)
    df = pd.read_csv(syn.path).sort_values(["userId", "timestamp"], kind="stable")
    last = df.groupby("userId").tail(1)
    train = df.drop(last.index)
    popularity = train["movieId"].value_counts().reindex(syn.item_ids, fill_value=0).to_numpy()
    # 100 random negatives per user among items the user never rated (vectorised over users).
    item_pos = {raw: k for k, raw in enumerate(syn.item_ids)}
    user_pos = {raw: k for k, raw in enumerate(last["userId"])}
    seen = np.zeros((len(last), syn.item_ids.size), bool)
    seen[df["userId"].map(user_pos).to_numpy(), df["movieId"].map(item_pos).to_numpy()] = True
    keys = np.where(seen, 2.0, np.random.default_rng(1).random(seen.shape))
    negatives = np.argsort(keys, axis=1)[:, :100]
    candidates = np.concatenate([last["movieId"].map(item_pos).to_numpy()[:, None], negatives], axis=1)
    oracle = syn.scores(last["userId"].to_numpy()[:, None], syn.item_ids[candidates])
    popular = popularity[candidates].astype(float)

    def hit_rate(score: np.ndarray) -> float:
        return float(((score[:, 1:] > score[:, :1]).sum(1) < 10).mean())

    assert hit_rate(oracle) >= 0.6
    assert hit_rate(oracle) >= hit_rate(popular) + 0.2


def _criteo_fields(path) -> list[list[str]]:
    text = path.read_text()
    assert text.endswith("\n") and "\r" not in text
    return [line.split("\t") for line in text.splitlines()]


@pytest.mark.parametrize("missing_rate", [0.15, 0.3])
def test_criteo_line_format_and_missing_rate(tmp_path, missing_rate):
    syn = write_criteo(tmp_path / "train.txt", num_lines=2000, missing_rate=missing_rate)
    rows = _criteo_fields(syn.path)
    assert len(rows) == 2000 == len(syn.probabilities) and {len(r) for r in rows} == {40}
    assert {r[0] for r in rows} == {"0", "1"}
    ints = [v for r in rows for v in r[1:14] if v]
    cats = [v for r in rows for v in r[14:] if v]
    assert all(re.fullmatch(r"-?\d+", v) for v in ints)
    assert all(re.fullmatch(r"[0-9a-f]{8}", v) for v in cats)
    assert {int(r[2]) for r in rows if r[2]} & {-1, -2, -3}  # I2 carries small negatives, as real
    missing = np.mean([v == "" for r in rows for v in r[1:]])
    assert abs(missing - missing_rate) < 0.03
    df = pd.read_csv(syn.path, sep="\t", header=None)
    assert df.shape == (2000, 40)
    # Zipf vocabularies: a large one (C6, 4000 values by default) has a long tail of values seen once
    # (what a frequency threshold removes) and a head seen often.
    counts = df[14 + 5].value_counts()
    assert counts.iloc[0] > 50 and (counts == 1).sum() > 100


def test_criteo_labels_follow_probabilities(tmp_path):
    syn = write_criteo(tmp_path / "train.txt", num_lines=4000, seed=1)
    labels = np.array([int(r[0]) for r in _criteo_fields(syn.path)])
    np.testing.assert_array_equal(labels, syn.labels)
    assert 0.2 < labels.mean() < 0.3
    order = np.argsort(syn.probabilities)
    assert labels[order[-400:]].mean() > labels[order[:400]].mean() + 0.4


def test_criteo_is_shaped_like_the_real_logs(tmp_path):
    """The hard parts of real Criteo (shared/data/criteo's 1,999 lines) that an easy generator hides."""
    syn = write_criteo(tmp_path / "train.txt", num_lines=4000, seed=3)
    df = pd.read_csv(syn.path, sep="\t", header=None, dtype={c: str for c in range(14, 40)})
    ints = df.iloc[:, 1:14]
    assert ints[5].quantile(0.99) > 1e5 and ints[5].quantile(0.5) > 1000  # I5: heavy tail, 10^5 .. 10^6
    assert (ints[2] < 0).mean() > 0.08 and (ints[2] == -2).any()  # I2 negatives, as in the real logs
    assert (ints[10].dropna() == 0).mean() > 0.4 and ints[12].isna().mean() > 0.5  # zeros; I12 mostly empty
    empty = df.iloc[:, [14 + 18, 14 + 19, 14 + 24, 14 + 25]].isna()
    assert empty.all(axis=1).sum() == empty.any(axis=1).sum() > 0.3 * len(df)  # C19/20/25/26 empty together
    counts = df[14 + 2].value_counts()  # C3, a 200k-value vocabulary: most distinct values seen once
    assert (counts == 1).mean() > 0.7 and counts.iloc[0] > 20
    oracle = float(roc_auc(torch.from_numpy(syn.probabilities), torch.from_numpy(syn.labels).float()))
    assert 0.8 < oracle < 0.92


def test_criteo_days_share_one_generator(tmp_path):
    days = write_criteo_days(tmp_path / "days", days=3, lines_per_day=500, seed=2)
    assert [d.path.name for d in days] == ["day_0", "day_1", "day_2"]
    assert all(len(_criteo_fields(d.path)) == 500 for d in days)
    assert days[0].path.read_bytes() != days[1].path.read_bytes()
    single = write_criteo(tmp_path / "single.txt", num_lines=500, seed=2)
    assert single.path.read_bytes() == days[0].path.read_bytes()  # write_criteo is day_0
    # Same vocabulary across days: the 3-value feature C1 has the same values every day.
    c1 = [{r[14] for r in _criteo_fields(d.path) if r[14]} for d in days]
    assert c1[0] == c1[1] == c1[2] and len(c1[0]) == 3
    again = write_criteo_days(tmp_path / "again", days=3, lines_per_day=500, seed=2)
    assert all(x.path.read_bytes() == y.path.read_bytes() for x, y in zip(days, again))


def _amazon(syn):
    opener = gzip.open if syn.reviews_path.suffix == ".gz" else open
    with opener(syn.reviews_path, "rt", encoding="utf-8") as f:
        reviews = [json.loads(line) for line in f]
    with opener(syn.meta_path, "rt", encoding="utf-8") as f:
        meta_lines = f.read().splitlines()
    return reviews, meta_lines


def test_amazon_formats(tmp_path):
    syn = write_amazon(tmp_path, num_users=100, num_items=150, seed=5)
    assert syn.reviews_path.name == "reviews_Books.json" and syn.meta_path.name == "meta_Books.json"
    reviews, meta_lines = _amazon(syn)
    keys = ["reviewerID", "asin", "reviewerName", "helpful", "reviewText", "overall", "summary"]
    keys += ["unixReviewTime", "reviewTime"]
    assert all([k for k in keys if k in r] == list(r) for r in reviews)
    assert all(set(keys) - set(r) <= {"reviewerName"} for r in reviews)
    assert any("reviewerName" not in r for r in reviews)
    for r in reviews:
        assert re.fullmatch(r"A[0-9A-Z]{13}", r["reviewerID"]) and re.fullmatch(
            r"[0-9B][0-9A-Z]{9}", r["asin"]
        )
        assert isinstance(r["overall"], float) and 1.0 <= r["overall"] <= 5.0
        day = datetime.fromtimestamp(r["unixReviewTime"], tz=timezone.utc)
        assert r["reviewTime"] == f"{day.month:02d} {day.day}, {day.year}" and day.hour == 0
    assert [r["asin"] for r in reviews] == sorted(r["asin"] for r in reviews)  # sorted by item, as real
    for line in meta_lines[:20]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    meta = [ast.literal_eval(line) for line in meta_lines]
    meta_by_asin = {m["asin"]: m for m in meta}
    assert len(meta_by_asin) == len(meta)  # metadata items are unique
    reviewed = {r["asin"] for r in reviews}
    with_cats = {a for a, m in meta_by_asin.items() if "categories" in m}
    assert {a: meta_by_asin[a]["categories"][0][-1] for a in with_cats} == syn.item_categories
    assert reviewed & set(syn.item_categories) <= set(meta_by_asin)
    assert reviewed - set(meta_by_asin)  # some reviewed items have no meta line ("no_category")
    assert reviewed & (set(meta_by_asin) - with_cats)  # some meta lines lack 'categories'
    assert set(meta_by_asin) - reviewed  # some meta items are never reviewed
    assert any(len(m.get("categories", [])) > 1 for m in meta)  # the first path decides the category


def test_amazon_planted_signal(tmp_path):
    syn = write_amazon(tmp_path, seed=0)
    reviews, _ = _amazon(syn)
    df = pd.DataFrame(reviews).sort_values(["reviewerID", "unixReviewTime", "asin"], kind="stable")
    df["cat"] = df["asin"].map(syn.item_categories)
    df = df.dropna(subset=["cat"])
    counts = df.groupby("reviewerID").size()
    assert counts.min() >= 3
    top_share = df.groupby("reviewerID")["cat"].agg(lambda c: c.value_counts().iloc[0] / len(c))
    assert top_share.mean() > 4 / len(syn.categories)  # far above the uniform 1/12
    # The generator's preferred category is the one users review most.
    preferred = {u: syn.categories[int(np.argmax(p))] for u, p in syn.user_category_pref.items()}
    mode = df.groupby("reviewerID")["cat"].agg(lambda c: c.value_counts().index[0])
    assert (mode.index.map(preferred) == mode).mean() > 0.6
    # History helps: the last 3 categories predict the next better than global category popularity.
    popular = df["cat"].value_counts().index[0]
    hits_history, hits_popular = [], []
    for cats in df.groupby("reviewerID")["cat"].agg(list):
        for t in range(3, len(cats)):
            hits_history.append(Counter(cats[t - 3 : t]).most_common(1)[0][0] == cats[t])
            hits_popular.append(popular == cats[t])
    assert np.mean(hits_history) > np.mean(hits_popular) + 0.3
    user = next(iter(syn.user_category_pref))
    probs = syn.next_category_probs(user, [syn.categories[0], syn.categories[1]])
    assert probs.sum() == pytest.approx(1.0) and probs[0] >= syn.history_prob / 2


def test_amazon_gzip_and_seed(tmp_path):
    plain = write_amazon(tmp_path / "a", seed=7, num_users=50, num_items=80)
    again = write_amazon(tmp_path / "b", seed=7, num_users=50, num_items=80)
    packed = write_amazon(
        tmp_path / "c", seed=7, num_users=50, num_items=80, gzip=True, category="Digital Music"
    )
    assert packed.reviews_path.name == "reviews_Digital_Music.json.gz"
    assert plain.reviews_path.read_bytes() == again.reviews_path.read_bytes()
    assert plain.meta_path.read_bytes() == again.meta_path.read_bytes()
    again_packed = write_amazon(
        tmp_path / "d", seed=7, num_users=50, num_items=80, gzip=True, category="Digital Music"
    )
    assert packed.meta_path.read_bytes() == again_packed.meta_path.read_bytes()
    assert gzip.decompress(packed.reviews_path.read_bytes()) == plain.reviews_path.read_bytes()
    assert "'Digital Music'" in gzip.decompress(packed.meta_path.read_bytes()).decode()
