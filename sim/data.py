"""SIM datasets: FeatureSpec channels -> one int32 row table per split on the device -> SimBatch.

Any FeatureSpec dataset with the reference's five channels loads (sim.prepare_data output or your own):
  label                 one feature, bool or 0/1 integer
  user_features         any number of categorical features (ids 0..cardinality)
  target_item_features  F >= 1 categorical features (item id first, then e.g. category)
  positive_history      F features with `dimensions: [T]`, LEFT-padded with 0, newest at T-1
  negative_history      F features with `dimensions: [T]`, aligned with positive_history
Feature k of the three item channels shares embedding table k, so the channels must list the same number
of features, in the same order, with equal cardinalities. The item id (feature 0) > 0 marks real
history positions.

Memory design: a rank holds its contiguous row shard (common.distributed.shard_range) as ONE [n, W]
int32 tensor, only the columns a model reads: label | user | target | positive history [T, F] |
negative history, newest S positions only [S, F] (S = T - long_seq_length; DIN and inference read none).
No model reads the older negatives, so Amazon Books (11.8M rows, T = 100, F = 2) needs
224 int32 = 896 B/row = 10.6 GB instead of 19 GB for all 404 columns: it fits in host RAM and in one GPU,
which buys an exact per-epoch shuffle (a random permutation + one index_select per step, on the device)
and an exact, replayable resume. Parquet is read one row group at a time (bounded extra memory), only
the row groups overlapping the shard; other chunk types go through FeatureSpec.read_mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from common.feature_spec import FeatureSpec, FeatureSpecError
from common.messages import shown
from sim.models import SimBatch

CHANNELS = ("label", "user_features", "target_item_features", "positive_history", "negative_history")
MAX_ID = 2**31 - 2  # ids are stored as int32 and offset into one table per channel


@dataclass(frozen=True)
class SimSchema:
    """Feature names per role, resolved and checked once."""

    label: str
    user: tuple[str, ...]
    target: tuple[str, ...]
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    history_length: int
    user_cardinalities: tuple[int, ...]
    item_cardinalities: tuple[int, ...]


def read_schema(spec: FeatureSpec) -> SimSchema:
    """Check the SIM channel rules (README 'Channel definitions') with errors naming the channel/feature."""
    where = spec.yaml_path or spec.base_directory

    def fail(message: str) -> None:
        raise FeatureSpecError(f"{where}: {message}")

    if missing := [c for c in CHANNELS if c not in spec.channel_spec]:
        fail(f"channel_spec lacks {missing}; a SIM dataset needs the channels {list(CHANNELS)}")
    names = {c: tuple(spec.channel(c)) for c in CHANNELS}
    if len(names["label"]) != 1:
        fail(f"channel_spec.label must hold exactly one feature, got {list(names['label'])}")
    items = names["target_item_features"]
    if not items:
        fail("channel_spec.target_item_features is empty; it needs at least the item id")
    for c in ("positive_history", "negative_history"):
        if len(names[c]) != len(items):
            fail(f"channel_spec.{c} has {len(names[c])} features {list(names[c])} but target_item_features has "
                 f"{len(items)} {list(items)}: the three item channels need the same features in the same "
                 "order (feature k of each shares embedding table k)")  # fmt: skip
    lengths = set()
    for c in CHANNELS:
        for name in names[c]:
            entry, sequence = spec.feature_spec[name], c.endswith("_history")
            dims = entry.get("dimensions")
            if sequence:
                if not (isinstance(dims, list) and len(dims) == 1):
                    fail(f"feature_spec.{name}.dimensions must be [T] (the history length) for a feature of "
                         f"channel {c}, got {dims!r}")  # fmt: skip
                lengths.add(dims[0])
            elif dims not in (None, [1]):
                fail(f"feature_spec.{name} (channel {c}) must be a scalar feature, got dimensions {dims!r}")
            if "dtype" in entry:
                kind = spec.dtype(name).kind
                allowed = "biu" if c == "label" else "iu"
                if kind not in allowed:
                    fail(f"feature_spec.{name}.dtype is {entry['dtype']}; channel {c} needs "
                         f"{'bool or integer' if c == 'label' else 'integer ids'}")  # fmt: skip
    if len(lengths) != 1:
        fail(f"positive_history and negative_history features must share one length, got {sorted(lengths)}")
    cards = {name: spec.cardinality(name) for c in CHANNELS[1:] for name in names[c]}
    if too_big := [n for n, v in cards.items() if v > MAX_ID]:
        fail(f"cardinalities of {too_big} exceed the int32 id range")
    for k, name in enumerate(items):
        trio = [cards[name], cards[names["positive_history"][k]], cards[names["negative_history"][k]]]
        if len(set(trio)) != 1:
            fail(f"item feature {k} ({name}, {names['positive_history'][k]}, {names['negative_history'][k]}) "
                 f"shares one embedding table but has cardinalities {trio}")  # fmt: skip
    return SimSchema(
        label=names["label"][0], user=names["user_features"], target=items,
        positive=names["positive_history"], negative=names["negative_history"],
        history_length=lengths.pop(), user_cardinalities=tuple(cards[n] for n in names["user_features"]),
        item_cardinalities=tuple(cards[n] for n in items),
    )  # fmt: skip


@dataclass
class SplitData:
    """One rank's shard of a split: rows [n, W] int32 = label | user U | target F | positive [T, F] |
    negative [S, F] (the newest S positions). `start` is the shard's first row in the whole split."""

    rows: Tensor
    users: int
    features: int
    history_length: int
    negative_length: int
    total_rows: int
    start: int

    def __len__(self) -> int:
        return self.rows.shape[0]

    def batch(self, index: Tensor | slice) -> SimBatch:
        """Rows by index (a device tensor: one gather) or by slice (a view) -> SimBatch of views."""
        r = self.rows[index]
        n, u, f, t, s = r.shape[0], self.users, self.features, self.history_length, self.negative_length
        p = 1 + u + f
        q = p + t * f
        return SimBatch(
            user=r[:, 1 : 1 + u],
            target=r[:, 1 + u : p],
            history=r[:, p:q].view(n, t, f),
            neg_history=r[:, q : q + s * f].view(n, s, f) if s else None,
            label=r[:, 0].float(),
        )


def open_spec(dataset_dir: Path, spec_file: str = "feature_spec.yaml") -> tuple[FeatureSpec, SimSchema]:
    spec = FeatureSpec.from_yaml(Path(dataset_dir) / spec_file)
    for split in ("train", "test"):
        if split not in spec.source_spec:
            raise FeatureSpecError(f"{spec.yaml_path}: source_spec needs a '{split}' mapping")
    return spec, read_schema(spec)


def split_length(spec: FeatureSpec, split: str) -> int:
    """Rows in a split, from Parquet footers (no data read) or, for other chunk types, the label column."""
    chunk = spec.source_spec[split][0]
    if chunk["type"] != "parquet":
        return len(next(iter(spec.read_mapping(split, chunk["features"][:1]).values())))
    total = 0
    for i, path in enumerate(spec.chunk_paths(chunk)):
        total += _parquet_file(spec, f"source_spec.{split}[0].files[{i}]", path).metadata.num_rows
    return total


def load_split(
    spec: FeatureSpec,
    schema: SimSchema,
    split: str,
    *,
    negative_length: int,
    shard: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    show: bool = False,
) -> SplitData:
    """Rows [start, stop) of `split` (default: all) -> SplitData on `device`, values checked on the way."""
    total = split_length(spec, split)
    start, stop = shard if shard is not None else (0, total)
    u, f, t = len(schema.user), len(schema.target), schema.history_length
    columns = _column_slots(schema, negative_length)
    table = np.empty((stop - start, 1 + u + f + (t + negative_length) * f), dtype=np.int32)
    writer = _Writer(spec, schema, table, columns, start, stop, negative_length)
    chunks = spec.source_spec[split]
    if all(chunk["type"] == "parquet" for chunk in chunks):
        for c, chunk in enumerate(chunks):
            _read_parquet_chunk(spec, f"source_spec.{split}[{c}]", chunk, writer, total, show)
    else:
        arrays = spec.read_mapping(split, list(columns))
        for name, values in arrays.items():
            writer.put(name, values[start:stop], 0, f"source_spec.{split}")
    return SplitData(torch.from_numpy(table).to(device), u, f, t, negative_length, total, start)


def _column_slots(schema: SimSchema, negative_length: int) -> dict[str, tuple[str, int]]:
    """feature -> (role, first column); history feature k fills every F-th column from there."""
    u, f, t = len(schema.user), len(schema.target), schema.history_length
    slots = {schema.label: ("label", 0)}
    slots |= {name: ("scalar", 1 + k) for k, name in enumerate(schema.user)}
    slots |= {name: ("scalar", 1 + u + k) for k, name in enumerate(schema.target)}
    slots |= {name: ("positive", 1 + u + f + k) for k, name in enumerate(schema.positive)}
    if negative_length:
        slots |= {name: ("negative", 1 + u + f + t * f + k) for k, name in enumerate(schema.negative)}
    return slots


class _Writer:
    """Checks one feature's values (range, label values, left padding) and writes them into the table."""

    def __init__(self, spec, schema, table, columns, start, stop, negative_length) -> None:
        self.spec, self.table, self.columns, self.start, self.stop = spec, table, columns, start, stop
        self.features, self.negative_length = len(schema.target), negative_length
        self.limits = dict(zip(schema.user + schema.target + schema.positive + schema.negative,
                               schema.user_cardinalities + 3 * schema.item_cardinalities))  # fmt: skip
        self.item_id = schema.positive[0]

    def put(self, name: str, values: np.ndarray, first_row: int, where: str) -> None:
        """values: [n] or [n, T] for rows first_row.. of the shard."""
        role, col = self.columns[name]
        rows = slice(first_row, first_row + len(values))
        if len(values) == 0:
            return
        values = values.reshape(len(values), -1) if role in ("positive", "negative") else values.reshape(-1)
        if role == "label":
            if not np.isin(values, (0, 1)).all():
                raise FeatureSpecError(f"{where}: label '{name}' holds values other than 0/1 (or true/false)")
            self.table[rows, 0] = values
            return
        lo, hi, limit = values.min(), values.max(), self.limits[name]
        if lo < 0 or hi > limit:
            raise FeatureSpecError(f"{where}: '{name}' holds ids in [{lo}, {hi}], outside [0, {limit}] "
                                   f"(0 = padding, 1..cardinality = real ids)")  # fmt: skip
        if role == "scalar":
            self.table[rows, col] = values
            return
        if name == self.item_id:
            real = values > 0
            if bad := np.flatnonzero((real[:, :-1] & ~real[:, 1:]).any(1)).tolist():
                raise FeatureSpecError(
                    f"{where}: row {self.start + first_row + bad[0]} of the split has padding (id 0) after a "
                    f"real item in '{name}' ({len(bad)} rows do); histories must be LEFT-padded, newest last"
                )
        f = self.features
        if role == "negative":
            values = values[:, values.shape[1] - self.negative_length :]
        self.table[rows, col : col + values.shape[1] * f : f] = values


def _parquet_file(spec: FeatureSpec, key: str, path: Path):
    import pyarrow.parquet as pq  # lazy: slow to import

    try:  # page CRCs (sim.prepare_data writes them) are verified: flipped bytes fail instead of loading
        return pq.ParquetFile(path, page_checksum_verification=True)
    except Exception as err:  # pyarrow raises several types; all mean "not a readable parquet file"
        raise FeatureSpecError(f"{spec.yaml_path}: {key}: cannot read {path} as parquet: {err}") from None


def _read_parquet_chunk(spec: FeatureSpec, key: str, chunk: dict, writer: _Writer, total: int, show: bool):
    """Stream the row groups of one chunk that overlap [writer.start, writer.stop)."""
    wanted = [name for name in chunk["features"] if name in writer.columns]
    files = [_parquet_file(spec, f"{key}.files[{i}]", p) for i, p in enumerate(spec.chunk_paths(chunk))]
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


def epoch_steps(shard_rows: int, smallest_shard: int, local_batch: int, drop_remainder: bool) -> list[slice]:
    """Positions in this rank's epoch permutation, per step; every rank gets the same number of steps.

    drop_remainder: full local batches only. Otherwise the last step takes everything left, so a rank with
    one row more than the smallest shard puts it in its last batch (batches may then differ by one row).
    """
    steps = (
        smallest_shard // local_batch if drop_remainder else max(1, math.ceil(smallest_shard / local_batch))
    )
    cuts = [slice(i * local_batch, (i + 1) * local_batch) for i in range(steps)]
    if cuts and not drop_remainder:
        cuts[-1] = slice(cuts[-1].start, shard_rows)
    return cuts
