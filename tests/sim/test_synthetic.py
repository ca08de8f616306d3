"""Tests for sim.synthetic: Amazon 2014 files match the real downloads, and the planted signal is there.

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

from sim.synthetic import write_amazon


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
