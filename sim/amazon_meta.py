"""Read asin -> category from an Amazon 2014 metadata file (one Python dict literal per line).

The lines are Python literals (single quotes), not JSON, so each one goes through `ast.literal_eval`
(never `eval`), as in the reference. That costs ~10 MB/s per core (measured 2025-11 on the real
Digital_Music sample: ~150 us per 1.5 KB line), so blocks of lines are parsed by a process pool
(`n_proc`, spawn) while this process keeps only asin + category. The category is the last element of the
first category path (`categories[0][-1]`); a line without categories gives None (-> "no_category").
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from common.messages import shown
from common.workers import spawn_pool
from sim.raw_input import CountedInput, PrepareDataError, iter_blocks, named_read_errors

BLOCK_BYTES = 4 << 20  # ~3k lines: large enough to amortise inter-process transfer, small enough to stream


@dataclass
class Metadata:
    """One entry per metadata line: asin, category (null when the line has none), 1-based line number."""

    asin: pa.Array
    category: pa.Array
    line: np.ndarray
    path: Path


def parse_meta_block(
    first_line: int, block: bytes
) -> tuple[list[str], list[str | None], list[int], str | None]:
    """(asins, categories, line numbers, error) of a block of whole lines; error = message of the first bad
    line ("line N: ..."), after which the block is abandoned. Module-level: runs in pool workers."""
    asins: list[str] = []
    cats: list[str | None] = []
    lines: list[int] = []
    for offset, raw in enumerate(block.split(b"\n")):
        try:
            text, mangled = raw.decode("utf-8").strip(), False
        except UnicodeDecodeError:  # invalid bytes in a title are harmless; in the asin/category they are not
            text, mangled = raw.decode("utf-8", errors="replace").strip(), True
        if not text:
            continue
        line = first_line + offset
        try:
            record = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
            reason = err.msg if isinstance(err, SyntaxError) else str(err)
            return asins, cats, lines, f"line {line}: not a Python dict literal ({reason}): {_snippet(text)}"
        if not isinstance(record, dict):
            return asins, cats, lines, f"line {line}: expected a dict literal, got a {type(record).__name__}"
        asin = record.get("asin")
        if not isinstance(asin, str):
            what = "missing" if asin is None else f"not a string ({shown(asin)})"
            return asins, cats, lines, f"line {line}: field 'asin' is {what}: {_snippet(text)}"
        category, problem = _first_path_leaf(record.get("categories"))
        if problem:
            return asins, cats, lines, f"line {line}: asin {_name(asin)}: {problem}"
        if mangled and "\ufffd" in asin + (category or ""):  # would silently become another item/category
            problem = (
                f"the {'asin' if chr(0xFFFD) in asin else 'category'} holds bytes that are not valid UTF-8"
            )
            return asins, cats, lines, f"line {line}: {problem}: {_snippet(text)}"
        asins.append(asin)
        cats.append(category)
        lines.append(line)
    return asins, cats, lines, None


def _first_path_leaf(categories: object) -> tuple[str | None, str | None]:
    """(categories[0][-1] or None when absent/empty, error message or None)."""
    if categories is None:
        return None, None
    expected = f"'categories' must be a list of category paths (lists of strings), got {str(categories)[:60]}"
    if not isinstance(categories, list | tuple):
        return None, expected
    if not categories:
        return None, None
    first = categories[0]
    if not isinstance(first, list | tuple) or not all(isinstance(c, str) for c in first):
        return None, expected
    return (first[-1] if first else None), None


def read_metadata(path: Path, *, n_proc: int = 1, progress: bool = True) -> Metadata:
    """Parse every non-blank line (in a pool when n_proc > 1); PrepareDataError naming the first bad line
    or a repeated asin (the reference asserts metadata items are unique)."""
    if path.stat().st_size == 0:
        raise PrepareDataError(f"{path}: file is empty (line 1): expected one dict literal per line")
    asins, cats, lines = [], [], []
    with (
        named_read_errors(path, "metadata"),
        CountedInput(path) as counted,
        tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc="metadata", disable=not progress
        ) as bar,
    ):
        for block_asins, block_cats, block_lines, error in _parsed_blocks(counted, n_proc):
            if error:
                raise PrepareDataError(f"{path} {error}")
            asins.append(pa.array(block_asins, pa.string()))
            cats.append(pa.array(block_cats, pa.string()))
            lines.append(np.asarray(block_lines, np.int64))
            bar.update(counted.advance())
    line = np.concatenate(lines) if lines else np.empty(0, np.int64)
    if len(line) == 0:
        raise PrepareDataError(f"{path}: no metadata in the file (line 1): it is blank")
    meta = Metadata(pa.concat_arrays(asins), pa.concat_arrays(cats), line, path)
    _check_unique(meta)
    return meta


def _parsed_blocks(counted: CountedInput, n_proc: int) -> Iterator[tuple]:
    """Blocks parsed in file order; at most 2 * n_proc blocks in flight, so memory stays bounded."""
    blocks = iter_blocks(counted, BLOCK_BYTES)
    if n_proc <= 1:
        for first_line, block in blocks:
            yield parse_meta_block(first_line, block)
        return
    with spawn_pool(n_proc) as pool:  # workers end with this process, even when it is killed
        pending: deque[Future] = deque()
        for first_line, block in blocks:
            pending.append(pool.submit(parse_meta_block, first_line, block))
            if len(pending) >= 2 * n_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _check_unique(meta: Metadata) -> None:
    encoded = pc.dictionary_encode(meta.asin)
    codes = encoded.indices.to_numpy()
    if len(encoded.dictionary) == len(codes):
        return
    # a row repeats when an earlier row has its code (a stable sort keeps file order within a code)
    order = np.argsort(codes, kind="stable")
    repeat = int(order[1:][codes[order[1:]] == codes[order[:-1]]].min())
    earlier = int(np.flatnonzero(codes == codes[repeat])[0])
    asin = _name(meta.asin[repeat].as_py())
    raise PrepareDataError(
        f"{meta.path} line {meta.line[repeat]}: asin {asin} was already described on "
        f"line {meta.line[earlier]}; metadata items must be unique (as the reference asserts)"
    )


def _name(asin: str) -> str:
    """The asin as it is, or cut (common.messages.shown) when it is too long to echo."""
    return asin if len(asin) <= 200 else shown(asin)


def _snippet(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
