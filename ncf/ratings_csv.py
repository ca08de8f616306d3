"""Fast, diagnosable parsing of delimited ratings files (shared by ncf.prepare_data and ncf.transcode).

The typed pyarrow parse runs at C speed; only when it fails does a vectorised pass find the FIRST bad line
(field count, or a value that is not an integer/number), so errors name the file and line.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from common.errors import InputError
from common.messages import shown
from common.output_dir import no_space_message


class PrepareDataError(InputError):
    """Bad input or output: one message naming the file (and line), printed by the CLI without a traceback."""


def released(err: Exception) -> Exception:
    """What ncf.prepare_data / ncf.transcode main raises for `err`, once outside its except block: the
    error without the tracebacks of the step that failed (its own and its chained errors'). Those frames
    hold the input's bytes and pyarrow buffers, which must not stay alive into interpreter shutdown (see
    _arrow_read). An OSError reading or writing a file becomes a PrepareDataError with its text; a full
    disk stays an OSError (the CLI names it and exits 1)."""
    if isinstance(err, OSError) and no_space_message(err, "") is None:
        return PrepareDataError(str(err))
    err.__cause__ = err.__context__ = None
    return err.with_traceback(None)


BOM = b"\xef\xbb\xbf"
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64()}
_PATTERNS = {  # what the slow path accepts; 18 digits always fit int64
    "int": (r"^\s*[+-]?\d{1,18}\s*$", "an integer"),
    "float": (r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$", "a number"),
}


def content_span(data: bytes) -> tuple[int, int]:
    """Content bounds without the UTF-8 BOM and trailing newlines (which would read as empty rows)."""
    start, end = (3 if data.startswith(BOM) else 0), len(data)
    while end > start and data[end - 1] in b"\r\n":
        end -= 1
    return start, end


def _arrow_read(
    buf: pa.Buffer, sep: str, columns: tuple[str, ...], types: dict, header: bool, threads: bool
) -> pa.Table:
    """Threads only for big inputs: a failed threaded read leaves tasks in flight, and exiting right after
    it can abort the process (apache/arrow#43604, #39862; seen here with torch imported, ~1 in 4 runs)."""
    read = pacsv.ReadOptions(
        column_names=list(columns), skip_rows=int(header), block_size=1 << 22, use_threads=threads
    )
    # No quoting (ratings files never quote) and no skipped blank lines, so row i is line i + 1 (+ header).
    parse = pacsv.ParseOptions(delimiter=sep, quote_char=False, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types=types, include_columns=list(types), null_values=[], strings_can_be_null=False
    )
    return pacsv.read_csv(pa.BufferReader(buf), read, parse, convert)


def parse_csv(
    data: bytes, source: str, columns: tuple[str, ...], kinds: dict, sep: str = ",", header: bool = False
) -> dict[str, np.ndarray]:
    """Parse the `kinds` columns ("int" -> int64, "float" -> float64) of a headerless-or-not delimited file.

    Fast path: typed, multi-threaded pyarrow parse. Only if it fails, a vectorised diagnosis finds the
    FIRST bad line (field count, or a value that is not an integer/number) and raises naming it.
    """
    sep_text = sep
    if len(sep) > 1:  # '::' (ratings.dat): a C-speed byte replace, not pandas' python engine (minutes)
        data, sep = data.replace(sep.encode(), b"\t"), "\t"
    start, end = content_span(data)
    if start == end:
        raise PrepareDataError(f"{source}: file is empty")
    if header and data.find(b"\n", start, end) < 0:
        raise PrepareDataError(f"{source}: only a header line, no data rows")
    buf = pa.py_buffer(data).slice(start, end - start)  # zero-copy
    types = {name: _ARROW_TYPES[kind] for name, kind in kinds.items()}
    try:
        table = _arrow_read(buf, sep, columns, types, header, threads=len(buf) > 1 << 24)
    except pa.ArrowInvalid:
        table = _diagnose(buf, source, sep, sep_text, columns, kinds, header)
    out = {}
    for name in kinds:  # one column at a time, so the table's copy is released as we go
        out[name] = table.column(name).to_numpy()
        table = table.drop_columns([name])
    return out


def _diagnose(
    buf: pa.Buffer, source: str, sep: str, sep_text: str, columns: tuple, kinds: dict, header: bool
) -> pa.Table:
    """Raise for the first bad line, or return the table if every value passes (e.g. padded with spaces)."""
    arr = np.frombuffer(buf, np.uint8)
    ends = np.append(np.flatnonzero(arr == 10), len(arr))
    starts = np.concatenate([[0], ends[:-1] + 1])
    delims = np.flatnonzero(arr == ord(sep))
    fields = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
    first = int(header)
    bad_width = np.flatnonzero(fields[first:] != len(columns)) + first
    limit = int(starts[bad_width[0]]) if bad_width.size else len(buf)  # values above it are checked first
    table, worst = None, None
    if limit > (starts[1] if header else 0):
        strings = dict.fromkeys(kinds, pa.string())
        try:
            table = _arrow_read(buf.slice(0, limit), sep, columns, strings, header, threads=False)
        except pa.ArrowInvalid as err:
            raise PrepareDataError(f"{source}: cannot parse: {str(err)[:300]}") from None
        for name, kind in kinds.items():
            ok = pc.match_substring_regex(table.column(name), _PATTERNS[kind][0]).to_numpy(
                zero_copy_only=False
            )
            if not ok.all() and (worst is None or np.argmin(ok) < worst[0]):
                worst = (int(np.argmin(ok)), name, kind)
    if worst is not None:
        row, name, kind = worst
        value = table.column(name)[row].as_py()
        raise PrepareDataError(
            f"{source} line {row + 1 + first}: {name} {shown(value)} is not {_PATTERNS[kind][1]}"
        )
    if bad_width.size:
        line = int(bad_width[0])
        text = bytes(buf.slice(int(starts[line]), int(ends[line] - starts[line]))).decode(errors="replace")
        text = text.rstrip("\r").replace(sep, sep_text)
        raise PrepareDataError(
            f"{source} line {line + 1}: expected {len(columns)} fields ({','.join(columns)}) separated by "
            f"{sep_text!r}, found {fields[line]}: {shown(text)}"
        )
    try:  # every value is well formed (pyarrow refused e.g. padding spaces): convert the strings
        trimmed = {name: pc.utf8_trim_whitespace(table.column(name)) for name in kinds}
        return pa.table({name: pc.cast(trimmed[name], _ARROW_TYPES[kind]) for name, kind in kinds.items()})
    except pa.ArrowInvalid as err:
        raise PrepareDataError(f"{source}: cannot parse: {str(err)[:300]}") from None
