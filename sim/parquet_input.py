"""Reading a SIM split's Parquet chunks into the row table, one row group at a time (bounded extra memory),
only the row groups that overlap this rank's shard, with errors naming the file, row group and column."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from common.feature_spec import FeatureSpec, FeatureSpecError
from common.messages import shown

if TYPE_CHECKING:
    from sim.data import RowWriter


def parquet_file(spec: FeatureSpec, key: str, path: Path):
    import pyarrow.parquet as pq  # lazy: slow to import

    try:  # page CRCs (sim.prepare_data writes them) are verified: flipped bytes fail instead of loading
        return pq.ParquetFile(path, page_checksum_verification=True)
    except Exception as err:  # pyarrow raises several types; all mean "not a readable parquet file"
        raise FeatureSpecError(f"{spec.yaml_path}: {key}: cannot read {path} as parquet: {err}") from None


def read_parquet_chunk(
    spec: FeatureSpec, key: str, chunk: dict, writer: RowWriter, total: int, show: bool
) -> None:
    """Stream the row groups of one chunk that overlap [writer.start, writer.stop)."""
    wanted = [name for name in chunk["features"] if name in writer.columns]
    files = [parquet_file(spec, f"{key}.files[{i}]", p) for i, p in enumerate(spec.chunk_paths(chunk))]
    groups = [(i, g) for i, pf in enumerate(files) for g in range(pf.num_row_groups)]
    cursor = 0
    for i, g in tqdm(groups, desc=f"read {key}", disable=not show or not wanted, leave=False):
        pf, where = files[i], f"{spec.yaml_path}: {key}.files[{i}] ({spec.chunk_paths(chunk)[i]})"
        lo = cursor
        cursor += pf.metadata.row_group(g).num_rows
        a, b = max(lo, writer.start), min(cursor, writer.stop)
        if not wanted or a >= b:
            continue
        missing = [n for n in wanted if n not in pf.schema_arrow.names]
        if missing:
            raise FeatureSpecError(f"{where}: has no column(s) {missing}")
        part = _read_row_group(pf, g, wanted, where).slice(a - lo, b - a)
        for name in wanted:
            values = _column_values(part.column(name), spec.feature_spec[name].get("dimensions"), name, where)
            writer.put(name, values, a - writer.start, where)
    if cursor != total:
        raise FeatureSpecError(f"{spec.yaml_path}: {key} holds {cursor} rows, but the split's first chunk "
                               f"holds {total}; the chunks of a mapping must align row by row")  # fmt: skip


def _read_row_group(pf, group: int, columns: list[str], where: str):
    """One row group; a corrupt page (bad CRC, undecodable compression or encoding) is named by file and
    row group instead of surfacing as a bare pyarrow error."""
    import pyarrow as pa

    try:
        return pf.read_row_group(group, columns=columns)
    except (OSError, pa.ArrowException) as err:
        raise FeatureSpecError(
            f"{where}: row group {group} of {pf.metadata.num_row_groups} is corrupt or unreadable "
            f"({shown(str(err).strip())}); prepare or copy the file again"
        ) from None


def _column_values(column, dims: list[int] | None, name: str, where: str) -> np.ndarray:
    """A pyarrow column -> [n] or [n, T] numpy integers, with clear errors for nulls and bad lengths."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise FeatureSpecError(f"{where}: column '{name}' has {column.null_count} null values")
    sequence = dims not in (None, [1])
    is_list = pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
    if sequence != (is_list or pa.types.is_fixed_size_list(column.type)):
        want = f"a list column of length {dims[0]}" if sequence else "a scalar column"
        raise FeatureSpecError(f"{where}: column '{name}' is {column.type}, expected {want}")
    if not sequence:
        values = column.to_numpy()
    else:
        lengths = pc.list_value_length(column)
        if pc.min(lengths).as_py() != dims[0] or pc.max(lengths).as_py() != dims[0]:
            raise FeatureSpecError(f"{where}: lists in column '{name}' must all have length {dims[0]}")
        flat = pc.list_flatten(column)
        if flat.null_count:
            raise FeatureSpecError(f"{where}: column '{name}' has null list elements")
        values = flat.to_numpy().reshape(len(column), dims[0])
    if values.dtype.kind not in "biu":
        raise FeatureSpecError(f"{where}: column '{name}' stores {values.dtype}, expected integers")
    return values
