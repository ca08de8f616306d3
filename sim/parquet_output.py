"""The prepared dataset on disk: Parquet parts with fixed-size row groups, feature_spec.yaml, metadata.json.

Layout (the contract sim.train reads through common.feature_spec):

    OUT/feature_spec.yaml   five channels, as DLE-SIM's default spec, int32 ids
    OUT/metadata.json       {"cardinalities": [{"name": "uid", "value": U}, {"name": "item", ...}, {"name": "cat", ...}]}
    OUT/train/part_{k}.parquet, OUT/test/part_{k}.parquet

Columns = feature names, in the reference's positional order: label (bool), user_feat_0, item_feat_0_trgt,
item_feat_1_trgt (int32), item_feat_{0,1}_{pos,neg} (fixed_size_list<int32>[L]). Prebatching is the row
group size: every row group of a split holds exactly that many rows except the split's very last one;
parts hold whole row groups. Everything is written into a temp dir next to OUT and renamed when complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import output_dir
from sim.history_rows import RowChunk
from sim.raw_input import PrepareDataError

LABEL, USER = "label", "user_feat_0"
TARGET = ("item_feat_0_trgt", "item_feat_1_trgt")
POSITIVE = ("item_feat_0_pos", "item_feat_1_pos")
NEGATIVE = ("item_feat_0_neg", "item_feat_1_neg")
FEATURES = (LABEL, USER, *TARGET, *POSITIVE, *NEGATIVE)
CHANNELS = {
    "label": [LABEL],
    "user_features": [USER],
    "target_item_features": list(TARGET),
    "positive_history": list(POSITIVE),
    "negative_history": list(NEGATIVE),
}
# Row group size without prebatching: 64k rows (~100 MB at L=100), so a reader can stream a part.
DEFAULT_ROW_GROUP = 1 << 16


def schema(max_len: int) -> pa.Schema:
    history = pa.list_(pa.int32(), max_len)
    return pa.schema(
        [(LABEL, pa.bool_()), (USER, pa.int32()), *((name, pa.int32()) for name in TARGET)]
        + [(name, history) for name in (*POSITIVE, *NEGATIVE)]
    )


def to_table(chunk: RowChunk, max_len: int) -> pa.Table:
    """Zero-copy where numpy allows: the [R, L] histories become fixed-size lists over their buffers."""

    def history(matrix: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), max_len)

    columns = [chunk.label, chunk.user, chunk.target_item, chunk.target_cat]
    columns = [pa.array(c) for c in columns]
    columns += [history(m) for m in (chunk.pos_items, chunk.pos_cats, chunk.neg_items, chunk.neg_cats)]
    return pa.Table.from_arrays(columns, schema=schema(max_len))


class SplitWriter:
    """Writes a split's tables as row groups of exactly `group_rows` rows (the last may be short) into
    part_{k}.parquet files of `part_rows` rows (rounded up to whole groups); rows not yet forming a
    whole group wait in a buffer for the next table."""

    def __init__(self, directory: Path, max_len: int, group_rows: int, part_rows: int) -> None:
        self.directory, self.group_rows = directory, group_rows
        self.part_rows = -(-part_rows // group_rows) * group_rows
        self.schema = schema(max_len)
        self.files: list[str] = []
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._part_filled = 0
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.group_rows:
            self._open_part()
            whole = self._pending_rows // self.group_rows * self.group_rows
            self._emit(min(whole, self.part_rows - self._part_filled))

    def close(self) -> None:
        """Write the remainder as the split's last (short) row group; a split always has one file."""
        if self._pending_rows or not self.files:
            self._open_part()
            self._emit(self._pending_rows)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_part(self) -> None:
        if self._writer is not None and self._part_filled < self.part_rows:
            return
        if self._writer is not None:
            self._writer.close()
        name = f"part_{len(self.files)}.parquet"
        # No dictionary encoding: ids have ~1M distinct values, the dictionary page only overflows. zstd:
        # half snappy's size at the same write/read CPU (measured 2025-11: 16 vs 34 MB, 156k rows at L=100).
        # Page CRCs: sim.train verifies them, so a flipped byte is an error, not silently different ids.
        self._writer = pq.ParquetWriter(
            self.directory / name, self.schema, use_dictionary=False, compression="zstd",
            write_page_checksum=True,
        )  # fmt: skip
        self.files.append(f"{self.directory.name}/{name}")
        self._part_filled = 0

    def _emit(self, rows: int) -> None:
        """Write the first `rows` buffered rows (whole groups, or the final remainder) to the open part."""
        pending = pa.concat_tables(self._pending)
        if rows:
            self._writer.write_table(pending.slice(0, rows), row_group_size=self.group_rows)
        rest = pending.slice(rows)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self._part_filled += rows
        self.rows += rows


def feature_spec_dict(
    files: dict[str, list[str]], cardinalities: dict[str, int], max_len: int, metadata: dict
) -> dict:
    """The FeatureSpec of the written parts; cardinality = largest id + 1 (id 0 is padding)."""
    ids = {USER: "uid", TARGET[0]: "item", POSITIVE[0]: "item", NEGATIVE[0]: "item"}
    ids |= {TARGET[1]: "cat", POSITIVE[1]: "cat", NEGATIVE[1]: "cat"}
    features: dict[str, dict] = {LABEL: {"dtype": "bool"}}
    for name, kind in ids.items():
        features[name] = {"dtype": "int32", "cardinality": int(cardinalities[kind]) + 1}
        if name in POSITIVE or name in NEGATIVE:
            features[name]["dimensions"] = [max_len]
    source = {
        split: [{"type": "parquet", "features": list(FEATURES), "files": paths}]
        for split, paths in files.items()
    }
    return {
        "feature_spec": features,
        "source_spec": source,
        "channel_spec": {name: list(values) for name, values in CHANNELS.items()},
        "metadata": metadata,
    }


def write_cardinalities(path: Path, users: int, items: int, categories: int) -> None:
    """metadata.json exactly as the reference's io.save_metadata: counts (ids run 1..count)."""
    data = {"cardinalities": [{"name": "uid", "value": users}, {"name": "item", "value": items}]}
    data["cardinalities"].append({"name": "cat", "value": categories})
    path.write_text(json.dumps(data) + "\n")


def check_output(output: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Fail before any work when publishing would fail anyway, or would delete one of `inputs`."""
    output_dir.check_output(output, overwrite, PrepareDataError, "--output_path", inputs)


def staging(output: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> AbstractContextManager[Path]:
    """A temp dir next to `output`, renamed to it when the body succeeds, deleted when it fails; stale
    temp dirs of killed runs are removed first, an output containing an input is refused."""
    return output_dir.staging(output, overwrite, PrepareDataError, "--output_path", inputs)
