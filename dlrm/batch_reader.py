"""Reading whole batches of a prepared split: each rank's row ranges, `pread`s into (pinned) buffers, and a
background thread that keeps a few batches ahead of the step.

Notation: B = batch rows, F = categorical features, N = numerical features (13 for Criteo). Batch i of size
B is the byte range [i*B*s, (i+1)*B*s) of every file, so a batch is F + 2 `pread`s; ranks read disjoint row
slices of each global batch.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dlrm.dataset_files import DataError, SplitFiles


@dataclass
class DlrmBatch:
    """numerical [B, N] float, categorical [B, F] int (stored dtype until `to_device` widens it), label [B]."""

    numerical: Tensor
    categorical: Tensor
    label: Tensor

    def __len__(self) -> int:
        return self.label.shape[0]

    def to_device(self, device: torch.device) -> DlrmBatch:
        """Copy (async from pinned memory) and widen on the device: fp16/int8..int32 travel, not fp32/int64."""
        nb = device.type == "cuda"
        return DlrmBatch(
            self.numerical.to(device, non_blocking=nb).float(),
            self.categorical.to(device, non_blocking=nb).long(),
            self.label.to(device, non_blocking=nb).float(),
        )


def rank_slice(rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of a global batch of `rows` that `rank` owns; the first rows % W ranks get one more row."""
    base, extra = divmod(rows, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def train_ranges(
    rows: int, batch_size: int, rank: int, world_size: int, order: Iterable[int]
) -> Iterator[tuple[int, int]]:
    """Row ranges of this rank's slice of each FULL global batch, in `order` (batch indices)."""
    lo, hi = rank_slice(batch_size, rank, world_size)
    for i in order:
        yield i * batch_size + lo, i * batch_size + hi


def eval_ranges(rows: int, batch_size: int, rank: int, world_size: int) -> Iterator[tuple[int, int]]:
    """Every global batch, the partial last one included, each split over ranks: every rank sees the same
    number of batches (a sharded model's collectives need that); slices of the last one may be empty."""
    for start in range(0, rows, batch_size):
        n = min(batch_size, rows - start)
        lo, hi = rank_slice(n, rank, world_size)
        yield start + lo, start + hi


class BatchReader:
    """Reads row ranges of one split with `os.preadv` (GIL released, no page-cache mapping kept) into fresh
    buffers -- pinned when `pin` so the host-to-device copy can be asynchronous.

    `check_ids`: compare each batch's ids with the cardinalities (a vectorised max per column) so a corrupt
    file is an error naming it, not an index error deep inside the embedding lookup.
    """

    def __init__(
        self, split: SplitFiles, num_numerical: int, cardinalities: tuple[int, ...], pin: bool
    ) -> None:
        self.split, self.num_numerical, self.pin = split, num_numerical, pin
        self.cardinalities = np.asarray(cardinalities, dtype=np.int64)
        self.id_dtype = np.int64 if max(d.itemsize for d in split.categorical_dtypes) > 4 else np.int32
        self._fds = [os.open(p, os.O_RDONLY) for p in (split.numerical, split.label, *split.categorical)]

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _read(self, fd: int, path: Path, out: np.ndarray, offset: int) -> None:
        view, done = memoryview(out).cast("B"), 0
        while done < view.nbytes:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                raise DataError(f"{path}: unexpected end of file at byte {offset + done}")
            done += n

    def read(self, lo: int, hi: int) -> DlrmBatch:
        n, s = hi - lo, self.split
        numerical = torch.empty(n, self.num_numerical, dtype=torch.float16, pin_memory=self.pin)
        label = torch.empty(n, dtype=torch.bool, pin_memory=self.pin)
        cat_np = np.empty((len(s.categorical), n), dtype=self.id_dtype)
        self._read(self._fds[0], s.numerical, numerical.numpy(), lo * 2 * self.num_numerical)
        self._read(self._fds[1], s.label, label.numpy(), lo)
        for i, (path, dtype) in enumerate(zip(s.categorical, s.categorical_dtypes)):
            raw = np.empty(n, dtype=dtype.newbyteorder("<"))
            self._read(self._fds[2 + i], path, raw, lo * dtype.itemsize)
            cat_np[i] = raw
        if n:
            bad = (cat_np.max(axis=1) >= self.cardinalities) | (cat_np.min(axis=1) < 0)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{s.categorical[i]}: rows {lo}..{hi - 1} hold ids outside [0, {self.cardinalities[i]}) "
                    f"(min {cat_np[i].min()}, max {cat_np[i].max()}); the spec's cardinality is wrong or the file is corrupt"
                )
        # [B, F]; int32 (when every id fits) halves the host-to-device bytes of int64
        categorical = torch.empty(
            n, len(s.categorical), dtype=torch.from_numpy(cat_np).dtype, pin_memory=self.pin
        )
        categorical.numpy()[:] = cat_np.T
        return DlrmBatch(numerical, categorical, label)


_END = object()


def prefetch(
    items: Iterable, load: Callable[..., DlrmBatch], depth: int, device: torch.device
) -> Iterator[DlrmBatch]:
    """Run `load(*item)` for each item on a background thread, at most `depth` batches ahead, and yield
    them on `device`. Loader exceptions re-raise here; closing the generator stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                batch = load(*item)
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            q.put(e)

    thread = threading.Thread(target=work, name="dlrm-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item.to_device(device)
    finally:
        stop.set()
        thread.join(timeout=5.0)
