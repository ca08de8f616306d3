"""common.tiny_dataset: what it writes reads back exactly through FeatureSpec's own readers, stays inside
each feature's cardinality and dtype, plants a learnable label, and refuses specs it cannot write."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from common.chunk_readers import CHUNK_TYPES
from common.feature_spec import FeatureSpec, FeatureSpecError
from common.metrics import roc_auc
from common.tiny_dataset import write_tiny_dataset


def every_type_spec() -> dict:
    """One spec using every chunk type, several files per chunk, a [2, 3]-dimension feature and many dtypes."""
    features = {
        "user": {"dtype": "torch.int64", "cardinality": 50},
        "item": {"dtype": "int64", "cardinality": 7},
        "dense": {"dtype": "float32", "dimensions": [2, 3]},
        "score": {"dtype": "float32"},
        "cat_0": {"dtype": "int8", "cardinality": 128},  # the largest id int8 holds
        "num_0": {"dtype": "float16"},
        "num_1": {"dtype": "float16"},
        "label": {"dtype": "bool"},
        "a": {"dtype": "uint8"},
        "b": {"dtype": "float64"},
        "flag": {"dtype": "bool"},
        "hist": {"dtype": "int32", "cardinality": 9, "dimensions": [4]},
        "f16": {"dtype": "float16"},
    }
    chunks = [
        ("torch_tensor", ["user", "item"], ["{m}/ui.pt"]),
        ("npy", ["dense", "score"], ["{m}/dense_0.npy", "{m}/dense_1"]),
        ("split_binary", ["cat_0"], ["{m}/cat_0.bin"]),
        ("split_binary", ["num_0", "num_1"], ["{m}/numerical_0.bin", "{m}/numerical_1.bin"]),
        ("split_binary", ["label"], ["{m}/label.bin"]),
        ("csv", ["a", "b", "flag"], ["{m}/part_0.csv", "{m}/part_1.csv", "{m}/part_2.csv"]),
        ("parquet", ["hist", "f16"], ["{m}/p0.parquet", "{m}/p1.parquet"]),
    ]
    source = {
        m: [{"type": t, "features": f, "files": [p.format(m=m) for p in paths]} for t, f, paths in chunks]
        for m in ("train", "test")
    }
    return {
        "feature_spec": features,
        "source_spec": source,
        "channel_spec": {"everything": list(features)},
        "metadata": {"note": "kept"},
    }


def dlrm_like_spec(cards: tuple[int, ...] = (5, 40, 300)) -> dict:
    numerical = [f"num_{i}" for i in range(3)]
    features = {n: {"dtype": "float16"} for n in numerical} | {"label": {"dtype": "bool"}}
    features |= {f"cat_{i}": {"dtype": "int16", "cardinality": c} for i, c in enumerate(cards)}
    source = {
        m: [
            {"type": "split_binary", "features": numerical, "files": [f"{m}/numerical.bin"]},
            {"type": "split_binary", "features": ["label"], "files": [f"{m}/label.bin"]},
            *[
                {"type": "split_binary", "features": [f"cat_{i}"], "files": [f"{m}/cat_{i}.bin"]}
                for i in range(len(cards))
            ],
        ]
        for m in ("train", "test")
    }
    channels = {
        "numerical": numerical,
        "categorical": [f"cat_{i}" for i in range(len(cards))],
        "label": ["label"],
    }
    return {"feature_spec": features, "source_spec": source, "channel_spec": channels}


def test_every_chunk_type_reads_back_exactly(tmp_path: Path) -> None:
    d = every_type_spec()
    assert {chunk["type"] for chunk in d["source_spec"]["train"]} == set(CHUNK_TYPES)
    written = write_tiny_dataset(d, tmp_path / "data", {"train": 11, "test": 5}, seed=3)

    spec = FeatureSpec.from_yaml(tmp_path / "data" / "feature_spec.yaml")
    assert spec.to_dict() == {**d, "metadata": {"note": "kept"}}  # the spec itself is written unchanged
    for mapping, rows in (("train", 11), ("test", 5)):
        read = spec.read_mapping(mapping)
        assert list(read) == list(written.columns[mapping])
        for name, expected in written.columns[mapping].items():
            np.testing.assert_array_equal(read[name], expected, err_msg=name)
            assert read[name].dtype == spec.dtype(name), name
            assert read[name].shape == (rows, *d["feature_spec"][name].get("dimensions", [])), name
    assert written.probability is None
    assert not (tmp_path / "data" / "train" / "dense_1.npy").exists()  # file names are kept as given


def test_values_stay_inside_cardinality_and_dtype(tmp_path: Path) -> None:
    written = write_tiny_dataset(every_type_spec(), tmp_path, 4000)
    features = every_type_spec()["feature_spec"]
    for name, column in written.columns["train"].items():
        card = features[name].get("cardinality")
        if card is not None:  # ids 0 .. card-1, and with 4000 rows every one of them occurs
            assert column.min() == 0 and column.max() == card - 1, name
        assert column.dtype == np.dtype(features[name]["dtype"].removeprefix("torch.")), name
    assert written.columns["train"]["a"].max() < 100  # free ints stay small
    assert written.columns["train"]["flag"].mean() == pytest.approx(0.5, abs=0.05)


def test_same_seed_same_bytes_other_seed_other_values(tmp_path: Path) -> None:
    def files(directory: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(directory.rglob("*.bin"))}

    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_tiny_dataset(dlrm_like_spec(), tmp_path / name, 64, seed=seed)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


def test_planted_label_is_learnable_across_mappings(tmp_path: Path) -> None:
    """The label follows the returned probability, and the train split alone predicts the test labels."""
    import torch

    d = dlrm_like_spec()
    written = write_tiny_dataset(FeatureSpec.from_dict(d, tmp_path), tmp_path / "data", 6000, label="label")
    train, test = written.columns["train"], written.columns["test"]
    for cols, prob in ((train, written.probability["train"]), (test, written.probability["test"])):
        assert cols["label"].dtype == np.bool_ and 0.2 < cols["label"].mean() < 0.8
        assert roc_auc(torch.from_numpy(prob), torch.from_numpy(cols["label"])) > 0.7
    # Per-id click rates of the train split, summed as logits, score the test split: the weights are shared.
    score = np.zeros(len(test["label"]))
    for i, card in enumerate((5, 40, 300)):
        ids = train[f"cat_{i}"].astype(np.int64)
        rate = (np.bincount(ids, train["label"], card) + 1) / (np.bincount(ids, minlength=card) + 2)
        score += np.log(rate / (1 - rate))[test[f"cat_{i}"].astype(np.int64)]
    assert roc_auc(torch.from_numpy(score), torch.from_numpy(test["label"])) > 0.65


def test_given_values_are_written_as_given(tmp_path: Path) -> None:
    """A recipe's own rows (here: float32 numbers for float16 features, int64 ids) go in cast, the rest random;
    rows of a mapping left out of `rows` come from its given arrays."""
    rng = np.random.default_rng(0)
    given = {
        "train": {
            "num_0": rng.random(30, dtype=np.float32),
            "cat_2": np.arange(30) * 10,
            "label": np.ones(30),
        },
        "test": {"cat_0": np.arange(12) % 5},
    }
    written = write_tiny_dataset(dlrm_like_spec(), tmp_path, {"train": 30}, given=given)
    read = written.spec.read_mapping("train")
    np.testing.assert_array_equal(read["num_0"], given["train"]["num_0"].astype(np.float16))
    np.testing.assert_array_equal(read["cat_2"], np.arange(30) * 10)
    assert read["cat_2"].dtype == np.int16 and read["label"].dtype == np.bool_ and read["label"].all()
    assert len(written.spec.read_mapping("test")["num_1"]) == 12


@pytest.mark.parametrize(
    ("given", "pattern"),
    [
        (
            {"train": {"cat_0": np.arange(10)}},
            r"given\['train'\]\['cat_0'\]: ids \[0, 9\] outside the cardinality \[0, 5\)",
        ),
        ({"train": {"cat_1": np.zeros((10, 2))}}, r"'cat_1'\]: shape \[10, 2\], expected \[10\]"),
        ({"valid": {"cat_1": np.zeros(10)}}, r"given\['valid'\]: the spec has no such mapping"),
        (
            {"train": {"label": np.zeros(10)}},
            r"'label'\]: not a stored feature of train \(or it is the planted label\)",
        ),
    ],
)
def test_refuses_bad_given_values(tmp_path: Path, given: dict, pattern: str) -> None:
    with pytest.raises(FeatureSpecError, match=pattern):
        write_tiny_dataset(dlrm_like_spec(), tmp_path / "out", 10, label="label", given=given)
    assert not (tmp_path / "out").exists()


def _mutated(change) -> dict:
    d = copy.deepcopy(dlrm_like_spec())
    change(d)
    return d


@pytest.mark.parametrize(
    ("spec", "kwargs", "pattern"),
    [
        (_mutated(lambda d: d["feature_spec"]["num_0"].pop("dtype")), {}, r"feature num_0 has no dtype"),
        (
            _mutated(lambda d: d["feature_spec"]["num_0"].update(dtype="float32")),
            {},
            r"source_spec\.train\[0\]: a split_binary chunk stores one array.*'float16', 'float32'",
        ),
        (
            _mutated(lambda d: d["feature_spec"]["cat_0"].update(dtype="int8", cardinality=1000)),
            {},
            r"feature cat_0: cardinality 1000 needs an integer dtype holding 999, got int8",
        ),
        (
            _mutated(lambda d: d["feature_spec"]["num_1"].update(cardinality=4)),
            {},
            r"feature num_1: cardinality 4 needs an integer dtype.*float16",
        ),
        (
            _mutated(lambda d: d["feature_spec"]["cat_1"].update(cardinality="auto")),
            {},
            r"feature_spec\.cat_1\.cardinality: 'auto' is only valid",
        ),
        (
            _mutated(lambda d: d["feature_spec"]["label"].update(dimensions=[2])),
            {"label": "label"},
            r"label 'label': expected a declared scalar feature",
        ),
        (dlrm_like_spec(), {"label": "clicked"}, r"label 'clicked': expected a declared scalar"),
        (dlrm_like_spec(), {"rows": {"train": 10}}, r"rows for source_spec\.test: .* got None"),
        (
            _mutated(lambda d: d["source_spec"]["test"][1].update(files=["l0.bin", "l1.bin", "l2.bin"])),
            {"rows": 2},
            r"source_spec\.test\[1\]: 3 files for 2 rows",
        ),
    ],
)
def test_refuses_what_it_cannot_write(tmp_path: Path, spec: dict, kwargs: dict, pattern: str) -> None:
    rows = kwargs.pop("rows", 10)
    with pytest.raises(FeatureSpecError, match=pattern):
        write_tiny_dataset(spec, tmp_path / "out", rows, **kwargs)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_never_overwrites(tmp_path: Path) -> None:
    write_tiny_dataset(dlrm_like_spec(), tmp_path, 8)
    before = (tmp_path / "train" / "cat_0.bin").read_bytes()
    with pytest.raises(FeatureSpecError, match=r"feature_spec\.yaml exists; the writer never overwrites"):
        write_tiny_dataset(dlrm_like_spec(), tmp_path, 8, seed=1)
    (tmp_path / "feature_spec.yaml").unlink()
    with pytest.raises(FeatureSpecError, match=r"train/numerical\.bin exists; the writer never overwrites"):
        write_tiny_dataset(dlrm_like_spec(), tmp_path, 8, seed=1)
    assert (tmp_path / "train" / "cat_0.bin").read_bytes() == before
