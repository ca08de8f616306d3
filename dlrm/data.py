"""DLRM data: split-binary datasets read by whole batches, and on-device synthetic data with a planted signal.

Notation: B = batch rows, F = categorical features, N = numerical features (13 for Criteo).

On disk (dlrm.prepare_data output, DLE's "split binary" layout): `feature_spec.yaml` plus per
split `numerical.bin` [rows, N] float16, `label.bin` bool and one `cat_i.bin` per feature in its smallest int
type. Batch i of size B is the byte range [i*B*s, (i+1)*B*s) of every file, so a batch is F + 2 `pread`s
into (pinned) buffers on a background thread; ranks read disjoint row slices of each global batch.
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

from common.feature_spec import FeatureSpec, FeatureSpecError
from common.seeding import derived_seed

CHANNELS = ("numerical", "categorical", "label")


class DataError(FeatureSpecError):
    """A dataset that does not fit DLRM's channel rules or whose files disagree; names file and feature."""


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


# ---------------------------------------------------------------------------------------------- on disk
@dataclass(frozen=True)
class SplitFiles:
    """One mapping (train/test/validation) resolved to files; categorical lists are in channel order."""

    name: str
    rows: int
    numerical: Path
    label: Path
    categorical: tuple[Path, ...]
    categorical_dtypes: tuple[np.dtype, ...]


@dataclass(frozen=True)
class DlrmDataset:
    directory: Path
    num_numerical: int
    cardinalities: tuple[int, ...]  # table rows per categorical feature, channel order
    splits: dict[str, SplitFiles]

    def split(self, name: str) -> SplitFiles:
        if name not in self.splits:
            raise DataError(
                f"{self.directory}: the feature spec has no '{name}' mapping; it has {sorted(self.splits)}"
            )
        return self.splits[name]


def open_dataset(directory: str | os.PathLike, spec_file: str = "feature_spec.yaml") -> DlrmDataset:
    """Load the spec and check DLRM's channel rules (DLE README "Channel definitions"): channels numerical,
    categorical, label; all numerical features float16 in ONE split_binary file in channel order; one file
    per categorical feature, integer dtype with a cardinality; one bool label. Feature names are free (ours
    `cat_0`, the reference's `cat_0.bin`): only the channel order matters."""
    directory = Path(directory)
    path = directory / spec_file
    if not path.is_file():
        raise DataError(f"{path} does not exist; --dataset must be a directory written by dlrm.prepare_data")
    spec = FeatureSpec.from_yaml(path)
    where = str(path)
    if missing := [c for c in CHANNELS if c not in spec.channel_spec]:
        raise DataError(f"{where}: channel_spec lacks {missing}; DLRM needs {list(CHANNELS)}")
    numerical, categorical, label = (spec.channel(c) for c in CHANNELS)
    if len(label) != 1 or spec.dtype(label[0]) != np.bool_:
        raise DataError(f"{where}: the label channel must hold exactly one bool feature, got {label}")
    if not categorical or not numerical:
        raise DataError(f"{where}: need at least one numerical and one categorical feature")
    if bad := [f for f in numerical if spec.dtype(f) != np.float16]:
        raise DataError(
            f"{where}: numerical features must be float16, got {[(f, str(spec.dtype(f))) for f in bad]}"
        )
    for f in categorical:
        if spec.dtype(f).kind not in "iu":
            raise DataError(
                f"{where}: categorical feature {f} must have an integer dtype, got {spec.dtype(f)}"
            )
    cards = tuple(spec.cardinality(f) for f in categorical)
    splits = {m: _resolve_split(spec, where, m, numerical, categorical, label[0]) for m in spec.source_spec}
    if "train" not in splits or "test" not in splits:
        raise DataError(f"{where}: source_spec needs mappings 'train' and 'test', got {sorted(splits)}")
    return DlrmDataset(directory, len(numerical), cards, splits)


def _resolve_split(
    spec: FeatureSpec, where: str, mapping: str, numerical: list[str], categorical: list[str], label: str
) -> SplitFiles:
    files: dict[str, tuple[list[str], Path]] = {}
    for c, chunk in enumerate(spec.source_spec[mapping]):
        key = f"{where}: source_spec.{mapping}[{c}]"
        if chunk["type"] != "split_binary" or len(chunk["files"]) != 1:
            raise DataError(
                f"{key}: DLRM reads split_binary chunks of one file, got {chunk['type']} with {chunk['files']}"
            )
        for f in chunk["features"]:
            files[f] = (chunk["features"], spec.chunk_paths(chunk)[0])
    for f in [*numerical, *categorical, label]:
        if f not in files:
            raise DataError(f"{where}: source_spec.{mapping} does not store feature {f}")
    if files[numerical[0]][0] != numerical:
        raise DataError(
            f"{where}: source_spec.{mapping}: the numerical features must form one chunk in channel order "
            f"{numerical}, got {files[numerical[0]][0]}"
        )
    for f in [*categorical, label]:
        if files[f][0] != [f]:
            raise DataError(
                f"{where}: source_spec.{mapping}: {f} must be alone in its chunk, got {files[f][0]}"
            )
    rows = {}
    for f, width in [(numerical[0], len(numerical)), (label, 1), *[(f, 1) for f in categorical]]:
        p, item = files[f][1], spec.dtype(f).itemsize * width
        size = p.stat().st_size
        if size % item:
            raise DataError(
                f"{p}: {size} bytes is not a whole number of {item}-byte rows of {f} ({spec.dtype(f)})"
            )
        rows[p] = size // item
    if len(set(rows.values())) != 1:
        counts = ", ".join(f"{p.name}: {n}" for p, n in rows.items())
        raise DataError(f"{where}: mapping {mapping}: files hold different row counts ({counts})")
    return SplitFiles(
        mapping, next(iter(rows.values())), files[numerical[0]][1], files[label][1],
        tuple(files[f][1] for f in categorical), tuple(spec.dtype(f) for f in categorical),
    )  # fmt: skip


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


# -------------------------------------------------------------------------------------------- synthetic
_P = 2147483647  # 2**31 - 1: products with ids < 2**32 stay inside int64 on every device


def _unit_hash(ids: Tensor, salt: int) -> Tensor:
    """A fixed pseudo-random value in [-sqrt(3), sqrt(3)) (unit variance) per id: a teacher embedding
    without storing a table (FL15 has 33M rows)."""
    x = (ids + salt) % _P
    x = (x * 1103515245 + 12345) % _P
    x = (x * 1103515245 + 12345) % _P
    return (x.double() / _P * 2.0 - 1.0) * 3.0**0.5


@dataclass(frozen=True)
class SyntheticCriteo:
    """Criteo-shaped batches generated on the device from a seed, labels drawn from a known "teacher":

        logit = bias + sum_{t informative} w_t(id_t) + 0.6 * w_0(id_0) * w_1(id_1) + v . numerical

    ids are skewed (id = floor(n * u**3)) so frequent rows get trained, as in real logs. Every third table
    is informative; `probabilities` exposes the true click probabilities, so tests compare a trained
    model's AUC with the oracle's. Batch `key` k always gives the same rows (resumable, rank-independent).
    """

    table_sizes: tuple[int, ...]
    num_numerical: int = 13
    seed: int = 0

    def _generator(self, key: int, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(derived_seed(self.seed, key, 17))

    def sample(self, key: int, rows: int, device: torch.device) -> tuple[DlrmBatch, Tensor]:
        """(batch, true probabilities [rows] float64) of batch `key`."""
        g = self._generator(key, device)
        sizes = torch.tensor(self.table_sizes, dtype=torch.float64, device=device)
        u = torch.rand(rows, len(self.table_sizes), generator=g, device=device, dtype=torch.float64)
        ids = torch.minimum((u**3 * sizes).long(), sizes.long() - 1)
        numerical = torch.rand(rows, self.num_numerical, generator=g, device=device) * 4.0
        logit = torch.full((rows,), -1.6, dtype=torch.float64, device=device)
        for t in range(0, len(self.table_sizes), 3):
            logit += _unit_hash(ids[:, t], 7 + t)
        if len(self.table_sizes) > 1:
            logit += 0.6 * _unit_hash(ids[:, 0], 7) * _unit_hash(ids[:, 1], 8)
        v = torch.tensor([0.5, -0.4, 0.3][: self.num_numerical], dtype=torch.float64, device=device)
        logit += (numerical[:, : len(v)].double() - 2.0) @ v
        prob = torch.sigmoid(logit)
        label = torch.rand(rows, generator=g, device=device, dtype=torch.float64) < prob
        return DlrmBatch(numerical, ids, label.float()), prob

    def batches(
        self,
        keys: Iterable[int],
        batch_rows: Callable[[int], int],
        rank: int,
        world_size: int,
        device: torch.device,
    ) -> Iterator[DlrmBatch]:
        """This rank's slice of global batch `key` for each key (the whole batch is generated on every rank,
        so data does not depend on the number of ranks)."""
        for key in keys:
            n = batch_rows(key)
            batch, _ = self.sample(key, n, device)
            lo, hi = rank_slice(n, rank, world_size)
            yield DlrmBatch(batch.numerical[lo:hi], batch.categorical[lo:hi], batch.label[lo:hi])


# ------------------------------------------------------------------------- what train/evaluate iterate
def batch_order(steps: int, shuffle: bool, seed: int, epoch: int) -> list[int]:
    """Training batch indices of an epoch: sequential (the prep step shuffled rows once, like the
    reference), or a seeded permutation of whole batches that a resumed run replays exactly."""
    if not shuffle:
        return list(range(steps))
    g = torch.Generator().manual_seed(derived_seed(seed, epoch, 5))
    return torch.randperm(steps, generator=g).tolist()


class DiskSource:
    """Batches of a prepared dataset for one rank (`rank`'s slice of every global batch)."""

    def __init__(
        self, dataset: DlrmDataset, rank: int, world_size: int, device: torch.device, depth: int
    ) -> None:
        self.dataset, self.rank, self.world_size, self.device, self.depth = (
            dataset,
            rank,
            world_size,
            device,
            depth,
        )
        self.table_sizes, self.num_numerical = dataset.cardinalities, dataset.num_numerical

    def rows(self, split: str) -> int:
        return self.dataset.split(split).rows

    def _stream(self, split: str, ranges: Iterable[tuple[int, int]]) -> Iterator[DlrmBatch]:
        reader = BatchReader(
            self.dataset.split(split), self.num_numerical, self.table_sizes, self.device.type == "cuda"
        )
        try:
            yield from prefetch(ranges, reader.read, self.depth, self.device)
        finally:
            reader.close()

    def train_batches(self, batch_size: int, order: Iterable[int]) -> Iterator[DlrmBatch]:
        return self._stream(
            "train", train_ranges(self.rows("train"), batch_size, self.rank, self.world_size, order)
        )

    def eval_batches(self, split: str, batch_size: int) -> Iterator[DlrmBatch]:
        return self._stream(split, eval_ranges(self.rows(split), batch_size, self.rank, self.world_size))


class SyntheticSource:
    """SyntheticCriteo as a dataset: `train_rows` training samples (the same batches every epoch), and
    test/validation splits of `eval_rows` samples from disjoint batch keys."""

    _EVAL_KEYS = {"test": -1, "validation": -(2**40)}

    def __init__(
        self, synthetic: SyntheticCriteo, train_rows: int, eval_rows: int, rank: int, world_size: int,
        device: torch.device,
    ) -> None:  # fmt: skip
        self.synthetic, self.train_rows, self.eval_rows = synthetic, train_rows, eval_rows
        self.rank, self.world_size, self.device = rank, world_size, device
        self.table_sizes, self.num_numerical = synthetic.table_sizes, synthetic.num_numerical

    def rows(self, split: str) -> int:
        return self.train_rows if split == "train" else self.eval_rows

    def train_batches(self, batch_size: int, order: Iterable[int]) -> Iterator[DlrmBatch]:
        return self.synthetic.batches(order, lambda k: batch_size, self.rank, self.world_size, self.device)

    def eval_keys(self, split: str, batch_size: int) -> list[tuple[int, int]]:
        """(key, rows) of every global evaluation batch."""
        if split not in self._EVAL_KEYS:
            raise DataError(f"synthetic data has splits {sorted(self._EVAL_KEYS)}, not '{split}'")
        base = self._EVAL_KEYS[split]
        return [
            (base - j, min(batch_size, self.eval_rows - s))
            for j, s in enumerate(range(0, self.eval_rows, batch_size))
        ]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[DlrmBatch]:
        sizes = dict(self.eval_keys(split, batch_size))
        return self.synthetic.batches(list(sizes), sizes.__getitem__, self.rank, self.world_size, self.device)
