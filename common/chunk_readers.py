"""Readers for the chunk file types a FeatureSpec's source_spec may name, one function per type.

Split from common/feature_spec.py, which resolves a chunk's features, dimensions and declared dtypes into
a ChunkLayout, calls READERS[type] on each file and checks what comes back. Each reader raises whatever
its format library raises; FeatureSpec turns that into one error naming the file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

CHUNK_TYPES = ("torch_tensor", "npy", "split_binary", "csv", "parquet")
# Chunk types NVIDIA's recipes write that are not read here, and what to do instead.
UNREAD_TYPES = {
    "tfrecord": "TFRecord (NVIDIA's SIM parquet_to_tfrecord.py output) is not read directly; convert it "
    "once with python -m sim.convert_tfrecord --input DIR --output NEW_DIR",
}


class ChunkLayout(NamedTuple):
    """A chunk as its readers see it, resolved from the spec once per chunk."""

    features: list[str]
    dims: list[tuple[int, ...]]  # () for a scalar feature
    dtypes: list[np.dtype | None]  # declared; None where the spec gives none
    needed: list[str]

    @property
    def bounds(self) -> list[int]:  # feature k spans columns bounds[k]:bounds[k + 1] of a row
        return [0, *itertools.accumulate(math.prod(d) for d in self.dims)]


def split_matrix(array: np.ndarray, layout: ChunkLayout) -> dict[str, np.ndarray]:
    """Column formats store a chunk as [N, columns], or [N] for one scalar feature."""
    bounds = layout.bounds
    if array.ndim == 0 or math.prod(array.shape[1:]) != bounds[-1]:
        raise ValueError(f"shape {list(array.shape)}, expected [N, {bounds[-1]}] for {layout.features}")
    matrix = array.reshape(array.shape[0], bounds[-1])
    return {name: matrix[:, lo:hi] for name, lo, hi in zip(layout.features, bounds, bounds[1:])}


def read_file(kind: str, path: Path, layout: ChunkLayout) -> dict[str, np.ndarray]:
    """feature -> [N, width] array for one file of a chunk of type `kind` (a key of READERS)."""
    loaded = READERS[kind](path, layout)
    return split_matrix(loaded, layout) if isinstance(loaded, np.ndarray) else loaded


# Readers read one file into a [N, columns] matrix (column formats) or into {feature: [N, width]}.


def _read_torch(path: Path, layout: ChunkLayout) -> np.ndarray:
    import torch

    tensor = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"it holds a {type(tensor).__name__}, not a tensor")
    return tensor.detach().numpy()


def _read_split_binary(path: Path, layout: ChunkLayout) -> np.ndarray:
    dtypes = set(layout.dtypes)
    if len(dtypes) != 1 or None in dtypes:
        raise ValueError(f"its features need one shared declared dtype, got {layout.dtypes}")
    dtype, width = dtypes.pop().newbyteorder("<"), layout.bounds[-1]
    size, row_bytes = path.stat().st_size, width * dtype.itemsize
    if size % row_bytes:
        raise ValueError(f"{size} bytes is not a multiple of the row size {row_bytes} ({width} x {dtype})")
    if size == 0:  # np.memmap refuses empty files
        return np.empty((0, width), dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(size // row_bytes, width))


def _read_csv(path: Path, layout: ChunkLayout) -> dict[str, np.ndarray]:
    import pandas as pd  # lazy: only prep scripts and transcoders read csv

    col_dtypes = [dt for dt, d in zip(layout.dtypes, layout.dims) for _ in range(math.prod(d))]
    frame = pd.read_csv(path, header=None, dtype={c: dt for c, dt in enumerate(col_dtypes) if dt is not None})
    if frame.shape[1] != len(col_dtypes):  # a ParserError's text already names the line
        raise ValueError(f"it has {frame.shape[1]} columns, expected {len(col_dtypes)} for {layout.features}")
    spans = zip(layout.features, layout.bounds, layout.bounds[1:])
    return {name: frame.iloc[:, lo:hi].to_numpy() for name, lo, hi in spans}


def _read_parquet(path: Path, layout: ChunkLayout) -> dict[str, np.ndarray]:
    import pyarrow.compute as pc  # lazy: pyarrow is slow to import and few datasets use it
    import pyarrow.parquet as pq

    table, out = pq.read_table(path, columns=layout.needed), {}
    for name, dims in zip(layout.features, layout.dims):
        if name in layout.needed:
            values = pc.list_flatten(table.column(name)) if dims else table.column(name)
            out[name] = values.to_numpy().reshape(table.num_rows, math.prod(dims))
    return out


READERS: dict[str, Callable[[Path, ChunkLayout], np.ndarray | dict[str, np.ndarray]]] = {
    "torch_tensor": _read_torch,
    "npy": lambda path, layout: np.load(path, mmap_mode="r"),
    "split_binary": _read_split_binary,
    "csv": _read_csv,
    "parquet": _read_parquet,
}
