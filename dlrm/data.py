"""DLRM data as train/evaluate/benchmark iterate it: a prepared dataset or on-device synthetic data, as a
source of each rank's training and evaluation batches.

The pieces: dlrm.dataset_files (the feature spec and its files), dlrm.batch_reader (reads and read-ahead)
and dlrm.synthetic_criteo (the planted-signal generator). Their public names are re-exported here, so
`from dlrm import data` stays the one import the entry points use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from common.seeding import derived_seed
from dlrm.batch_reader import BatchReader, DlrmBatch, eval_ranges, prefetch, rank_slice, train_ranges
from dlrm.dataset_files import CHANNELS, DataError, DlrmDataset, SplitFiles, open_dataset
from dlrm.synthetic_criteo import SyntheticCriteo

__all__ = ["CHANNELS", "BatchReader", "DataError", "DiskSource", "DlrmBatch", "DlrmDataset", "SplitFiles",
           "SyntheticCriteo", "SyntheticSource", "batch_order", "eval_ranges", "open_dataset", "prefetch",
           "rank_slice", "train_ranges"]  # fmt: skip


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
