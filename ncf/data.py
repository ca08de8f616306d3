"""NCF data on the device: FeatureSpec -> tensors, the per-epoch negative sampler, the evaluation series.

Notation: N = training rows, S = test series (users), C = candidates per series, B = local batch.
The whole dataset lives in device memory (the reference's design: at batch 1M a host-side loader
cannot keep up), and negatives and permutations are drawn on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.feature_spec import FeatureSpec, FeatureSpecError
from common.metrics import duplicate_mask

CHANNELS = ("user_ch", "item_ch", "label_ch")


@dataclass
class NcfBatch:
    users: Tensor  # [B] int
    items: Tensor  # [B] int
    labels: Tensor  # [B] float32


@dataclass
class NcfData:
    train_users: Tensor  # [N]
    train_items: Tensor  # [N]
    train_labels: Tensor  # [N] float32 (1 for positives; BYO data may carry explicit 0s)
    test_users: Tensor  # [S, C]
    test_items: Tensor  # [S, C]
    test_labels: Tensor  # [S, C] float32, exactly one 1 per series
    test_mask: Tensor  # [S, C] bool: duplicate candidates, ranked last (reference dedup semantics)
    num_users: int
    num_items: int

    @property
    def series(self) -> int:
        return self.test_items.shape[0]


def _channel_feature(spec: FeatureSpec, channel: str) -> str:
    names = spec.channel(channel)
    if len(names) != 1:
        raise FeatureSpecError(
            f"{spec.yaml_path}: channel_spec.{channel} must hold exactly one feature, got {names}"
        )
    return names[0]


def load(data_dir: Path, spec_file: str = "feature_spec.yaml", device: torch.device | str = "cpu") -> NcfData:
    """Read a prepared dataset (npy from ncf.prepare_data, or the reference's torch_tensor chunks) and check
    the NCF contract, with errors that name the spec and the problem."""
    spec = FeatureSpec.from_yaml(Path(data_dir) / spec_file)
    user, item, label = (_channel_feature(spec, c) for c in CHANNELS)
    num_users, num_items = spec.cardinality(user), spec.cardinality(item)
    per_series = spec.metadata.get("test_samples_per_series")
    where = spec.yaml_path
    if not isinstance(per_series, int) or isinstance(per_series, bool) or per_series < 1:
        raise FeatureSpecError(
            f"{where}: metadata.test_samples_per_series must be a positive int, got {per_series!r}"
        )
    arrays = {}
    for mapping in ("train", "test"):
        cols = spec.read_mapping(mapping, [user, item, label])
        for name, limit in ((user, num_users), (item, num_items)):
            values = cols[name]
            if len(values) and (values.min() < 0 or values.max() >= limit):
                raise FeatureSpecError(
                    f"{where}: {mapping} ids of '{name}' must lie in [0, {limit}) (its cardinality), "
                    f"found [{values.min()}, {values.max()}]"
                )
        arrays[mapping] = cols
    test = arrays["test"]
    if len(test[label]) == 0 or len(test[label]) % per_series:
        raise FeatureSpecError(
            f"{where}: the test mapping has {len(test[label])} rows, not a positive multiple of "
            f"test_samples_per_series={per_series}"
        )
    positives = (test[label].reshape(-1, per_series) != 0).sum(1)
    if (bad := np.flatnonzero(positives != 1)).size:
        raise FeatureSpecError(
            f"{where}: test series {bad[0]} has {positives[bad[0]]} positives; every series needs exactly one "
            f"({bad.size} series are affected)"
        )

    def to_dev(a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.array(a)).to(device=device, dtype=dtype)  # copy: memmaps are read-only

    train = arrays["train"]
    test_items = to_dev(test[item], torch.int64).view(-1, per_series)
    test_labels = to_dev(test[label], torch.float32).view(-1, per_series)
    _, mask = duplicate_mask(test_items, test_labels)
    # int32 ids halve device memory (19.9M train rows at ml-20m); embeddings accept them directly.
    return NcfData(
        train_users=to_dev(train[user], torch.int32),
        train_items=to_dev(train[item], torch.int32),
        train_labels=to_dev(train[label], torch.float32),
        test_users=to_dev(test[user], torch.int32).view(-1, per_series),
        test_items=test_items.to(torch.int32),
        test_labels=test_labels,
        test_mask=mask,
        num_users=num_users,
        num_items=num_items,
    )


def steps_per_epoch(train_rows: int, negatives: int, global_batch: int) -> int:
    """The last partial global batch is dropped (reference behaviour; keeps shapes static)."""
    return train_rows * (1 + negatives) // global_batch


def epoch_batches(
    data: NcfData, negatives: int, global_batch: int, rank: int, world_size: int, generator: torch.Generator
) -> Iterator[NcfBatch]:
    """One epoch of [positives; fresh negatives] under ONE global permutation shared by all ranks.

    Every rank draws the same negatives and permutation from an identically seeded generator, and takes
    its contiguous slice of each global batch. Unlike the reference (which slices the unshuffled epoch
    tensor per rank, so rank 0 sees only positives and later ranks only negatives), every rank's batch is
    a random 1:n mix, so per-rank losses are meaningful and the result does not depend on the rank count
    beyond float summation order.

    Negatives are "approximate" as in the reference: items uniform over [0, num_items), no exclusion
    (about 0.5% are true positives at ml-20m; exact rejection would need a dense user x item mask).
    Negative row j (0-based) pairs with the user of training row j mod N, like the reference's stacked
    repeat of the user column, so training row r maps to index r mod N for positives and negatives alike.
    """
    n = data.train_users.numel()
    device = data.train_users.device
    total = n * (1 + negatives)
    local = global_batch // world_size
    neg_items = torch.randint(0, data.num_items, (n * negatives,), generator=generator, device=device)
    neg_items = neg_items.to(data.train_items.dtype)
    perm = torch.randperm(total, generator=generator, device=device)
    for step in range(steps_per_epoch(n, negatives, global_batch)):
        start = step * global_batch + rank * local
        idx = perm[start : start + local]
        row = idx % n
        positive = idx < n
        items = data.train_items[row]
        if negatives:
            items = torch.where(positive, items, neg_items[(idx - n).clamp_min(0)])
        yield NcfBatch(
            users=data.train_users[row],
            items=items,
            labels=torch.where(positive, data.train_labels[row], 0.0),
        )
