"""Tests for ncf.synthetic: MovieLens layouts match the real downloads, and the planted signal is there.

The format checks parse the files with each source's own conventions (what the preparation code will do),
so a format drift in the writer shows up here rather than as a confusing failure in a recipe test.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ncf.synthetic import write_movielens

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
