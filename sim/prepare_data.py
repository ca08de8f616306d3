"""Turn Amazon Reviews 2014 files into SIM's Parquet + FeatureSpec dataset (the reference's preprocessing).

  Books (default names): python -m sim.prepare_data --amazon_dataset_path /data/amazon_books_2014 --output_path /data/sim
  other category       : python -m sim.prepare_data --amazon_dataset_path DIR --output_path OUT \\
                           --reviews_file_name reviews_Digital_Music_5.json.gz --metadata_file_name meta_Digital_Music.json.gz
  no metadata          : ... --metadata_file_name ''       (every item gets the category "no_category")
  prebatched           : ... --prebatch_train_size 4096 --prebatch_test_size 4096
  download + prepare   : sim/prepare_dataset.sh /data/amazon_books_2014 /data/sim

Reviews are strict JSON lines (reviewerID, asin, unixReviewTime), metadata Python dict literals (category =
categories[0][-1]); `.json` or `.json.gz`. Steps (DLE-SIM's): keep users with >= --shortest_sequence_for_user
reviews, number users/items/categories from 1 in sorted order, order each user's reviews by (time, asin),
last review = test row, earlier ones = training rows with up to --max_sequence_length left-padded history
items, negatives drawn from the training targets (--negative_sampling; why: sim/history_rows.py). Output
(sim/parquet_output.py): feature_spec.yaml, metadata.json, train/part_{k}.parquet, test/part_{k}.parquet,
published atomically.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from common import cli, config
from common.config import flag
from common.logging import log_run
from sim import parquet_output as out
from sim.amazon_meta import read_metadata
from sim.amazon_reviews import read_reviews
from sim.categorify import Interactions, build_interactions
from sim.history_rows import SPLITS, iter_chunks
from sim.raw_input import PrepareDataError, resolve_input


class _Clock:
    """Wall and CPU seconds per stage; CPU includes finished child processes (the metadata pool), so a
    loaded machine's wall time can be told apart from the work done."""

    def __init__(self) -> None:
        self.stages: dict[str, tuple[float, float]] = {}
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime

    def mark(self, stage: str) -> None:
        now = self._now()
        self.stages[stage] = (now[0] - self._last[0], now[1] - self._last[1])
        self._last = now

    def summary(self) -> str:
        return "stages: " + ", ".join(f"{k} {w:.1f} s (cpu {c:.1f} s)" for k, (w, c) in self.stages.items())


MINIMA = {  # the smallest value each count flag accepts
    "max_sequence_length": 1, "shortest_sequence_for_user": 1, "shortest_sequence_for_training": 0,
    "prebatch_train_size": 0, "prebatch_test_size": 0, "rows_per_part": 1, "metadata_loader_n_proc": 1,
}  # fmt: skip


@dataclass(frozen=True)
class PrepareConfig:
    amazon_dataset_path: Path | None = flag(
        None, "directory holding the review and metadata files (required)"
    )
    output_path: Path | None = flag(None, "dataset directory to create, published atomically (required)")
    reviews_file_name: str = flag("reviews_Books.json", "review file; NAME.gz is used if NAME is absent")
    metadata_file_name: str = flag(
        "meta_Books.json",
        "metadata file (NAME.gz if NAME is absent); '' = none: every item gets the category no_category",
    )
    max_sequence_length: int = flag(100, "history length L: the newest L items, left-padded")
    shortest_sequence_for_user: int = flag(20, "drop users with fewer reviews")
    shortest_sequence_for_training: int = flag(
        1, "drop training rows whose history has fewer items (0 keeps the empty-history first review)"
    )
    prebatch_train_size: int = flag(0, f"train row-group size; 0 = {out.DEFAULT_ROW_GROUP}")
    prebatch_test_size: int = flag(0, f"test row-group size; 0 = {out.DEFAULT_ROW_GROUP}")
    rows_per_part: int = flag(1 << 20, "rows per part file (rounded up to whole row groups)")
    seed: int = flag(12345, "seed of the negative sampler")
    negative_sampling: Literal["popularity", "uniform"] = flag(
        "popularity",
        "negatives: popularity = as often as the item is a training target (reference's distribution), "
        "uniform = each training-target item equally (the DIN code)",
    )
    metadata_loader_n_proc: int = flag(
        os.cpu_count() or 1,
        "processes parsing the metadata literals (1 = in this process), os.cpu_count() by default",
    )
    overwrite: bool = flag(False, "replace a non-empty --output_path")
    no_progress: bool = flag(False, "no progress bars (the summary line is still printed)")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run (None = none)")

    def validate(self) -> None:
        """Every bad value in one line (common.config.parse shows it as argparse's usage error, exit 2)."""
        if missing := [f"--{n}" for n in ("amazon_dataset_path", "output_path") if getattr(self, n) is None]:
            raise ValueError(f"the following arguments are required: {', '.join(missing)}")
        problems = [
            f"--{name} must be >= {low}, got {getattr(self, name)}"
            for name, low in MINIMA.items()
            if getattr(self, name) < low
        ]
        if self.shortest_sequence_for_training > self.max_sequence_length:
            problems.append(
                "--shortest_sequence_for_training must be <= --max_sequence_length (histories are cut to it)"
            )
        if problems:
            raise ValueError("; ".join(problems))


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(PrepareConfig, argv, prog="python -m sim.prepare_data", description=__doc__)
    start = time.perf_counter()
    clock = _Clock()  # per-stage times for the summary and sim.benchmark_prepare
    try:
        out.check_output(cfg.output_path.absolute(), cfg.overwrite, _inputs(cfg))
        reviews_path = resolve_input(cfg.amazon_dataset_path, cfg.reviews_file_name, "reviews")
        meta_path = None
        if cfg.metadata_file_name:
            meta_path = resolve_input(cfg.amazon_dataset_path, cfg.metadata_file_name, "metadata")
        reviews = read_reviews(reviews_path, progress=not cfg.no_progress)
        num_reviews = len(reviews)
        clock.mark("reviews")
        meta = None
        if meta_path is not None:
            meta = read_metadata(meta_path, n_proc=cfg.metadata_loader_n_proc, progress=not cfg.no_progress)
        clock.mark("metadata")
        data = build_interactions(reviews, meta, cfg.shortest_sequence_for_user)
        del reviews, meta  # raw strings are no longer needed: lower peak memory for the writers
        clock.mark("ids")
        sources = {
            "reviews": str(reviews_path.absolute()),
            "metadata": meta_path and str(meta_path.absolute()),
        }
        rows = _write_dataset(cfg, data, sources, clock)
    except OSError as err:  # an input that cannot be read (a full disk is a PrepareDataError from staging)
        raise PrepareDataError(str(err)) from None
    seconds = time.perf_counter() - start
    print(clock.summary(), file=sys.stderr)
    print(
        f"prepared {reviews_path.name}: {num_reviews} reviews -> {data.num_users} users "
        f"({data.dropped_users} with < {cfg.shortest_sequence_for_user} reviews dropped), {data.num_items} items, "
        f"{data.num_categories} categories ({data.uncategorised_items} items without one); "
        f"{rows['train']} train rows, {rows['test']} test rows in {seconds:.1f} s "
        f"({num_reviews / seconds:,.0f} reviews/s) -> {cfg.output_path}",
        file=sys.stderr,
    )
    result = {
        "reviews": num_reviews,
        "users": data.num_users,
        "items": data.num_items,
        "categories": data.num_categories,
        "train_rows": rows["train"],
        "test_rows": rows["test"],
        "seconds": seconds,
    }
    return log_run(cfg.log_path, config.to_dict(cfg), result)


def _inputs(cfg: PrepareConfig) -> list[Path]:
    """What --overwrite must never delete: the input directory and files (also given as absolute names)."""
    names = [cfg.reviews_file_name] + ([cfg.metadata_file_name] if cfg.metadata_file_name else [])
    return [cfg.amazon_dataset_path] + [cfg.amazon_dataset_path / name for name in names]


def _write_dataset(cfg: PrepareConfig, data: Interactions, sources: dict, clock: _Clock) -> dict[str, int]:
    """Parts of both splits, metadata.json and feature_spec.yaml into a staging dir, then publish."""
    # Imported here: spawned metadata workers re-import this module, and common.feature_spec imports
    # torch (2-6 s per worker on the dev machine).
    from common.feature_spec import FeatureSpec, FeatureSpecError

    prebatch = {"train": cfg.prebatch_train_size, "test": cfg.prebatch_test_size}
    groups = {split: size or out.DEFAULT_ROW_GROUP for split, size in prebatch.items()}
    L = cfg.max_sequence_length
    with out.staging(cfg.output_path, cfg.overwrite, _inputs(cfg)) as tmp:
        files, rows = {}, {}
        for split in SPLITS:
            writer = out.SplitWriter(tmp / split, L, groups[split], cfg.rows_per_part)
            with tqdm(total=data.num_users, unit="user", desc=split, disable=cfg.no_progress) as bar:
                chunks = iter_chunks(
                    data,
                    split,
                    max_len=L,
                    min_history=cfg.shortest_sequence_for_training,
                    seed=cfg.seed,
                    negatives=cfg.negative_sampling,
                )
                for chunk in chunks:
                    writer.write(out.to_table(chunk, L))
                    bar.update(chunk.users)
            writer.close()
            files[split], rows[split] = writer.files, writer.rows
            clock.mark(split)
            if writer.rows == 0:
                raise PrepareDataError(
                    f"{sources['reviews']}: no {split} row: every kept user has <= "
                    f"{cfg.shortest_sequence_for_training + 1} reviews; raise --shortest_sequence_for_user"
                )
        counts = {"uid": data.num_users, "item": data.num_items, "cat": data.num_categories}
        out.write_cardinalities(tmp / "metadata.json", *counts.values())
        metadata = {
            "max_sequence_length": L,
            "shortest_sequence_for_user": cfg.shortest_sequence_for_user,
            "shortest_sequence_for_training": cfg.shortest_sequence_for_training,
            "seed": cfg.seed,
            "rows": rows,
            "prebatch_size": prebatch,
            "row_group_size": groups,
            "cardinalities": counts,
            "source_files": sources,
            "negative_sampling": f"{cfg.negative_sampling} over the training targets, no rejection, "
            "item's own category",
            "row_order": "by user id; per user its positives (oldest target first), then their negatives",
        }
        spec = out.feature_spec_dict(files, counts, L, metadata)
        try:
            FeatureSpec.from_dict(spec, tmp).to_yaml(tmp / "feature_spec.yaml")
            FeatureSpec.from_yaml(tmp / "feature_spec.yaml")  # structural check, files included
        except FeatureSpecError as err:
            raise PrepareDataError(str(err)) from err
    return rows


if __name__ == "__main__":
    cli.run(main)
