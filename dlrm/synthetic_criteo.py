"""Criteo-shaped batches generated on the device from a seed, with a known click probability (the planted
signal tests and --synthetic_dataset train on). No files: the raw-log writer is dlrm.synthetic."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from common.seeding import derived_seed
from dlrm.batch_reader import DlrmBatch, rank_slice

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
