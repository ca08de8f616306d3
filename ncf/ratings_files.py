"""Finding and reading a ratings file for ncf.prepare_data: MovieLens layouts (ratings.dat, ratings.csv,
u.data) or a generic user,item,timestamp CSV, given as a file, a directory, a .zip or a .gz (read in
memory, never extracted)."""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
