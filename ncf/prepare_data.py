"""Turn a MovieLens (or bring-your-own) ratings file into NCF's leave-one-out train/test npy dataset.

  ml-20m zip : python -m ncf.prepare_data --input /data/ml-20m/ml-20m.zip --output /data/cache/ml-20m
  ml-1m dir  : python -m ncf.prepare_data --input /data/ml-1m --output /data/cache/ml-1m
  BYO csv    : python -m ncf.prepare_data --input events.csv --format csv --header --output /data/cache/byo

Layouts: ratings.dat (user::item::rating::ts, ml-1m/ml-10m), ratings.csv with header
userId,movieId,rating,timestamp (ml-20m/ml-25m/latest), u.data (tab-separated, ml-100k), and a generic
user,item,timestamp CSV (--format csv). Output (see write_dataset): train_data_{0,1}.npy,
test_data_{0,1}.npy, user_ids.npy, item_ids.npy and feature_spec.yaml, published atomically.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common import cli
from common.feature_spec import FeatureSpecError
from common.logging import log_run
from ncf.dataset_files import DATA_FILES, check_output, ncf_spec, publish
from ncf.ratings_csv import BOM, PrepareDataError, content_span, parse_csv

RATINGS_FILES = ("ratings.csv", "ratings.dat", "u.data")  # each may also be gzipped (name + ".gz")
ML_CSV_HEADER = b"userId,movieId,rating,timestamp"
FORMATS = ("auto", "ml-dat", "ml-csv", "ml-100k", "csv")
_LAYOUT_HELP = (
    "looked for: a '::'-separated user::item::rating::timestamp line (ratings.dat, ml-1m/ml-10m), "
    f"the header '{ML_CSV_HEADER.decode()}' (ratings.csv, ml-20m/ml-25m/latest), a tab-separated "
    "user item rating timestamp line (u.data, ml-100k); for a user,item,timestamp CSV pass --format csv "
    "(plus --header if line 1 is a header)"
)


@dataclass
class Ratings:
    """Raw interactions in file order (int64 arrays); `source` names the file in messages."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    layout: str
    source: str


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


# ---- reading -------------------------------------------------------------------------------------


def _pick(candidates: list[str], where: str) -> str:
    """The ratings file closest to the top (depth 0, then 1); two at the same depth is ambiguous."""
    for depth in (0, 1):
        found = [
            c
            for c in candidates
            if c.count("/") == depth and c.rsplit("/", 1)[-1].removesuffix(".gz") in RATINGS_FILES
        ]
        if len(found) > 1:
            raise PrepareDataError(f"{where}: several ratings files {sorted(found)}; pass one with --input")
        if found:
            return found[0]
    raise PrepareDataError(
        f"{where}: no ratings file; looked for {', '.join(RATINGS_FILES)} (or .gz) at top level or one "
        "folder down"
    )


def _gunzip(data: bytes, source: str) -> bytes:
    """A .gz file's contents; a cut-off or corrupt one is an error that names it (not a zlib traceback)."""
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PrepareDataError(
            f"{source}: truncated or corrupt gzip file ({err}); download it again, or pass it decompressed"
        ) from None


def _unpacked(data: bytes, name: str) -> bytes:
    return _gunzip(data, name) if name.lower().endswith(".gz") else data


def _load_bytes(path: Path) -> tuple[bytes, str]:
    """The ratings bytes and a display name; zip members and .gz files are read in memory, never extracted."""
    if not path.exists():
        raise PrepareDataError(f"{path}: input does not exist")
    if path.is_dir():
        found = [p.relative_to(path).as_posix() for p in [*path.glob("*"), *path.glob("*/*")] if p.is_file()]
        file = path / _pick(found, str(path))
        return _unpacked(file.read_bytes(), str(file)), str(file)
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = [
                    n for n in archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX")
                ]
                member = _pick(names, str(path))
                data = archive.read(member)
        except (zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise PrepareDataError(f"{path}: not a valid zip archive, or a truncated one ({err})") from None
        return _unpacked(data, f"{path}:{member}"), f"{path}:{member}"
    return _unpacked(path.read_bytes(), str(path)), str(path)


def detect_layout(first_line: bytes, source: str) -> str:
    """MovieLens layout from line 1 alone; the generic csv layout is never guessed (explicit --format)."""
    line = first_line.removeprefix(BOM).rstrip(b"\r")
    if b"::" in line:
        return "ml-dat"
    if line == ML_CSV_HEADER:
        return "ml-csv"
    if line.count(b"\t") == 3:
        return "ml-100k"
    raise PrepareDataError(
        f"{source} line 1: unknown layout ({line[:80].decode(errors='replace')!r}); {_LAYOUT_HELP}"
    )


def read_ratings(path: str | os.PathLike, fmt: str = "auto", header: bool | None = None) -> Ratings:
    """Parse user, item, timestamp (int64) in file order; ratings are dropped (implicit feedback).

    `header` only applies to --format csv (default: no header). DLE's load_unknown always skipped line 1
    of a BYO csv, silently losing a data row of headerless files; here the caller says.
    """
    if fmt not in FORMATS:
        raise PrepareDataError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")
    data, source = _load_bytes(Path(path))
    start, end = content_span(data)
    if start == end:
        raise PrepareDataError(f"{source}: file is empty")
    newline = data.find(b"\n", start, end)
    first = data[start : end if newline < 0 else newline].rstrip(b"\r")
    layout = detect_layout(first, source) if fmt == "auto" else fmt
    if layout == "ml-csv" and first != ML_CSV_HEADER:
        raise PrepareDataError(
            f"{source} line 1: expected the header '{ML_CSV_HEADER.decode()}', "
            f"found {first[:80].decode(errors='replace')!r}"
        )
    columns = ("user", "item", "timestamp") if layout == "csv" else ("user", "item", "rating", "timestamp")
    sep = {"ml-dat": "::", "ml-100k": "\t"}.get(layout, ",")
    skip = layout == "ml-csv" or (layout == "csv" and bool(header))
    arrays = parse_csv(data, source, columns, dict.fromkeys(("user", "item", "timestamp"), "int"), sep, skip)
    return Ratings(arrays["user"], arrays["item"], arrays["timestamp"], layout, source)


# ---- transforming --------------------------------------------------------------------------------


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

    # DLE sorted by time with pandas' default quicksort, which is NOT stable: ties on equal timestamps
    # went arbitrarily. We sort (user, time) with a stable sort, so ties
    # keep raw file order: of two ratings with the same latest timestamp the later line is the test item.
    ts_min, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
    if num_users * span < 2**63:
        key = ts - ts_min  # in place below: this runs on 20M rows at ml-20m
        key += users.astype(np.int64) * span
        order = np.argsort(key, kind="stable")
        del key
    else:
        order = np.lexsort((ts, users))
    users, items = users[order], items[order]
    del order

    # Dedup (user, item) keeping the earliest (DLE's drop_duplicates after the time sort): a stable sort
    # of the pair keys leaves the earliest copy first, every later copy is flagged.
    pairs = users.astype(np.int64) * num_items + items
    by_pair = np.argsort(pairs, kind="stable")
    sorted_pairs = pairs[by_pair]
    later_copy = by_pair[1:][sorted_pairs[1:] == sorted_pairs[:-1]]
    del pairs, by_pair, sorted_pairs
    if later_copy.size:
        keep = np.ones(len(users), bool)
        keep[later_copy] = False
        users, items = users[keep], items[keep]

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
    return Dataset(train, test, user_ids, item_ids, int((~kept).sum()), int(later_copy.size))


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


# ---- writing -------------------------------------------------------------------------------------


def write_dataset(
    output: str | os.PathLike,
    dataset: Dataset,
    negatives: np.ndarray,
    metadata: dict,
    overwrite: bool = False,
    inputs: Iterable[Path] = (),
) -> Path:
    """Publish the npy dataset: train/test (user, item) int32 [N, 2] + float32 labels [N], raw id maps."""
    pairs, labels = candidate_series(dataset.test, negatives)
    arrays = dict(zip(DATA_FILES, (dataset.train, np.ones(len(dataset.train), np.float32), pairs, labels)))
    arrays |= {
        "user_ids.npy": dataset.user_ids.astype(np.int64),
        "item_ids.npy": dataset.item_ids.astype(np.int64),
    }
    metadata = {
        "test_samples_per_series": negatives.shape[1] + 1,
        **metadata,
        "users": dataset.num_users,
        "items": dataset.num_items,
        "train_rows": len(dataset.train),
        "user_ids": "user_ids.npy",
        "item_ids": "item_ids.npy",
    }
    spec = ncf_spec(("user", "item", "label"), (dataset.num_users, dataset.num_items), metadata)
    return publish(output, arrays, spec, overwrite, inputs)


# ---- command line --------------------------------------------------------------------------------


def _log(message: str, since: float) -> float:
    """One progress line on stderr with the step's wall time; returns now, the next step's start."""
    now = time.perf_counter()
    print(f"ncf.prepare_data: {message} [{now - since:.1f} s]", file=sys.stderr)
    return now


def _dataset_name(path: Path) -> str:
    if path.is_file() and path.name.removesuffix(".gz") in RATINGS_FILES:
        return path.parent.name
    return path.stem if path.suffix.lower() in (".zip", ".gz") else path.name


_FLAGS: list[tuple[str, dict]] = [
    ("--input", {"type": Path, "required": True, "help": "ratings file, a directory holding one (at top "
     "level or one folder down), or a MovieLens .zip (read in memory)"}),
    ("--output", {"type": Path, "required": True, "help": "dataset directory to create, atomically"}),
    ("--format", {"choices": FORMATS, "default": "auto", "help": "input layout; auto recognises the "
     "MovieLens ones from line 1 (default: auto)"}),
    ("--header", {"action": argparse.BooleanOptionalAction, "default": None,
                  "help": "--format csv only: line 1 is a header (default: no header)"}),
    ("--valid_negative", {"type": int, "default": 100, "help": "test negatives per user, 0 allowed (default: 100)"}),
    ("--seed", {"type": int, "default": 1, "help": "seed of the test-negative sampler (default: 1)"}),
    ("--min_ratings", {"type": int, "default": 20, "help": "drop users with fewer raw ratings (default: 20)"}),
    ("--overwrite", {"action": "store_true", "help": "replace a non-empty --output (default: refuse)"}),
    ("--log_path", {"type": Path, "default": None, "help": "DLLogger JSON log of the run (default: None = none)"}),
]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ncf.prepare_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, options in _FLAGS:
        parser.add_argument(flag, **options)
    args = parser.parse_args(argv)
    if args.valid_negative < 0 or args.min_ratings < 1:
        parser.error("--valid_negative must be >= 0 and --min_ratings >= 1")
    return args


def run(args: argparse.Namespace) -> dict[str, float]:
    """The whole pipeline; each step is logged with its time."""
    start = step = time.perf_counter()
    check_output(args.output.absolute(), args.overwrite, [args.input])  # before reading anything
    ratings = read_ratings(args.input, args.format, args.header)
    step = _log(f"read {ratings.source} ({ratings.layout} layout): {len(ratings.user)} ratings", step)
    layout = ratings.layout
    dataset = build_dataset(ratings, args.min_ratings)
    del ratings  # the raw columns are no longer needed: lower peak memory for what follows
    users, items, train_rows = dataset.num_users, dataset.num_items, len(dataset.train)
    step = _log(
        f"filter/remap/sort/dedup/split: {users} users ({dataset.dropped_users} with < {args.min_ratings} "
        f"ratings dropped), {items} items, {dataset.duplicates} duplicate pairs dropped",
        step,
    )
    negatives = sample_test_negatives(
        dataset.train, dataset.test[:, 0], items, args.valid_negative, args.seed
    )
    step = _log(f"test negatives: {args.valid_negative} per user", step)
    metadata = {"valid_negative": args.valid_negative, "seed": args.seed, "min_ratings": args.min_ratings}
    metadata |= {"source": str(args.input.absolute()), "layout": layout}
    output = write_dataset(args.output, dataset, negatives, metadata, args.overwrite, [args.input])
    _log(f"write {output}", step)
    seconds, series = time.perf_counter() - start, args.valid_negative + 1
    print(
        f"prepared {_dataset_name(args.input.absolute())}: {users} users, {items} items, {train_rows} train "
        f"positives, {users}x{series} test candidates in {seconds:.1f} s -> {output}",
        file=sys.stderr,
    )
    return {
        "users": users,
        "items": items,
        "train_rows": train_rows,
        "test_rows": users * series,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        return log_run(args.log_path, args, run(args))
    except (PrepareDataError, FeatureSpecError, OSError) as err:
        message = f"error: {err}"
    # Exit outside the except block: a SystemExit chained to the error would keep its frames (and their
    # pyarrow buffers) alive into interpreter shutdown.
    print(message, file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    cli.run(main)
