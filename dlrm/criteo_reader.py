"""Raw Criteo click logs -> numpy, one block of lines at a time, with exact error lines.

A line is ``label \\t I1..I13 \\t C1..C26`` (40 tab-separated fields): label 0/1, 13 decimal
integers, 26 categoricals of 8 hex digits (32-bit hashes); an empty field is a missing value. Files are
cut into byte-range `Segment`s at line boundaries (the unit of parallel work) and each segment is read in
blocks parsed by pyarrow's C++ CSV reader; hex decoding and validation are vectorised numpy. Errors are
raised as `BadLineError` with the row number inside the segment, because only the caller knows how many
lines precede the segment in its file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from common.errors import InputError
from common.messages import shown

NUM_INTEGER, NUM_CATEGORICAL = 13, 26
INTEGER_COLUMNS = tuple(f"I{i}" for i in range(1, NUM_INTEGER + 1))
CATEGORICAL_COLUMNS = tuple(f"C{i}" for i in range(1, NUM_CATEGORICAL + 1))
COLUMNS = ("label", *INTEGER_COLUMNS, *CATEGORICAL_COLUMNS)

_TYPES = {"label": pa.int8(), **dict.fromkeys(INTEGER_COLUMNS, pa.int64())}
_TYPES |= dict.fromkeys(CATEGORICAL_COLUMNS, pa.binary())  # binary: no UTF-8 validation, faster
# Typed columns, not dictionary<binary> (which would let conversion and lookups run once per distinct
# value): the dictionary build cost more than it saved over both passes, 6.6 vs 6.0 us of CPU per line
# (2026-11, 21 MB blocks of benchmark_prepare's synthetic days).
# No quoting in Criteo logs; an empty line must stay a row (pyarrow then gives it a null label).
_PARSE = pacsv.ParseOptions(
    delimiter="\t", quote_char=False, double_quote=False, escape_char=False, ignore_empty_lines=False
)
# Empty integer/label fields -> null; empty categoricals stay b"" (length 0 marks "missing").
_CONVERT = pacsv.ConvertOptions(column_types=_TYPES, null_values=[""], strings_can_be_null=False)
_HEX = np.full(256, 255, np.uint8)  # ASCII -> nibble, 255 = not a hex digit
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_PATTERNS = {  # what a valid field looks like; only used to find the bad line after a block was refused
    "label": (r"^[01]$", "0 or 1"),
    "integer": (r"^\s*-?[0-9]{1,18}\s*$|^$", "a decimal integer or empty"),
    "categorical": (r"^([0-9a-fA-F]{8})?$", "8 hex digits or empty"),
}


class PrepareDataError(InputError):
    """Bad input or output: one message naming the file (and line), printed by main without a traceback."""


class BadLineError(Exception):
    """A bad line, numbered from 0 within the segment being read; the caller turns it into a file line."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(row, message)  # both in args, so it pickles across worker processes
        self.row, self.message = row, message


def describe(column: str) -> str:
    """'I3 (num_2)' / 'C5 (cat_4)': the raw Criteo column name and the output feature it becomes."""
    if column in INTEGER_COLUMNS:
        return f"integer feature {column} (num_{INTEGER_COLUMNS.index(column)})"
    if column in CATEGORICAL_COLUMNS:
        return f"categorical feature {column} (cat_{CATEGORICAL_COLUMNS.index(column)})"
    return column


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of one file, starting and ending at line boundaries: one task for a worker."""

    index: int  # position in the run's segment list (segments are ordered by file, then offset)
    file_index: int
    path: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def _line_start_at_or_after(stream, pos: int, size: int) -> int:
    """Offset of the first line that starts at or after `pos` (`size` if none)."""
    stream.seek(pos - 1)
    offset = pos - 1
    while chunk := stream.read(1 << 20):
        newline = chunk.find(b"\n")
        if newline >= 0:
            return offset + newline + 1
        offset += len(chunk)
    return size


def plan_segments(paths: list[str], target_bytes: int) -> list[Segment]:
    """Cut every file into segments of about `target_bytes` at line boundaries (a long line just goes whole)."""
    segments: list[Segment] = []
    for file_index, path in enumerate(paths):
        size = os.path.getsize(path)
        bounds = [0]
        with open(path, "rb") as stream:
            while bounds[-1] + target_bytes < size:
                cut = _line_start_at_or_after(stream, bounds[-1] + target_bytes, size)
                if cut >= size:
                    break
                bounds.append(cut)
        bounds.append(size)
        for start, end in zip(bounds[:-1], bounds[1:]):
            segments.append(Segment(len(segments), file_index, path, start, end))
    return segments


def iter_blocks(segment: Segment, block_bytes: int) -> Iterator[memoryview]:
    """Whole lines of the segment, about `block_bytes` at a time (the last one may lack its newline)."""
    with open(segment.path, "rb") as stream:
        stream.seek(segment.start)
        remaining, carry = segment.size, b""
        while remaining > 0:
            chunk = stream.read(min(block_bytes, remaining))
            if not chunk:
                raise PrepareDataError(f"{segment.path}: file got shorter while being read")
            remaining -= len(chunk)
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1 if remaining > 0 else len(data)
            if cut:  # cut == 0: one line longer than a block; keep reading until it ends
                yield memoryview(data)[:cut]
            carry = data[cut:]


@dataclass
class RawBlock:
    """One parsed block, in file order (n rows).

    label: bool [n]; integers: float64 [n, 13] with NaN for missing (exact up to 2**53; these values are
    only log-transformed); categorical: uint32 [26, n] raw hashes (feature-major, as every consumer works
    per feature); present: bool [26, n], False where the categorical field was empty.
    """

    label: np.ndarray
    integers: np.ndarray
    categorical: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


def _read(data: memoryview | bytes, convert: pacsv.ConvertOptions) -> pa.Table:
    read = pacsv.ReadOptions(column_names=list(COLUMNS), use_threads=False, block_size=1 << 26)
    return pacsv.read_csv(pa.BufferReader(pa.py_buffer(data)), read, _PARSE, convert)


def parse_block(data: memoryview | bytes) -> RawBlock:
    """Parse and validate whole lines; raise BadLineError (row within this block) on the first bad one.

    The fast path is pyarrow's typed parse plus vectorised checks; only a block that fails them is
    re-scanned (`_diagnose`) to name its first bad line.
    """
    try:
        table = _read(data, _CONVERT)
    except pa.ArrowInvalid as err:  # a wrong field count, or an integer pyarrow cannot parse
        _diagnose(data, err)
    n = table.num_rows
    label = table.column("label").to_numpy(zero_copy_only=False)  # int8; float64 with NaN if any empty
    if label.dtype != np.int8 or (label.view(np.uint8) > 1).any():
        _diagnose(data, None)  # an empty label (or an empty line), or a label other than 0/1
    integers = np.empty((n, NUM_INTEGER), np.float64)
    for j, name in enumerate(INTEGER_COLUMNS):
        integers[:, j] = table.column(name).to_numpy(zero_copy_only=False)
    categorical = np.zeros((NUM_CATEGORICAL, n), np.uint32)
    present = np.zeros((NUM_CATEGORICAL, n), bool)
    for j, name in enumerate(CATEGORICAL_COLUMNS):
        if not _decode_hex(table.column(name).combine_chunks(), categorical[j], present[j]):
            _diagnose(data, None)
    return RawBlock(label.astype(bool), integers, categorical, present)


def _decode_hex(column: pa.BinaryArray, out: np.ndarray, present: np.ndarray) -> bool:
    """8 hex digits -> uint32 into `out`, vectorised; False if any field is neither 8 hex digits nor empty."""
    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, len(column) + 1, column.offset * 4)
    lengths = np.diff(offsets)
    present[:] = lengths == 8
    if not (present | (lengths == 0)).all():
        return False
    if data_buffer is None or offsets[-1] == offsets[0]:
        return True
    # Present fields are exactly 8 bytes and empty ones 0, so the data buffer is an [m, 8] matrix.
    digits = np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 8)
    nibbles = _HEX[digits]
    if nibbles.max() > 15:
        return False
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # [m, 4] bytes, most significant first
    out[present] = np.ascontiguousarray(packed).view(">u4").ravel()
    return True


def _line_bounds(data: memoryview | bytes) -> tuple[np.ndarray, np.ndarray]:
    array = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(array == 10)
    if not ends.size or ends[-1] != len(array) - 1:
        ends = np.append(ends, len(array))  # a last line without its newline
    return np.concatenate([[0], ends[:-1] + 1]), ends


def _diagnose(data: memoryview | bytes, error: Exception | None) -> NoReturn:
    """Find the FIRST bad line of a block and raise BadLineError for it (the slow path: errors only).

    Field counts come from the tab positions; the lines above the first miscounted one are re-read as
    raw bytes and every field is matched against what a valid one looks like (vectorised regexes).
    """
    starts, ends = _line_bounds(data)
    tabs = np.flatnonzero(np.frombuffer(data, np.uint8) == 9)
    fields = np.searchsorted(tabs, ends) - np.searchsorted(tabs, starts) + 1
    fields[starts == ends] = 0  # an empty line has no field at all
    wrong = np.flatnonzero(fields != len(COLUMNS))
    limit = int(wrong[0]) if wrong.size else len(ends)
    worst: tuple[int, str, str] | None = None
    if limit:
        as_bytes = pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.binary()))
        raw = _read(memoryview(data)[: int(ends[limit - 1])], as_bytes)
        for name in COLUMNS:
            kind = "label" if name == "label" else "integer" if name in INTEGER_COLUMNS else "categorical"
            ok = pc.match_substring_regex(raw.column(name), _PATTERNS[kind][0]).to_numpy(zero_copy_only=False)
            if not ok.all() and (worst is None or int(np.argmin(ok)) < worst[0]):
                worst = (int(np.argmin(ok)), name, kind)
    if worst is not None:
        row, name, kind = worst
        value = raw.column(name)[row].as_py().decode(errors="replace")
        raise BadLineError(row, f"{describe(name)} is {shown(value)}, expected {_PATTERNS[kind][1]}")
    if wrong.size:
        row = int(wrong[0])
        text = bytes(data[int(starts[row]) : int(ends[row])]).decode(errors="replace").rstrip("\r")
        found = "an empty line" if not text else f"{fields[row]} fields: {text[:80]!r}"
        raise BadLineError(
            row, f"expected {len(COLUMNS)} tab-separated fields (label, I1-I13, C1-C26), found {found}"
        )
    raise BadLineError(0, f"cannot parse the block starting here: {error}")
