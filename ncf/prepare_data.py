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
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common import cli
from common.errors import RecipeError
from common.logging import log_run
from ncf.dataset_files import DATA_FILES, check_output, ncf_spec, publish
from ncf.leave_one_out import Dataset, build_dataset, candidate_series, sample_test_negatives
from ncf.ratings_csv import released
from ncf.ratings_files import FORMATS, RATINGS_FILES, read_ratings


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
    except (RecipeError, OSError) as err:
        failure = released(err)
    raise failure  # outside the except block: see released


if __name__ == "__main__":
    cli.run(main)
