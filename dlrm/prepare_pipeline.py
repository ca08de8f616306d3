"""dlrm.prepare_data's three passes as the main process runs them: plan segments, count (pass 1), build
the vocabularies, encode (pass 2), shuffle (pass 3), all inside a temp dir beside --output that is published
(renamed) only when complete. The per-segment work the worker processes do is in dlrm.prepare_passes.
"""

from __future__ import annotations

import functools
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from dlrm.criteo_layout import dlrm_spec, plan_routes, write_spec
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
from dlrm.output_dir import make_temp, publish
from dlrm.prepare_passes import SPLITS, EncodeTask, Route, count_segment, encode_segment, train_rows

if TYPE_CHECKING:
    from dlrm.prepare_data import PrepareConfig


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
    runner: OrderedPool, layout: _Layout, dtype: np.dtype, tmp: Path, block: int, cfg: PrepareConfig
) -> np.ndarray:
    """Pass 2: test/validation rows to their final files, train rows to the shuffle bucket files (as many
    as --memory_limit needs to sort one in memory).

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
    seed, buckets = cfg.seed, num_buckets(layout.rows["train"] * dtype.itemsize, cfg.memory_bytes)
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
    with _bar(sum(s.size for s in segments), "pass 2/3 encode", cfg.progress) as bar:
        for segment, _ in results:
            bar.update(segment.size)
    return counts.sum(axis=0)


def _metadata(cfg: PrepareConfig, dataset_type: str, files: list[Path], rows: dict, buckets: int) -> dict:
    return {
        "dataset_type": dataset_type,
        "frequency_threshold": cfg.frequency_threshold,
        "rows": rows,
        "source_files": [str(f) for f in files],
        "seed": cfg.seed,
        "shuffle_buckets": buckets,
        "numerical_transform": "ln(x + 3); 0 for missing or x <= -3",
        "categorical_ids": "1..K by descending count over all splits, ties by ascending raw value; "
        "0 = missing or seen fewer than frequency_threshold times",
        "vocabulary": "vocabulary/cat_{j}.npy: uint32 raw value of id k at index k - 1",
    }


def prepare(cfg: PrepareConfig, dataset_type: str, files: list[Path], output: Path) -> dict:
    """The three passes into a temp dir beside `output`, then publish; returns the summary numbers."""
    start = time.perf_counter()
    tmp, runner = make_temp(output), None
    try:
        block, segment_bytes = _budget(cfg.memory_bytes, cfg.workers)
        segments = plan_segments([str(f) for f in files], segment_bytes)
        runner = OrderedPool(cfg.workers)
        merger, layout = _count_pass(runner, segments, dataset_type, files, block, cfg.progress)
        rows = layout.rows
        _step(
            "pass 1/3 count",
            start,
            f": {sum(rows.values()):,} lines, {len(files)} file(s), {len(segments)} segments",
        )
        cards, cat_dtypes, distinct = _vocabulary(merger, cfg.frequency_threshold, tmp)
        del merger
        _step(
            "vocabulary", start, f": {distinct:,} distinct raw values, {sum(cards) - NUM_CATEGORICAL:,} kept"
        )

        dtype = record_dtype(cat_dtypes, NUM_INTEGER)
        per_bucket = _encode_pass(runner, layout, dtype, tmp, block, cfg)
        buckets = len(per_bucket)
        runner.close()
        runner = None
        _step("pass 2/3 encode", start, f": {rows['test']:,} test and {rows['validation']:,} validation rows")

        with _bar(rows["train"], "pass 3/3 shuffle", cfg.progress, unit=" rows") as bar:
            written = assemble(
                tmp / "_work" / "shuffle", per_bucket, dtype, cfg.seed, tmp / "train", bar.update
            )
        if written != rows["train"]:
            raise PrepareDataError(f"{output}: shuffled {written} train rows, expected {rows['train']}")
        _step("pass 3/3 shuffle", start, f": {written:,} train rows in {buckets} bucket(s)")

        shutil.rmtree(tmp / "_work")
        (tmp / "owner").unlink()
        write_spec(tmp, dlrm_spec(cards, cat_dtypes, _metadata(cfg, dataset_type, files, rows, buckets)))
        publish(tmp, output, cfg.overwrite)
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
