"""SIM fixtures: tiny Parquet + FeatureSpec datasets in the sim.prepare_data format, with planted interests.

Every user has two preferred categories (a long-term interest) that fill the OLDER part of each history;
the short (newest) part is random, except that its newest item carries the row's current intent, a random
category. A target is clicked when its category is a preferred one or the current intent (5% label
noise). So:
  no history (the same rows with empty histories): only the user embedding, learnt from a few rows per
      user, can hint at the interests -> weak;
  din (attention over the whole history, no order): sees the interests, cannot tell the newest item from
      the other short noise -> good;
  dien (short part only): sees the current intent, not the interests;
  sim (long part searched + DIEN over the short part): sees both -> best.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from common.feature_spec import FeatureSpec


@dataclass
class Planted:
    path: Path
    history_length: int
    short_length: int
    items: int
    categories: int
    users: int


def item_feature_names(k: int) -> tuple[str, str, str]:
    return f"item_feat_{k}_trgt", f"item_feat_{k}_pos", f"item_feat_{k}_neg"


def write_planted(
    path: Path, *, users: int = 1000, train_rows_per_user: int = 8, test_rows_per_user: int = 2,
    items: int = 24, categories: int = 12, history_length: int = 20, short_length: int = 6,
    item_features: int = 2, user_features: int = 1, with_history: bool = True, seed: int = 0,
    row_group_size: int = 700, files: int = 2, rename: dict[str, str] | None = None,
) -> Planted:  # fmt: skip
    """Write path/feature_spec.yaml + path/{train,test}/part_*.parquet (the sim.prepare_data contract).

    rename: feature name -> the name to write instead (a bring-your-own dataset)."""
    rng = np.random.default_rng(seed)
    item_cat = np.concatenate([[0], rng.permutation(items) % categories + 1])  # every category has items
    by_cat = [np.flatnonzero(item_cat == c) for c in range(categories + 1)]
    prefs = np.stack([rng.choice(np.arange(1, categories + 1), 2, replace=False) for _ in range(users)])
    splits = {}
    for split, per_user in (("train", train_rows_per_user), ("test", test_rows_per_user)):
        user = np.repeat(np.arange(users), per_user)
        splits[split] = _rows(rng, user, prefs, item_cat, by_cat, history_length, short_length, with_history)
    t = history_length
    names = {"label": "label", "user": [f"user_feat_{k}" for k in range(user_features)]}
    for split, (user, target, pos, neg, label) in splits.items():
        columns = {"label": pa.array(label.astype(bool))}
        for k, name in enumerate(names["user"]):
            columns[name] = pa.array(((user * (k + 1)) % users + 1).astype(np.int32))
        for k in range(item_features):
            trgt, p, n = item_feature_names(k)
            columns[trgt] = pa.array(_feature(k, target, item_cat))
            columns[p] = _fixed(_feature(k, pos, item_cat), t)
            columns[n] = _fixed(_feature(k, neg, item_cat), t)
        table = pa.table({(rename or {}).get(k, k): v for k, v in columns.items()})
        (path / split).mkdir(parents=True, exist_ok=True)
        bounds = np.linspace(0, len(table), files + 1).astype(int)
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            pq.write_table(
                table.slice(a, b - a), path / split / f"part_{i}.parquet", row_group_size=row_group_size
            )
    _write_spec(
        path, names["user"], item_features, users, items, categories, t, files, list(columns), rename or {}
    )
    return Planted(path, t, short_length, items, categories, users)


def _rows(rng, user, prefs, item_cat, by_cat, t, s, with_history):
    n, categories = len(user), len(by_cat) - 1
    count = np.array([len(b) for b in by_cat])
    table = np.zeros((len(by_cat), count.max()), dtype=np.int64)
    for c, members in enumerate(by_cat):
        table[c, : len(members)] = members
    pick = lambda cats: table[cats, (rng.random(len(cats)) * count[cats]).astype(np.int64)]  # noqa: E731
    intent = rng.integers(1, categories + 1, n)
    length = rng.integers(s + 4, t + 1, n)
    pos = np.zeros((n, t), dtype=np.int64)
    for j in range(t):  # oldest .. newest
        long_cat = np.where(
            rng.random(n) < 0.9, prefs[user, rng.integers(0, 2, n)], rng.integers(1, categories + 1, n)
        )
        cat = long_cat if j < t - s else rng.integers(1, categories + 1, n)
        cat = intent if j == t - 1 else cat
        pos[:, j] = np.where(j >= t - length, pick(cat), 0)
    neg = np.where(pos > 0, rng.integers(1, len(item_cat), (n, t)), 0)
    kind = rng.choice(3, n, p=[0.25, 0.25, 0.5])  # 0: a preferred category, 1: the intent, 2: random
    target_cat = np.select([kind == 0, kind == 1], [prefs[user, rng.integers(0, 2, n)], intent],
                           rng.integers(1, categories + 1, n))  # fmt: skip
    target = pick(target_cat)
    label = (target_cat == prefs[user, 0]) | (target_cat == prefs[user, 1]) | (target_cat == intent)
    label ^= rng.random(n) < 0.05
    if not with_history:
        pos[:], neg[:] = 0, 0
    return user, target, pos, neg, label


def _feature(k: int, ids: np.ndarray, item_cat: np.ndarray) -> np.ndarray:
    """Item feature k of item ids (0 stays 0): 0 = the id, 1 = its category, k >= 2 = a 'brand'."""
    values = ids if k == 0 else item_cat[ids] if k == 1 else (ids % (5 + k)) + 1
    return np.where(ids > 0, values, 0).astype(np.int32)


def _fixed(values: np.ndarray, t: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), t)


def _write_spec(path, user_names, item_features, users, items, categories, t, files, columns, rename) -> None:
    cards = {0: items, 1: categories}
    features = {"label": {"dtype": "bool"}}
    features |= {name: {"dtype": "int32", "cardinality": users} for name in user_names}
    channels = {"label": ["label"], "user_features": list(user_names), "target_item_features": [],
                "positive_history": [], "negative_history": []}  # fmt: skip
    for k in range(item_features):
        card = cards.get(k, 5 + k + 1)
        for name, channel in zip(
            item_feature_names(k), ("target_item_features", "positive_history", "negative_history")
        ):
            features[name] = {"dtype": "int32", "cardinality": card}
            if channel != "target_item_features":
                features[name]["dimensions"] = [t]
            channels[channel].append(name)
    sources = {split: [{"type": "parquet", "features": columns,
                        "files": [f"{split}/part_{i}.parquet" for i in range(files)]}] for split in ("train", "test")}  # fmt: skip
    new = lambda name: rename.get(name, name)  # noqa: E731
    features = {new(k): v for k, v in features.items()}
    channels = {c: [new(n) for n in names] for c, names in channels.items()}
    for chunks in sources.values():
        chunks[0]["features"] = [new(n) for n in chunks[0]["features"]]
    FeatureSpec.from_dict({"feature_spec": features, "source_spec": sources, "channel_spec": channels,
                           "metadata": {}}, path).to_yaml(path / "feature_spec.yaml")  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches gain nothing from a second thread, and on a busy 2-core machine every parallel op
    waits for the slower thread: the SIM tests run 2-5x faster single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    return write_planted(tmp_path_factory.mktemp("sim") / "planted")


@pytest.fixture(scope="session")
def planted_no_history(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """The same rows (same seed) with every history empty: the no-history baseline."""
    return write_planted(tmp_path_factory.mktemp("sim") / "no_history", with_history=False)


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """A few hundred rows for smoke, resume and distributed tests."""
    return write_planted(tmp_path_factory.mktemp("sim") / "small", users=120, train_rows_per_user=4,
                         test_rows_per_user=1, row_group_size=100)  # fmt: skip


# Small model and batch: a fraction of a second per epoch on 2 CPU cores.
TINY = ["--embedding_dim", "8", "--long_seq_length", "14", "--gsu_topk", "6", "--stage_one_mlp_dims", "32",
        "--stage_two_mlp_dims", "32", "16", "--aux_mlp_dims", "16", "8", "--global_batch_size", "256",
        "--lr", "0.01", "--no-progress", "--log_every", "5"]  # fmt: skip
