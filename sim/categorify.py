"""DLE-SIM preprocessing steps 2-5: filter users, assign ids, attach categories, order each user's reviews.

Ids follow the reference: the distinct values are numbered 1..N in **sorted** order of the raw strings
(cuDF's `unique()` returns sorted values; byte order of the UTF-8 strings), 0 is padding. Items and users
are numbered among the reviews that survive the user filter, categories among those items' categories
(with "no_category" an ordinary category). Each user's reviews are ordered by (unixReviewTime, asin):
timestamps are whole days, so the raw asin breaks the many ties; item ids follow asin order, so sorting
by item id is the same tie-break. Everything is vectorised (pyarrow hashing, numpy sorts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.amazon_meta import Metadata
from sim.amazon_reviews import Reviews
from sim.raw_input import PrepareDataError

NO_CATEGORY = "no_category"


@dataclass
class Interactions:
    """Kept reviews on dense ids, grouped by user (uid 1..U ascending), each user's oldest review first.

    items: int32 [N] item ids; counts: int64 [U] reviews of uid u + 1; item_category: int32 [I + 1]
    category id of each item id (index 0 = padding = 0). sampling_table(min_history) gives the negatives'
    table (sim.history_rows).
    """

    items: np.ndarray
    counts: np.ndarray
    item_category: np.ndarray
    num_categories: int
    dropped_users: int
    dropped_reviews: int
    uncategorised_items: int

    @property
    def num_users(self) -> int:
        return len(self.counts)

    @property
    def num_items(self) -> int:
        return len(self.item_category) - 1

    @property
    def starts(self) -> np.ndarray:
        """int64 [U + 1]: user u's reviews are items[starts[u - 1]:starts[u]]."""
        return np.concatenate([[0], np.cumsum(self.counts)])

    def sampling_table(self, min_history: int) -> np.ndarray:
        """int32 [T]: item id of every training target (review t with min_history <= t < n - 1), sorted.

        A uniform row is an item drawn in proportion to its popularity as a training target. The
        reference's table holds every kept review; see sim.history_rows for why that leaks the label.
        """
        within = np.arange(len(self.items)) - np.repeat(self.starts[:-1], self.counts)
        target = (within >= min_history) & (within < np.repeat(self.counts, self.counts) - 1)
        counts = np.bincount(self.items[target], minlength=self.num_items + 1)
        return np.repeat(np.arange(len(counts), dtype=np.int32), counts)


def build_interactions(reviews: Reviews, meta: Metadata | None, min_reviews: int) -> Interactions:
    """Filter users with < min_reviews review rows (duplicates count, as in the reference), then number."""
    user_codes, user_names = _encode(reviews.user)
    per_user = np.bincount(user_codes, minlength=len(user_names))
    kept_user = per_user >= min_reviews
    if not kept_user.any():
        raise PrepareDataError(
            f"{reviews.path}: no user left after filtering: none of {len(user_names)} users has "
            f"{min_reviews} or more reviews (the most is {per_user.max()}); lower --shortest_sequence_for_user"
        )
    rows = kept_user[user_codes]
    uid_of_code = np.zeros(len(user_names), np.int64)
    uid_of_code[kept_user] = _sorted_ids(user_names.filter(pa.array(kept_user)))
    uid = uid_of_code[user_codes[rows]]
    del user_codes

    item_codes, item_names = _encode(reviews.item.filter(pa.array(rows)))
    item_id_of_code = _sorted_ids(item_names)
    item_id = item_id_of_code[item_codes]
    names_by_id = item_names.take(pa.array(np.argsort(item_id_of_code)))  # row k = item id k + 1
    categories = _categories(names_by_id, meta)
    uncategorised = pc.sum(pc.equal(categories, NO_CATEGORY)).as_py() or 0
    cat_codes, cat_names = _encode(categories)
    item_category = np.zeros(len(names_by_id) + 1, np.int32)
    item_category[1:] = _sorted_ids(cat_names)[cat_codes]

    order = _time_order(uid, reviews.time[rows], item_id)
    counts = np.bincount(uid, minlength=int(uid.max()) + 1)[1:]
    return Interactions(
        items=item_id[order].astype(np.int32),
        counts=counts.astype(np.int64),
        item_category=item_category,
        num_categories=len(cat_names),
        dropped_users=int((~kept_user).sum()),
        dropped_reviews=int(len(rows) - rows.sum()),
        uncategorised_items=int(uncategorised),
    )


def _encode(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(int64 code per row, distinct values in first-appearance order): one hash pass."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):  # the chunks share one dictionary (the final one)
        if encoded.num_chunks == 0:
            return np.empty(0, np.int64), pa.array([], values.type)
        dictionary = encoded.chunk(encoded.num_chunks - 1).dictionary
        codes = np.concatenate([chunk.indices.to_numpy() for chunk in encoded.chunks])
    else:
        dictionary, codes = encoded.dictionary, encoded.indices.to_numpy()
    return codes.astype(np.int64), dictionary


def _sorted_ids(names: pa.Array) -> np.ndarray:
    """int64 id of each distinct name: its 1-based rank in byte order (the reference's sorted unique)."""
    ids = np.empty(len(names), np.int64)
    ids[pc.sort_indices(names).to_numpy()] = np.arange(1, len(names) + 1)
    return ids


def _categories(names_by_id: pa.Array, meta: Metadata | None) -> pa.Array:
    """categories[0][-1] of each item's metadata line; "no_category" without one (reference's fillna)."""
    if meta is None:
        return pa.array(np.full(len(names_by_id), NO_CATEGORY, object), pa.string())
    found = pc.index_in(names_by_id, value_set=meta.asin)
    return pc.fill_null(pc.take(meta.category, found), NO_CATEGORY)


def _time_order(uid: np.ndarray, time: np.ndarray, item_id: np.ndarray) -> np.ndarray:
    """Row order by (uid, unixReviewTime, item id): one int64 key when it fits, else lexsort."""
    days, day_rank = np.unique(time, return_inverse=True)
    width_items, width_time = int(item_id.max()) + 1, len(days)
    if (int(uid.max()) + 1) * width_time * width_items < 2**63:
        key = (uid * width_time + day_rank) * width_items + item_id
        return np.argsort(key, kind="stable")
    return np.lexsort((item_id, time, uid))
