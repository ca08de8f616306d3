"""DLRM data layer: exact rows by byte range, disjoint rank shards, prefetch, channel validation, synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dlrm import data as dlrm_data
from tests.dlrm.conftest import write_dataset

CARDS = (5, 300, 70000)  # int8, int16, int32 files


def _arrays(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    numerical = rng.random((rows, 13)).astype(np.float16)
    categorical = np.stack([rng.integers(0, c, rows) for c in CARDS], axis=1)
    return numerical, categorical, rng.random(rows) < 0.3


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, tuple]:
    train = _arrays(1000)
    write_dataset(tmp_path, {"train": train, "test": _arrays(333, 1)}, CARDS)
    return tmp_path, train


def _source(path: Path, rank: int = 0, world: int = 1, depth: int = 2) -> dlrm_data.DiskSource:
    return dlrm_data.DiskSource(dlrm_data.open_dataset(path), rank, world, torch.device("cpu"), depth)


def test_reader_returns_the_exact_rows(small) -> None:
    path, (numerical, categorical, label) = small
    ds = dlrm_data.open_dataset(path)
    assert ds.cardinalities == CARDS and ds.num_numerical == 13 and ds.split("train").rows == 1000
    assert [d.name for d in ds.split("train").categorical_dtypes] == ["int8", "int16", "int32"]
    batch = dlrm_data.BatchReader(ds.split("train"), 13, CARDS, pin=False).read(123, 456)
    assert torch.equal(batch.numerical, torch.from_numpy(numerical[123:456]))
    assert torch.equal(batch.categorical.long(), torch.from_numpy(categorical[123:456]))
    assert torch.equal(batch.label, torch.from_numpy(label[123:456]))
    on_device = batch.to_device(torch.device("cpu"))
    assert on_device.numerical.dtype == torch.float32 and on_device.categorical.dtype == torch.int64
    assert on_device.label.dtype == torch.float32


def test_ranks_read_disjoint_slices_of_every_global_batch(small) -> None:
    path, (numerical, categorical, label) = small
    seen = {}
    for rank in range(3):
        batches = list(_source(path, rank, 3).train_batches(300, [2, 0, 1]))
        assert len(batches) == 3 and [len(b) for b in batches] == [100] * 3
        seen[rank] = torch.cat([b.categorical for b in batches])
    # global batch i of 300 rows is split 100/100/100 in rank order; the 100 rows past 900 are dropped
    order = np.concatenate(
        [np.arange(i * 300 + r * 100, i * 300 + r * 100 + 100) for r in range(3) for i in (2, 0, 1)]
    )
    assert torch.equal(torch.cat([seen[r] for r in range(3)]), torch.from_numpy(categorical[order]))


def test_eval_batches_cover_every_row_once_with_equal_batch_counts(small) -> None:
    path, _ = small
    test = dlrm_data.open_dataset(path).split("test")
    expected = np.fromfile(test.categorical[1], dtype=np.int16)
    parts = {r: list(_source(path, r, 2).eval_batches("test", 100)) for r in range(2)}
    assert len(parts[0]) == len(parts[1]) == 4  # 333 rows: 100, 100, 100, 33
    got = torch.cat([torch.cat([parts[0][i].categorical, parts[1][i].categorical]) for i in range(4)])
    assert torch.equal(got[:, 1].long(), torch.from_numpy(expected).long())
    assert [len(b) for b in parts[0]] == [50, 50, 50, 17] and [len(b) for b in parts[1]] == [50, 50, 50, 16]


def test_batch_order_is_seeded_per_epoch() -> None:
    assert dlrm_data.batch_order(5, False, 1, 0) == [0, 1, 2, 3, 4]
    a, b = dlrm_data.batch_order(50, True, 1, 0), dlrm_data.batch_order(50, True, 1, 1)
    assert sorted(a) == list(range(50)) and a != b and a == dlrm_data.batch_order(50, True, 1, 0)


def test_prefetch_reraises_loader_errors_and_stops_early() -> None:
    def load(i: int) -> dlrm_data.DlrmBatch:
        if i == 3:
            raise OSError("disk gone")
        return dlrm_data.DlrmBatch(torch.zeros(1, 13), torch.zeros(1, 2, dtype=torch.int32), torch.zeros(1))

    it = dlrm_data.prefetch(((i,) for i in range(10)), load, 2, torch.device("cpu"))
    assert len(next(it)) == 1
    with pytest.raises(OSError, match="disk gone"):
        list(it)
    early = dlrm_data.prefetch(((i,) for i in range(3)), load, 1, torch.device("cpu"))
    next(early)
    early.close()  # must not hang on the full queue


def test_reference_feature_names_are_accepted(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"train": _arrays(64), "test": _arrays(64)}, CARDS, names="reference")
    assert dlrm_data.open_dataset(tmp_path).cardinalities == CARDS


def _edit_spec(path: Path, edit) -> None:
    spec_path = path / "feature_spec.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    edit(spec)
    spec_path.write_text(yaml.safe_dump(spec))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s["channel_spec"].pop("label"), "channel_spec lacks \\['label'\\]"),
        (lambda s: s["feature_spec"]["num_3"].update(dtype="float32"), "numerical features must be float16"),
        (lambda s: s["feature_spec"]["cat_1"].update(dtype="float32"), "cat_1 must have an integer dtype"),
        (lambda s: s["feature_spec"]["label"].update(dtype="int8"), "exactly one bool feature"),
        (lambda s: s["source_spec"].pop("test"), "needs mappings 'train' and 'test'"),
        (lambda s: s["channel_spec"]["numerical"].reverse(), "one chunk in channel order"),
        (lambda s: s["feature_spec"]["cat_2"].pop("cardinality"), "cat_2.cardinality: missing"),
    ],
)
def test_bad_specs_name_the_problem(small, edit, message: str) -> None:
    path, _ = small
    _edit_spec(path, edit)
    with pytest.raises(dlrm_data.DataError if "cardinality" not in message else ValueError, match=message):
        dlrm_data.open_dataset(path)


def test_bad_files_name_the_file(small) -> None:
    path, _ = small
    with open(path / "train" / "cat_1.bin", "ab") as f:
        f.write(b"\0\0\0\0")  # two extra int16 rows
    with pytest.raises(dlrm_data.DataError, match="different row counts .*cat_1.bin: 1002"):
        dlrm_data.open_dataset(path)
    with open(path / "train" / "label.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(dlrm_data.DataError, match="label.bin"):
        dlrm_data.open_dataset(path)


def test_out_of_range_ids_are_caught_when_read(small) -> None:
    path, _ = small
    ids = np.fromfile(path / "test" / "cat_0.bin", dtype=np.int8)
    ids[200] = 9  # cardinality 5
    ids.tofile(path / "test" / "cat_0.bin")
    batches = _source(path).eval_batches("test", 100)
    assert len(next(batches)) == 100
    with pytest.raises(dlrm_data.DataError, match="cat_0.bin: rows 200..299 hold ids outside \\[0, 5\\)"):
        list(batches)


def test_synthetic_data_is_deterministic_rank_independent_and_in_range() -> None:
    gen = dlrm_data.SyntheticCriteo((10, 1000, 3), seed=4)
    a, prob = gen.sample(7, 4096, torch.device("cpu"))
    b, _ = gen.sample(7, 4096, torch.device("cpu"))
    assert torch.equal(a.categorical, b.categorical) and torch.equal(a.label, b.label)
    assert a.categorical.min() >= 0 and torch.all(a.categorical.max(0).values < torch.tensor([10, 1000, 3]))
    assert 0.1 < a.label.mean() < 0.5 and torch.all((prob > 0) & (prob < 1))
    halves = [next(gen.batches([7], lambda k: 4096, r, 2, torch.device("cpu"))) for r in range(2)]
    assert torch.equal(torch.cat([h.categorical for h in halves]), a.categorical)
    source = dlrm_data.SyntheticSource(gen, 10000, 5000, 0, 1, torch.device("cpu"))
    assert [n for _, n in source.eval_keys("test", 2048)] == [2048, 2048, 904]
    test_ids = torch.cat([x.categorical for x in source.eval_batches("test", 2048)])
    valid_ids = torch.cat([x.categorical for x in source.eval_batches("validation", 2048)])
    assert not torch.equal(test_ids, valid_ids)
