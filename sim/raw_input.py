"""Locating and opening the raw Amazon 2014 files: plain or gzipped, with progress on the bytes read.

The SNAP files come as `reviews_Books.json.gz` / `meta_Books.json.gz`; the reference gunzips them first
and reads `reviews_Books.json`. We accept both: gzip is detected from the content (magic bytes), not the
name, and a name that is absent is retried with `.gz` added (or removed).
"""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from common.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


class PrepareDataError(InputError):
    """Bad input or output: one message naming the file (and line); common.cli.run prints it as one line."""


def resolve_input(directory: Path, name: str, what: str) -> Path:
    """`directory/name` (as the reference joins them), else the same name with `.gz` added or removed."""
    first = directory / name
    other = first.with_name(name[: -len(".gz")]) if name.endswith(".gz") else first.with_name(name + ".gz")
    for path in (first, other):
        if path.is_file():
            return path
    if not directory.is_dir():
        raise PrepareDataError(f"{directory}: --amazon_dataset_path is not a directory")
    raise PrepareDataError(f"{first}: {what} file not found (also tried {other.name})")


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


@contextmanager
def named_read_errors(path: Path, what: str) -> Iterator[None]:
    """A failed read of `path` (a truncated or corrupt .gz, an I/O error) becomes one PrepareDataError
    naming the file, instead of pyarrow's bare "Truncated compressed stream"."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):  # not a read error: staging reports it with the output
            raise
        hint = "; the gzip file is truncated or corrupt: download it again" if is_gzip(path) else ""
        raise PrepareDataError(
            f"{path}: reading the {what} failed ({str(err).strip()[:200]}){hint}"
        ) from None


class CountedInput:
    """A pyarrow input stream over `path` (gunzipping if needed) that knows how far into the file it is.

    Progress is the position in the file on disk, so the bar of a .gz file ends at its compressed size.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw = path.open("rb")
        gzipped = self._raw.read(2) == _GZIP_MAGIC
        self._raw.seek(0)
        source = pa.PythonFile(self._raw, mode="r")
        self.stream: pa.NativeFile = pa.CompressedInputStream(source, "gzip") if gzipped else source
        self._reported = 0

    def advance(self) -> int:
        """Bytes read from disk since the last call (for tqdm.update)."""
        position = self._raw.tell() if not self._raw.closed else self._reported
        step, self._reported = position - self._reported, position
        return step

    def close(self) -> None:
        self.stream.close()
        self._raw.close()

    def __enter__(self) -> CountedInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_lines(path: Path) -> Iterator[bytes]:
    """Every line (with its newline), gunzipping if needed: the slow, exact path used to locate errors."""
    with CountedInput(path) as counted:
        yield from io.BufferedReader(_NativeRaw(counted.stream), buffer_size=1 << 20)


def iter_blocks(counted: CountedInput, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(1-based number of its first line, block of whole lines) until the end; the last may lack a newline."""
    line, rest = 1, b""
    while True:
        data = counted.stream.read(block_bytes)
        if not data:
            if rest:
                yield line, rest
            return
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one line longer than a block: keep reading
            rest = data
            continue
        block, rest = data[:cut], data[cut:]
        yield line, block
        line += block.count(b"\n")


class _NativeRaw(io.RawIOBase):
    """io adapter so io.BufferedReader can split a pyarrow stream into lines."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
