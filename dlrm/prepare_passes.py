"""The two streaming passes of dlrm.prepare_data, one segment (byte range of a file) per call.

Both run in worker processes (module-level functions, picklable arguments, small results):
  pass 1 `count_segment`: parse and validate every line, count each categorical value -> sorted runs;
  pass 2 `encode_segment`: parse again, map values to ids, ln(x+3) the integers, then write test /
    validation rows straight to their final place and train rows to the shuffle bucket files, both with
    pwrite at row offsets known before the pass (from pass 1's line counts and the bucket hash), so
    order is kept and the output is the same for any number of workers, without any merge step.
Memory per call is bounded by the segment size, never by the file or dataset size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrm.criteo_reader import (
    NUM_CATEGORICAL,
    BadLineError,
    PrepareDataError,
    RawBlock,
    Segment,
    iter_blocks,
    parse_block,
)
from dlrm.criteo_vocabulary import Run, count_values, load_lookups, log_transform, lookup
from dlrm.external_shuffle import pwrite_all, record_dtype, write_buckets

SPLITS = ("train", "test", "validation")


def _blocks(segment: Segment, block_bytes: int):
    """(first row of the block in the segment, parsed block); errors carry the row in the segment."""
    row = 0
    for data in iter_blocks(segment, block_bytes):
        try:
            block = parse_block(data)
        except BadLineError as err:
            raise BadLineError(row + err.row, err.message) from None
        yield row, block
        row += len(block)


@dataclass
class SegmentCounts:
    lines: int
    runs: list[Run]  # per categorical feature


def count_segment(segment: Segment, block_bytes: int) -> SegmentCounts:
    """Pass 1: line count and per-feature value counts (missing values are not counted)."""
    values: list[list[np.ndarray]] = [[] for _ in range(NUM_CATEGORICAL)]
    lines = 0
    for _, block in _blocks(segment, block_bytes):
        for j in range(NUM_CATEGORICAL):
            values[j].append(block.categorical[j][block.present[j]])
        lines += len(block)
    return SegmentCounts(lines, [count_values(pieces) for pieces in values])


@dataclass(frozen=True)
class Route:
    """Lines [lo, hi) of a file are rows [offset, offset + hi - lo) of `split` (unshuffled train order)."""

    split: str
    lo: int
    hi: int
    offset: int


@dataclass(frozen=True)
class EncodeTask:
    segment: Segment
    first_line: int  # line number (0-based) of the segment's first line in its file
    lines: int  # as counted by pass 1: a file that changed since would be written to the wrong rows
    routes: tuple[Route, ...]  # of the segment's file
    block_bytes: int
    work_dir: str  # vocab/ (lookups) and shuffle/ (bucket files)
    out_dir: str  # the dataset being written: {train,test,validation}/*.bin
    cat_dtypes: tuple[str, ...]
    bucket_offsets: np.ndarray  # int64 [K]: where this segment's train rows start in each bucket file
    seed: int


def train_rows(first_line: int, lines: int, routes: tuple[Route, ...]) -> tuple[int, int]:
    """(first train row, count) of the file lines [first_line, first_line + lines): one contiguous range."""
    for route in routes:
        lo, hi = max(route.lo, first_line), min(route.hi, first_line + lines)
        if route.split == "train" and lo < hi:
            return route.offset + lo - route.lo, hi - lo
    return 0, 0


def _encode(block: RawBlock, lookups: list, dtype: np.dtype) -> np.ndarray:
    """Final values of a block as packed records (the train layout; test/validation write its fields)."""
    records = np.empty(len(block), dtype)
    records["label"] = block.label
    records["numerical"] = log_transform(block.integers)
    for j, (keys, ids) in enumerate(lookups):
        records[f"cat_{j}"] = lookup(block.categorical[j], block.present[j], keys, ids)
    return records


def _pwrite(fds: dict[str, int], records: np.ndarray, row: int) -> None:
    """Write records' fields at row offset `row` of the split's files (several workers write one file)."""
    for name, fd in fds.items():
        column = np.ascontiguousarray(records[name])
        pwrite_all(fd, column.reshape(-1).view(np.uint8), row * (column.nbytes // len(column)))


def encode_segment(task: EncodeTask) -> int:
    """Pass 2 for one segment; returns the number of rows it encoded."""
    dtype = record_dtype(task.cat_dtypes)
    lookups = load_lookups(Path(task.work_dir, "vocab"), NUM_CATEGORICAL)
    fds: dict[str, dict[str, int]] = {}
    train: list[np.ndarray] = []
    train_first, encoded = None, 0
    try:
        for row, block in _blocks(task.segment, task.block_bytes):
            records = _encode(block, lookups, dtype)
            encoded += len(records)
            line = task.first_line + row
            for route in task.routes:
                lo, hi = max(route.lo, line), min(route.hi, line + len(block))
                if lo >= hi:
                    continue
                part, split_row = records[lo - line : hi - line], route.offset + lo - route.lo
                if route.split == "train":
                    train_first = split_row if train_first is None else train_first
                    train.append(part)
                else:
                    if route.split not in fds:
                        fds[route.split] = {
                            name: os.open(Path(task.out_dir, route.split, f"{name}.bin"), os.O_WRONLY)
                            for name in dtype.names
                        }
                    _pwrite(fds[route.split], part, split_row)
    finally:
        for split_fds in fds.values():
            for fd in split_fds.values():
                os.close(fd)
    if encoded != task.lines:
        raise PrepareDataError(
            f"{task.segment.path}: changed while being prepared (bytes {task.segment.start}.."
            f"{task.segment.end} held {task.lines} lines in pass 1, {encoded} now)"
        )
    if train:
        records = np.concatenate(train)
        write_buckets(Path(task.work_dir, "shuffle"), records, train_first, task.seed, task.bucket_offsets)
    return encoded
