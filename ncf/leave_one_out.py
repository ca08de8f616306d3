"""The leave-one-out dataset of ncf.prepare_data: filter, remap, sort, dedup and split the raw ratings (DLE's
convert.py steps), then draw the test negatives and lay out the candidate series."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncf.ratings_csv import PrepareDataError
from ncf.ratings_files import Ratings


@dataclass
class Dataset:
    """Leave-one-out split on dense ids. train: int32 [N, 2] (user, item) by user then time;
    test: int32 [U, 2], one latest positive per user, users ascending; *_ids: dense id -> raw id."""

    train: np.ndarray
    test: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    dropped_users: int = 0
    duplicates: int = 0

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def build_dataset(ratings: Ratings, min_ratings: int = 20) -> Dataset:
    """Filter, remap, sort, dedup and split (DLE's convert.py steps; timestamp ties broken stably)."""
    codes, uniques = pd.factorize(ratings.user)  # dense ids by first appearance, like DLE's factorize
    raw_counts = np.bincount(codes)
    kept = raw_counts >= min_ratings  # counted on raw rows, before dedup (the 2019 DLE / paper filter)
    if not kept.any():
        raise PrepareDataError(
            f"{ratings.source}: no user left after filtering: none of {len(uniques)} users has {min_ratings} or "
            f"more ratings (max {raw_counts.max()}); lower --min_ratings"
        )
    users, raw_items, ts = codes, ratings.item, ratings.timestamp
    if not kept.all():  # whole users go, so renumbering kept users keeps first-appearance order
        rows = kept[codes]
        users, raw_items, ts = (np.cumsum(kept) - 1)[codes[rows]], raw_items[rows], ts[rows]
    user_ids, kept_codes = uniques[kept], np.flatnonzero(kept)
    items, item_ids = pd.factorize(raw_items)  # after the filter: items of dropped users do not exist
    num_users, num_items = len(user_ids), len(item_ids)
    if max(num_users, num_items) >= 2**31:
        raise PrepareDataError(
            f"{ratings.source}: {num_users} users / {num_items} items do not fit int32 ids"
        )

    order = _by_user_then_time(users, ts, num_users)
    users, items = users[order], items[order]
    del order
    users, items, duplicates = _drop_later_copies(users, items, num_items)

    per_user = np.bincount(users, minlength=num_users)
    single = np.flatnonzero(per_user < 2)
    if single.size:
        u = single[0]
        raise PrepareDataError(
            f"{ratings.source}: user {user_ids[u]} has a single distinct item after filtering and dedup "
            f"({raw_counts[kept_codes[u]]} rating(s)); leave-one-out needs one to test and one to train "
            f"({single.size} such user(s)); use --min_ratings 2 or more"
        )
    last = np.ones(len(users), bool)  # rows are grouped by user: the last row of a group is its latest
    last[:-1] = users[1:] != users[:-1]
    train, test = np.empty((len(users) - num_users, 2), np.int32), np.empty((num_users, 2), np.int32)
    train[:, 0], train[:, 1], test[:, 0], test[:, 1] = users[~last], items[~last], users[last], items[last]
    return Dataset(train, test, user_ids, item_ids, int((~kept).sum()), duplicates)


def _by_user_then_time(users: np.ndarray, ts: np.ndarray, num_users: int) -> np.ndarray:
    """The row order that groups users (ascending), each user's rows oldest first.

    DLE sorted by time with pandas' default quicksort, which is NOT stable: ties on equal timestamps
    went arbitrarily. We sort (user, time) with a stable sort, so ties keep raw file order: of two
    ratings with the same latest timestamp the later line is the test item.
    """
    ts_min, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
    if num_users * span >= 2**63:
        return np.lexsort((ts, users))
    key = ts - ts_min  # in place below: this runs on 20M rows at ml-20m
    key += users.astype(np.int64) * span
    return np.argsort(key, kind="stable")


def _drop_later_copies(
    users: np.ndarray, items: np.ndarray, num_items: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Dedup (user, item) keeping the earliest (DLE's drop_duplicates after the time sort): a stable sort
    of the pair keys leaves the earliest copy first, every later copy is flagged. (users, items, copies
    dropped)."""
    pairs = users.astype(np.int64) * num_items + items
    by_pair = np.argsort(pairs, kind="stable")
    sorted_pairs = pairs[by_pair]
    later_copy = by_pair[1:][sorted_pairs[1:] == sorted_pairs[:-1]]
    del pairs, by_pair, sorted_pairs
    if not later_copy.size:
        return users, items, 0
    keep = np.ones(len(users), bool)
    keep[later_copy] = False
    return users[keep], items[keep], int(later_copy.size)


def sample_test_negatives(
    train: np.ndarray,
    test_users: np.ndarray,
    num_items: int,
    num_negatives: int,
    seed: int = 1,
    max_rounds: int = 64,
) -> np.ndarray:
    """int32 [len(test_users), num_negatives]: uniform items in [0, num_items), with replacement, never a
    training positive of that row's user.

    Reference semantics (DLE's convert.py): only TRAIN positives are excluded, so the held-out item itself may
    be drawn; the evaluator masks such duplicates, and excluding it would raise HR slightly.
    One series per test row, not per user-id range, so sparse or test-only users cannot misalign
    the lengths (DLE#987). Rejection sampling, vectorised: draw everything, redraw only the rejected
    slots. After `max_rounds`, the few slots left (users who trained on most items) are drawn exactly
    from their complement, so termination never depends on luck.
    """
    rng = np.random.default_rng(seed)
    test_users = np.asarray(test_users, np.int64)
    keys = np.sort(train[:, 0].astype(np.int64) * num_items + train[:, 1])  # sorted train pair keys
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # np.unique hashes first: 20x slower
    seen = np.bincount(keys // num_items, minlength=int(test_users.max(initial=-1)) + 1)[test_users]
    if num_negatives and (seen >= num_items).any():
        r = int(np.argmax(seen >= num_items))
        raise PrepareDataError(
            f"user {test_users[r]} trained on all {num_items} items: no test negative can be drawn for it"
        )
    users = np.repeat(test_users, num_negatives)
    items = rng.integers(0, num_items, size=users.size)
    pending = np.arange(users.size)
    for _ in range(max_rounds):
        if not (pending.size and keys.size):
            break
        wanted = users[pending] * num_items + items[pending]
        pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
        pending = pending[keys[pos] == wanted]
        items[pending] = rng.integers(0, num_items, size=pending.size)
    if pending.size and keys.size:
        for user in np.unique(users[pending]):  # only near-saturated users reach this loop
            slots = pending[users[pending] == user]
            lo, hi = np.searchsorted(keys, [user * num_items, (user + 1) * num_items])
            allowed = np.setdiff1d(np.arange(num_items), keys[lo:hi] - user * num_items)
            items[slots] = rng.choice(allowed, size=slots.size)
    return items.astype(np.int32).reshape(len(test_users), num_negatives)


def candidate_series(test: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Series of neg+1 rows per test row, positive FIRST (current DLE): int32 [U*(neg+1), 2], float32 labels."""
    num, per = len(test), negatives.shape[1] + 1
    pairs = np.empty((num, per, 2), np.int32)
    pairs[:, :, 0] = test[:, :1]
    pairs[:, 0, 1] = test[:, 1]
    pairs[:, 1:, 1] = negatives
    labels = np.zeros((num, per), np.float32)
    labels[:, 0] = 1.0
    return pairs.reshape(-1, 2), labels.reshape(-1)
