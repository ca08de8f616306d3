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

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from common import cli, config
from common.config import ConfigError, flag
from common.errors import RecipeError
from common.logging import log_run
from ncf.dataset_files import DATA_FILES, check_output, ncf_spec, publish
from ncf.leave_one_out import Dataset, build_dataset, candidate_series, sample_test_negatives
from ncf.ratings_csv import released
from ncf.ratings_files import RATINGS_FILES, read_ratings


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


@dataclass(frozen=True)
class PrepareConfig:
    """python -m ncf.prepare_data's flags."""

    input: Path | None = flag(
        None, "ratings file, a directory holding one (at top level or one folder down), or a MovieLens .zip "
        "(read in memory); required",
    )  # fmt: skip
    output: Path | None = flag(None, "dataset directory to create, atomically; required")
    format: Literal["auto", "ml-dat", "ml-csv", "ml-100k", "csv"] = flag(
        "auto", "input layout; auto recognises the MovieLens ones from line 1"
    )
    header: bool = flag(False, "--format csv only: line 1 is a header (without it: no header line)")
    valid_negative: int = flag(100, "test negatives per user, 0 allowed")
    seed: int = flag(1, "seed of the test-negative sampler")
    min_ratings: int = flag(20, "drop users with fewer raw ratings")
    overwrite: bool = flag(False, "replace a non-empty --output (without it: refuse)")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run; none = no log")

    def validate(self) -> None:
        if self.input is None or self.output is None:
            raise ConfigError("--input and --output are required")
        if self.valid_negative < 0 or self.min_ratings < 1:
            raise ConfigError("--valid_negative must be >= 0 and --min_ratings >= 1")


def run(cfg: PrepareConfig) -> dict[str, float]:
    """The whole pipeline; each step is logged with its time."""
    start = step = time.perf_counter()
    check_output(cfg.output.absolute(), cfg.overwrite, [cfg.input])  # before reading anything
    ratings = read_ratings(cfg.input, cfg.format, cfg.header)
    step = _log(f"read {ratings.source} ({ratings.layout} layout): {len(ratings.user)} ratings", step)
    layout = ratings.layout
    dataset = build_dataset(ratings, cfg.min_ratings)
    del ratings  # the raw columns are no longer needed: lower peak memory for what follows
    users, items, train_rows = dataset.num_users, dataset.num_items, len(dataset.train)
    step = _log(
        f"filter/remap/sort/dedup/split: {users} users ({dataset.dropped_users} with < {cfg.min_ratings} "
        f"ratings dropped), {items} items, {dataset.duplicates} duplicate pairs dropped",
        step,
    )
    negatives = sample_test_negatives(dataset.train, dataset.test[:, 0], items, cfg.valid_negative, cfg.seed)
    step = _log(f"test negatives: {cfg.valid_negative} per user", step)
    metadata = {"valid_negative": cfg.valid_negative, "seed": cfg.seed, "min_ratings": cfg.min_ratings}
    metadata |= {"source": str(cfg.input.absolute()), "layout": layout}
    output = write_dataset(cfg.output, dataset, negatives, metadata, cfg.overwrite, [cfg.input])
    _log(f"write {output}", step)
    seconds, series = time.perf_counter() - start, cfg.valid_negative + 1
    print(
        f"prepared {_dataset_name(cfg.input.absolute())}: {users} users, {items} items, {train_rows} train "
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
    cfg = config.parse(PrepareConfig, argv, prog="python -m ncf.prepare_data", description=__doc__)
    try:
        return log_run(cfg.log_path, config.to_dict(cfg), run(cfg))
    except (RecipeError, OSError) as err:
        failure = released(err)
    raise failure  # outside the except block: see released


if __name__ == "__main__":
    cli.run(main)
