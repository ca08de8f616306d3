from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from common.feature_spec import FeatureSpecError
from ncf import data as ncf_data


def _data(n: int = 50, items: int = 20) -> ncf_data.NcfData:
    g = torch.Generator().manual_seed(0)
    return ncf_data.NcfData(
        train_users=torch.arange(n, dtype=torch.int32) % 10,
        train_items=torch.randint(0, items, (n,), generator=g, dtype=torch.int32),
        train_labels=torch.ones(n),
        test_users=torch.zeros(1, 3, dtype=torch.int32), test_items=torch.zeros(1, 3, dtype=torch.int32),
        test_labels=torch.tensor([[1.0, 0, 0]]), test_mask=torch.zeros(1, 3, dtype=torch.bool),
        num_users=10, num_items=items,
    )  # fmt: skip


def test_epoch_has_every_positive_once_and_n_negatives_each() -> None:
    data = _data()
    batches = list(ncf_data.epoch_batches(data, 4, 25, 0, 1, torch.Generator().manual_seed(1)))
    assert len(batches) == ncf_data.steps_per_epoch(50, 4, 25) == 10  # 250 rows / 25, nothing dropped
    labels = torch.cat([b.labels for b in batches])
    users = torch.cat([b.users for b in batches])
    assert int(labels.sum()) == 50 and labels.numel() == 250
    # every training row's user appears 5 times (1 positive + 4 negatives), as the reference's repeat
    assert torch.equal(torch.bincount(users.long()), torch.full((10,), 25))
    pos = labels == 1
    pairs = sorted(zip(users[pos].tolist(), torch.cat([b.items for b in batches])[pos].tolist()))
    assert pairs == sorted(zip(data.train_users.tolist(), data.train_items.tolist()))


def test_ranks_take_slices_of_one_global_shuffle() -> None:
    """2 ranks together see exactly the single-rank global batches: shuffling is across ranks."""
    data = _data()
    one = list(ncf_data.epoch_batches(data, 4, 20, 0, 1, torch.Generator().manual_seed(3)))
    r0 = list(ncf_data.epoch_batches(data, 4, 20, 0, 2, torch.Generator().manual_seed(3)))
    r1 = list(ncf_data.epoch_batches(data, 4, 20, 1, 2, torch.Generator().manual_seed(3)))
    assert len(one) == len(r0) == len(r1) == 12  # 250 // 20, the partial batch dropped
    for a, b, c in zip(one, r0, r1):
        assert torch.equal(a.items, torch.cat([b.items, c.items]))
        assert torch.equal(a.labels, torch.cat([b.labels, c.labels]))
    # each rank gets a mix of positives and negatives (the reference gave rank 0 only positives)
    assert 0 < torch.cat([b.labels for b in r1]).mean() < 1


def test_no_negatives() -> None:
    batches = list(ncf_data.epoch_batches(_data(), 0, 10, 0, 1, torch.Generator().manual_seed(0)))
    assert len(batches) == 5 and all(bool(b.labels.all()) for b in batches)


def _rewrite_spec(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).symlink_to(f)
    (dst / "feature_spec.yaml").unlink()
    spec = yaml.safe_load((src / "feature_spec.yaml").read_text())
    edit(spec)
    (dst / "feature_spec.yaml").write_text(yaml.safe_dump(spec))
    return dst


def test_load_checks_the_ncf_contract(movielens, tmp_path: Path) -> None:
    _, prepared = movielens
    data = ncf_data.load(prepared)
    assert data.test_items.shape[1] == 31 and data.series == data.num_users
    assert bool((data.test_labels.sum(1) == 1).all())
    cases = {
        "two": (lambda s: s["channel_spec"].update(user_ch=["user", "item"]), "exactly one feature"),
        "card": (
            lambda s: s["feature_spec"]["item"].update(cardinality=5),
            r"ids of 'item' must lie in \[0, 5\)",
        ),
        "series": (lambda s: s["metadata"].update(test_samples_per_series=7), "not a positive multiple"),
        "chan": (lambda s: s["channel_spec"].pop("label_ch"), "no such channel"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(FeatureSpecError, match=message):
            ncf_data.load(_rewrite_spec(prepared, tmp_path / name, edit))


def test_load_rejects_series_without_exactly_one_positive(movielens, tmp_path: Path) -> None:
    _, prepared = movielens
    d = _rewrite_spec(prepared, tmp_path / "labels", lambda s: None)
    labels = np.load(prepared / "test_data_1.npy").copy()
    labels[31 * 2 + 5] = 1  # a second positive in series 2
    (d / "test_data_1.npy").unlink()
    np.save(d / "test_data_1.npy", labels)
    with pytest.raises(FeatureSpecError, match="test series 2 has 2 positives"):
        ncf_data.load(d)
