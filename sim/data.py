"""SIM datasets: FeatureSpec channels -> one int32 row table per split on the device -> SimBatch.

Any FeatureSpec dataset with the reference's five channels loads (sim.prepare_data output or your own;
the channel rules: sim/schema.py). The item id (feature 0) > 0 marks real history positions.

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

from common.distributed import DistEnv, shard_range
from common.feature_spec import FeatureSpec, FeatureSpecError
from sim.models import SimBatch, SimSizes
from sim.parquet_input import parquet_file, read_parquet_chunk
from sim.schema import SimSchema, read_schema


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
        total += parquet_file(spec, f"source_spec.{split}[0].files[{i}]", path).metadata.num_rows
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
    writer = RowWriter(schema, start, stop, negative_length)
    chunks = spec.source_spec[split]
    if all(chunk["type"] == "parquet" for chunk in chunks):
        for c, chunk in enumerate(chunks):
            read_parquet_chunk(spec, f"source_spec.{split}[{c}]", chunk, writer, total, show)
    else:
        arrays = spec.read_mapping(split, list(writer.columns))
        for name, values in arrays.items():
            writer.put(name, values[start:stop], 0, f"source_spec.{split}")
    rows = torch.from_numpy(writer.table).to(device)
    return SplitData(
        rows, len(schema.user), len(schema.target), schema.history_length, negative_length, total, start
    )


def load_shards(
    spec: FeatureSpec, schema: SimSchema, names: tuple[str, ...], sizes: SimSizes, env: DistEnv, *,
    negatives: bool, show: bool = False,
) -> dict[str, SplitData]:  # fmt: skip
    """This rank's contiguous shard of each split in `names`, on its device, with the newest negatives
    (positions the model's auxiliary loss reads) when `negatives` and the model uses them, else none."""
    count = schema.history_length - sizes.long_seq_length if negatives and sizes.uses_negatives else 0
    return {
        name: load_split(spec, schema, name, negative_length=count, device=env.device,
                         shard=shard_range(split_length(spec, name), env), show=show)
        for name in names
    }  # fmt: skip


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


class RowWriter:
    """The row table of split rows [start, stop) (SplitData.rows, on the host): checks one feature's values
    (range, label values, left padding) and writes them into their columns."""

    def __init__(self, schema: SimSchema, start: int, stop: int, negative_length: int) -> None:
        u, f, t = len(schema.user), len(schema.target), schema.history_length
        self.table = np.empty((stop - start, 1 + u + f + (t + negative_length) * f), dtype=np.int32)
        self.columns = _column_slots(schema, negative_length)
        self.start, self.stop, self.features, self.negative_length = start, stop, f, negative_length
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
