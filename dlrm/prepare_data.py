"""Criteo click logs -> DLRM split-binary dataset (train/, test/, validation/ + feature_spec.yaml).

  terabyte : python -m dlrm.prepare_data --input /data/criteo --output /data/dlrm           (day_0..day_23)
  kaggle   : python -m dlrm.prepare_data --input /data/criteo_kaggle/train.txt --output /data/dlrm_kaggle
  subset   : python -m dlrm.prepare_data --input /data/criteo --days 3 --output /tmp/dlrm3 --frequency_threshold 3
  big box  : python -m dlrm.prepare_data --input /data/criteo --output /data/dlrm --workers 64 --memory_limit 64GB

Semantics (NVIDIA DLRM's Spark path): Terabyte train = days 0..22, day 23 halved in line order
(first half test, second half validation); Kaggle train = first 6/7 of train.txt, the last 1/7 halved the
same way. Vocabulary over all lines, ids by descending frequency from 1, rare (< --frequency_threshold)
and missing values -> 0; numerical ln(x + 3), missing or x <= -3 -> 0, float16; train rows shuffled once.
Three streaming passes (see dlrm/README.md "Data preparation"): count, encode, shuffle; memory is bounded
by --memory_limit plus the vocabularies, never by the number of lines. The dataset is written into a
temp dir next to --output and renamed when complete.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import cli
from common.logging import log_run
from common.output_dir import no_space_message
from dlrm.criteo_layout import dlrm_spec, find_input, plan_routes, write_spec
from dlrm.criteo_reader import (
    NUM_CATEGORICAL,
    NUM_INTEGER,
    BadLineError,
    PrepareDataError,
    Segment,
    plan_segments,
)
from dlrm.criteo_vocabulary import CountMerger, build_vocabulary, save_lookup
from dlrm.external_shuffle import assemble, bucket_counts, num_buckets, record_dtype
from dlrm.ordered_pool import OrderedPool
from dlrm.output_dir import check_output, make_temp, publish
from dlrm.prepare_passes import SPLITS, EncodeTask, Route, count_segment, encode_segment, train_rows

__all__ = ["PrepareDataError", "main"]
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_memory(text: str) -> int:
    """'8GB', '512M', '1.5GiB', '100000' -> bytes (K/M/G/T are powers of 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size like 8GB, 512MB or 1000000, got {text!r}")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def _ordered(
    runner: OrderedPool,
    fn: Callable,
    segments: list[Segment],
    tasks: Iterable,
    lines_before: Callable[[Segment], int],
) -> Iterator:
    """(segment, result) in order, a worker's BadLineError turned into a PrepareDataError naming the line.

    `lines_before(segment)`: lines of its file before it; results arrive in order, so the counts of all
    earlier segments are known when a segment fails (the error is always the first bad line of the file).
    """
    results = runner.map(fn, tasks)
    for segment in segments:
        try:
            yield segment, next(results)
        except BadLineError as err:
            line = lines_before(segment) + err.row + 1
            raise PrepareDataError(f"{segment.path} line {line}: {err.message}") from None


def _budget(memory: int, workers: int) -> tuple[int, int]:
    """(block, segment) bytes so that all workers' row-dependent memory stays within `memory`.

    Each worker gets memory / (2 * workers). Parsing a block costs 6-8x its bytes (pyarrow table +
    decoded arrays; measured 2026-11 with 8 and 24 MB blocks) plus the raw block and its carry-over
    copy: blocks are 1/12 of the share. A segment's packed train records (~0.4x its bytes) exist
    twice while sorted into buckets: segments are 1/3 of the share. The other half of the budget
    covers results in flight and the main process.
    """
    share = memory // (2 * workers)
    block = min(max(share // 12, 16 << 10), 32 << 20)
    return block, min(max(share // 3, block), 1 << 30)


def _step(name: str, start: float, detail: str = "") -> None:
    """One line per finished step: what it did, elapsed time, and the main process's peak RSS so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(
        f"dlrm.prepare_data: {name}{detail} [{time.perf_counter() - start:.1f} s, main peak RSS {peak:.2f} GiB]",
        file=sys.stderr,
    )


def _bar(total: int, desc: str, enabled: bool, unit: str = "B") -> tqdm:
    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=not enabled)


@dataclass
class _Layout:
    """What pass 1 learned: where each segment starts in its file, its line count, and the split routes."""

    segments: list[Segment]
    first_lines: list[int]
    segment_lines: list[int]
    routes: list[tuple[Route, ...]]
    rows: dict[str, int]


def _count_pass(
    runner: OrderedPool,
    segments: list[Segment],
    dataset_type: str,
    files: list[Path],
    block: int,
    progress: bool,
):
    """Pass 1: validate every line, count lines per file and every categorical value per feature."""
    merger, lines = CountMerger(NUM_CATEGORICAL), [0] * len(files)
    first_lines, segment_lines = [0] * len(segments), [0] * len(segments)
    count = functools.partial(count_segment, block_bytes=block)
    results = _ordered(runner, count, segments, segments, lambda seg: lines[seg.file_index])
    with _bar(sum(s.size for s in segments), "pass 1/3 count", progress) as bar:
        for segment, counts in results:
            first_lines[segment.index] = lines[segment.file_index]
            segment_lines[segment.index] = counts.lines
            lines[segment.file_index] += counts.lines
            for j, run in enumerate(counts.runs):
                merger.add(j, run)
            bar.update(segment.size)
    return merger, _Layout(segments, first_lines, segment_lines, *plan_routes(dataset_type, files, lines))


def _vocabulary(merger: CountMerger, threshold: int, tmp: Path) -> tuple[list[int], list[np.dtype], int]:
    """Build and save every feature's lookup (_work/vocab) and id -> raw value table (vocabulary/)."""
    (tmp / "_work" / "vocab").mkdir(parents=True)
    (tmp / "vocabulary").mkdir()
    cards, dtypes, distinct = [], [], 0
    for j in range(NUM_CATEGORICAL):
        run = merger.result(j)  # the merger lets go of it: raw counts are freed feature by feature
        distinct += len(run[0])
        keys, ids, by_id = build_vocabulary(run, threshold)
        save_lookup(tmp / "_work" / "vocab", j, keys, ids)
        np.save(tmp / "vocabulary" / f"cat_{j}.npy", by_id)
        cards.append(len(keys) + 1)
        dtypes.append(ids.dtype)
    return cards, dtypes, distinct


def _encode_pass(
    runner: OrderedPool,
    layout: _Layout,
    dtype: np.dtype,
    tmp: Path,
    block: int,
    seed: int,
    buckets: int,
    progress: bool,
) -> np.ndarray:
    """Pass 2: test/validation rows to their final files, train rows to the shuffle bucket files.

    Returns the train rows per bucket. Rows per (segment, bucket) follow from the stateless bucket hash
    alone, so every segment's offset in every bucket file is fixed before the pass and the workers
    pwrite without coordination.
    """
    for split in SPLITS:
        (tmp / split).mkdir()
    for split in ("test", "validation"):  # preallocated (sparse) so workers can pwrite at row offsets
        for name in dtype.names:
            with open(tmp / split / f"{name}.bin", "wb") as stream:
                stream.truncate(layout.rows[split] * dtype.fields[name][0].itemsize)
    (tmp / "_work" / "shuffle").mkdir()
    segments, first_lines = layout.segments, layout.first_lines
    ranges = [
        train_rows(first_lines[s.index], layout.segment_lines[s.index], layout.routes[s.file_index])
        for s in segments
    ]
    counts = np.stack(list(runner.map(functools.partial(bucket_counts, seed=seed, buckets=buckets), ranges)))
    offsets = np.cumsum(counts, axis=0) - counts
    names = tuple(dtype[f"cat_{j}"].name for j in range(NUM_CATEGORICAL))
    tasks = [
        EncodeTask(
            s,
            first_lines[s.index],
            layout.segment_lines[s.index],
            layout.routes[s.file_index],
            block,
            str(tmp / "_work"),
            str(tmp),
            names,
            offsets[s.index],
            seed,
        )
        for s in segments
    ]
    results = _ordered(runner, encode_segment, segments, tasks, lambda seg: first_lines[seg.index])
    with _bar(sum(s.size for s in segments), "pass 2/3 encode", progress) as bar:
        for segment, _ in results:
            bar.update(segment.size)
    return counts.sum(axis=0)


def _metadata(
    args: argparse.Namespace, dataset_type: str, files: list[Path], rows: dict, buckets: int
) -> dict:
    return {
        "dataset_type": dataset_type,
        "frequency_threshold": args.frequency_threshold,
        "rows": rows,
        "source_files": [str(f) for f in files],
        "seed": args.seed,
        "shuffle_buckets": buckets,
        "numerical_transform": "ln(x + 3); 0 for missing or x <= -3",
        "categorical_ids": "1..K by descending count over all splits, ties by ascending raw value; "
        "0 = missing or seen fewer than frequency_threshold times",
        "vocabulary": "vocabulary/cat_{j}.npy: uint32 raw value of id k at index k - 1",
    }


def _prepare(args: argparse.Namespace, dataset_type: str, files: list[Path], output: Path) -> dict:
    """The three passes into a temp dir beside `output`, then publish; returns the summary numbers."""
    start = time.perf_counter()
    tmp, runner = make_temp(output), None
    try:
        block, segment_bytes = _budget(args.memory_limit, args.workers)
        segments = plan_segments([str(f) for f in files], segment_bytes)
        runner = OrderedPool(args.workers)
        merger, layout = _count_pass(runner, segments, dataset_type, files, block, args.progress)
        rows = layout.rows
        _step(
            "pass 1/3 count",
            start,
            f": {sum(rows.values()):,} lines, {len(files)} file(s), {len(segments)} segments",
        )
        cards, cat_dtypes, distinct = _vocabulary(merger, args.frequency_threshold, tmp)
        del merger
        _step(
            "vocabulary", start, f": {distinct:,} distinct raw values, {sum(cards) - NUM_CATEGORICAL:,} kept"
        )

        dtype = record_dtype(cat_dtypes, NUM_INTEGER)
        buckets = num_buckets(rows["train"] * dtype.itemsize, args.memory_limit)
        per_bucket = _encode_pass(runner, layout, dtype, tmp, block, args.seed, buckets, args.progress)
        runner.close()
        runner = None
        _step("pass 2/3 encode", start, f": {rows['test']:,} test and {rows['validation']:,} validation rows")

        with _bar(rows["train"], "pass 3/3 shuffle", args.progress, unit=" rows") as bar:
            written = assemble(
                tmp / "_work" / "shuffle", per_bucket, dtype, args.seed, tmp / "train", bar.update
            )
        if written != rows["train"]:
            raise PrepareDataError(f"{output}: shuffled {written} train rows, expected {rows['train']}")
        _step("pass 3/3 shuffle", start, f": {written:,} train rows in {buckets} bucket(s)")

        shutil.rmtree(tmp / "_work")
        (tmp / "owner").unlink()
        write_spec(tmp, dlrm_spec(cards, cat_dtypes, _metadata(args, dataset_type, files, rows, buckets)))
        publish(tmp, output, args.overwrite)
    except BaseException:
        if runner is not None:
            runner.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    return {
        "rows": sum(rows.values()),
        **{f"{split}_rows": rows[split] for split in SPLITS},
        "seconds": seconds,
        "rows_per_s": sum(rows.values()) / seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
        "peak_worker_rss_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
        "buckets": buckets,
        "embedding_rows": sum(cards),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dlrm.prepare_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--input",
        type=Path,
        required=True,
        help="directory with day_0.. (Terabyte) or train.txt, or a Kaggle-format file",
    )
    add("--output", type=Path, required=True, help="dataset directory to create (published atomically)")
    add(
        "--dataset_type",
        choices=("auto", "terabyte", "kaggle"),
        default="auto",
        help="auto: terabyte if --input holds day_* files, else kaggle (default: auto)",
    )
    add(
        "--days",
        type=int,
        default=24,
        help="terabyte: use day_0 .. day_{N-1}; the last one is test/validation (default: 24)",
    )
    add(
        "--frequency_threshold",
        type=int,
        default=15,
        help="values seen fewer times map to id 0 (default: 15)",
    )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    add(
        "--workers",
        type=int,
        default=cpus,
        help=f"worker processes; output does not depend on it (default: CPUs here, {cpus})",
    )
    add(
        "--memory_limit",
        type=parse_memory,
        default="8GB",
        help="working memory of all processes together, beyond the vocabularies (K/M/G/T = powers of 1024); sets block, segment and shuffle-bucket sizes (default: 8GB)",
    )
    add("--seed", type=int, default=0, help="seed of the training-row shuffle (default: 0)")
    add("--overwrite", action="store_true", help="replace a non-empty --output directory (default: refuse)")
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tqdm progress bars on stderr (default: on)",
    )
    add("--log_path", type=Path, default=None, help="DLLogger JSON log of the run (default: None = none)")
    args = parser.parse_args(argv)
    if args.days < 2 or args.frequency_threshold < 0 or args.workers < 1 or args.memory_limit < 1:
        parser.error("need --days >= 2, --frequency_threshold >= 0, --workers >= 1 and --memory_limit > 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    output = args.output.absolute()
    try:
        check_output(output, args.overwrite, inputs=[args.input])  # --overwrite never deletes the input
        dataset_type, files = find_input(args.input.absolute(), args.dataset_type, args.days)
        summary = _prepare(args, dataset_type, files, output)
    except (PrepareDataError, OSError) as err:
        full = no_space_message(err, output) if isinstance(err, OSError) else None
        print(f"error: {full or err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"dlrm.prepare_data: {summary['rows']:,} rows (train {summary['train_rows']:,}, test "
        f"{summary['test_rows']:,}, validation {summary['validation_rows']:,}) in {summary['seconds']:.1f} s = "
        f"{summary['rows_per_s']:,.0f} rows/s; peak RSS main {summary['peak_rss_gib']:.2f} GiB"
        + (f", largest worker {summary['peak_worker_rss_gib']:.2f} GiB" if args.workers > 1 else "")
        + f"; {summary['embedding_rows']:,} embedding rows -> {output}",
        file=sys.stderr,
    )
    return log_run(args.log_path, args, summary)


if __name__ == "__main__":
    cli.run(main)
