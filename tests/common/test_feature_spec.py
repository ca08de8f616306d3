"""Unit tests for common.feature_spec: YAML round trip, every chunk reader, and each validation error."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from common.feature_spec import (
    CHUNK_TYPES,
    FeatureSpec,
    FeatureSpecError,
    dtype_name,
    parse_dtype,
    smallest_int_dtype,
    to_torch_dtype,
)
from common.tiny_dataset import write_tiny_dataset

N_USERS, N_ITEMS, N_ROWS = 7, 11, 12


def ncf_spec_dict() -> dict:
    """The ml-20m spec DLE's NCF convert.py writes, with toy cardinalities."""
    return {
        "channel_spec": {"item_ch": ["item"], "label_ch": ["label"], "user_ch": ["user"]},
        "feature_spec": {
            "item": {"cardinality": N_ITEMS, "dtype": "torch.int64"},
            "label": {"dtype": "torch.float32"},
            "user": {"cardinality": N_USERS, "dtype": "torch.int64"},
        },
        "metadata": {"test_samples_per_series": 3},
        "source_spec": {
            mapping: [
                {"features": ["user", "item"], "files": [f"{mapping}_data_0.pt"], "type": "torch_tensor"},
                {"features": ["label"], "files": [f"{mapping}_data_1.pt"], "type": "torch_tensor"},
            ]
            for mapping in ("test", "train")
        },
    }


@pytest.fixture
def ncf_dir(tmp_path: Path) -> Path:
    write_tiny_dataset(ncf_spec_dict(), tmp_path, N_ROWS)
    return tmp_path


def write_yaml(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d))
    return path


def expect_error(path: Path, pattern: str, **kwargs: bool) -> None:
    """from_yaml must fail with a message matching `pattern` that also names the yaml file."""
    with pytest.raises(FeatureSpecError, match=pattern) as info:
        FeatureSpec.from_yaml(path, **kwargs)
    assert str(path) in str(info.value)


# ---- round trip ---------------------------------------------------------------------------------


def test_round_trip_keeps_sections_sorted_keys_and_relative_paths(tmp_path, monkeypatch):
    data_dir, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    written = write_tiny_dataset(ncf_spec_dict(), data_dir, N_ROWS).columns
    path = FeatureSpec.from_dict(ncf_spec_dict(), data_dir).to_yaml()

    assert path == data_dir / "feature_spec.yaml"
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(  # atomic write left no temp file
        ["feature_spec.yaml", "test_data_0.pt", "test_data_1.pt", "train_data_0.pt", "train_data_1.pt"]
    )
    text = path.read_text()
    top_level = [line.split(":")[0] for line in text.splitlines() if re.match(r"\w", line)]
    assert top_level == ["channel_spec", "feature_spec", "metadata", "source_spec"]
    assert text.index("cardinality: 11") < text.index("dtype: torch.int64")  # nested keys sorted too
    assert "- train_data_0.pt" in text and str(data_dir) not in text

    monkeypatch.chdir(elsewhere)  # chunk paths resolve against the yaml's directory, not the CWD
    spec = FeatureSpec.from_yaml(Path("..") / "data" / "feature_spec.yaml")
    assert spec.to_dict() == ncf_spec_dict()
    assert spec.base_directory == data_dir
    assert spec.chunk_paths(spec.source_spec["train"][0]) == [data_dir / "train_data_0.pt"]
    for mapping, arrays in written.items():
        read = spec.read_mapping(mapping)
        assert list(read) == ["user", "item", "label"]
        for name, expected in arrays.items():
            np.testing.assert_array_equal(read[name], expected)
            assert read[name].dtype == expected.dtype


def test_to_dict_gives_plain_python_types(tmp_path):
    spec = FeatureSpec.from_dict(ncf_spec_dict(), tmp_path)
    spec.feature_spec["user"]["cardinality"] = np.int64(N_USERS)
    spec.feature_spec["item"]["dtype"] = torch.int64
    spec.metadata["test_samples_per_series"] = np.int32(3)
    d = spec.to_dict()
    assert type(d["feature_spec"]["user"]["cardinality"]) is int
    assert d["feature_spec"]["item"]["dtype"] == "torch.int64"
    assert d == ncf_spec_dict()
    yaml.safe_dump(d)


def test_yaml_anchors_aliases_and_null_entries_load(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        """
channel_spec:
  label: [label]
  numerical: &id001
  - num_0
  - num_1
feature_spec:
  label:
  num_0: {dtype: float16}
  num_1: {dtype: float16}
source_spec:
  train:
  - {type: split_binary, features: *id001, files: [train/numerical.bin]}
  - {type: split_binary, features: [label], files: [train/label.bin]}
"""
    )
    spec = FeatureSpec.from_yaml(path, check_files=False)
    assert spec.channel("numerical") == spec.source_spec["train"][0]["features"] == ["num_0", "num_1"]
    assert spec.feature_spec["label"] == {}
    assert spec.metadata == {}
    reloaded = FeatureSpec.from_yaml(spec.to_yaml(tmp_path / "out.yaml"), check_files=False)
    assert reloaded.to_dict() == spec.to_dict()


# ---- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32"])
def test_torch_and_numpy_dtype_spellings_agree(name):
    assert parse_dtype(f"torch.{name}") == parse_dtype(name) == np.dtype(name)
    assert dtype_name(f"torch.{name}") == dtype_name(getattr(torch, name)) == name
    assert to_torch_dtype(np.dtype(name)) is getattr(torch, name)


@pytest.mark.parametrize("name", ["int128", "float", "torch.long", "string", ""])
def test_parse_dtype_rejects_unknown_names(name):
    with pytest.raises(FeatureSpecError, match="unknown dtype"):
        parse_dtype(name)


def test_bfloat16_has_no_numpy_equivalent():
    with pytest.raises(FeatureSpecError, match="no numpy equivalent"):
        parse_dtype("torch.bfloat16")


def test_feature_accessors(ncf_dir):
    spec = FeatureSpec.from_yaml(FeatureSpec.from_dict(ncf_spec_dict(), ncf_dir).to_yaml())
    assert spec.dtype("user") == np.dtype("int64") and spec.torch_dtype("label") is torch.float32
    assert spec.cardinality("item") == N_ITEMS
    assert spec.channel("user_ch") == ["user"]
    with pytest.raises(FeatureSpecError, match=r"channel_spec\.nope: no such channel.*'item_ch'"):
        spec.channel("nope")
    with pytest.raises(FeatureSpecError, match=r"feature_spec\.label\.cardinality: missing"):
        spec.cardinality("label")
    with pytest.raises(FeatureSpecError, match=r"feature_spec\.ghost: not declared"):
        spec.dtype("ghost")
    spec.feature_spec["item"] = {}
    with pytest.raises(FeatureSpecError, match=r"feature_spec\.item\.dtype: missing"):
        spec.dtype("item")


@pytest.mark.parametrize(
    ("cardinality", "expected"),
    [
        (1, "int8"),
        (127, "int8"),
        (128, "int8"),  # ids 0..127 fit int8
        (129, "int16"),
        (2**15, "int16"),
        (2**15 + 1, "int32"),
        (2**31, "int32"),
        (2**31 + 1, "int64"),
    ],
)
def test_smallest_int_dtype_boundaries(cardinality, expected):
    assert smallest_int_dtype(cardinality) == np.dtype(expected)


@pytest.mark.parametrize("cardinality", [0, -3, True, 12.5, 2**63 + 1])
def test_smallest_int_dtype_rejects_bad_cardinality(cardinality):
    with pytest.raises(FeatureSpecError, match="cardinality"):
        smallest_int_dtype(cardinality)


# ---- reading every chunk type -------------------------------------------------------------------


def test_read_mapping_every_chunk_type_aligned(tmp_path):
    """One mapping whose column groups use every chunk type; each returns exactly what was written."""
    rng = np.random.default_rng(1)
    n, half = 10, 6
    cols = {
        "user": rng.integers(0, 50, n).astype(np.int64),
        "item": rng.integers(0, 50, n).astype(np.int64),
        "score": rng.random(n).astype(np.float32),
        "seq": rng.random((n, 2)).astype(np.float32),
        "cat_0": rng.integers(-128, 128, n).astype(np.int8),
        "num_0": rng.random(n).astype(np.float16),
        "num_1": rng.random(n).astype(np.float16),
        "label": rng.integers(0, 2, n).astype(bool),
        "a": rng.integers(0, 1000, n).astype(np.int32),
        "b": rng.random(n),
        "hist": rng.integers(0, 9, (n, 3)).astype(np.int64),
        "flag": rng.integers(0, 2, n).astype(bool),
    }
    torch.save(torch.from_numpy(np.stack([cols["user"], cols["item"]], axis=1)), tmp_path / "ui.pt")
    dense = np.concatenate([cols["score"][:, None], cols["seq"]], axis=1)
    np.save(tmp_path / "dense_0.npy", dense[:half])
    np.save(tmp_path / "dense_1.npy", dense[half:])
    cols["cat_0"].tofile(tmp_path / "cat_0.bin")
    np.stack([cols["num_0"], cols["num_1"]], axis=1).tofile(tmp_path / "numerical.bin")
    cols["label"].tofile(tmp_path / "label.bin")
    frame = pd.DataFrame({"a": cols["a"], "b": cols["b"]})
    frame[:half].to_csv(tmp_path / "part_0.csv", header=False, index=False, float_format="%.17g")
    frame[half:].to_csv(tmp_path / "part_1.csv", header=False, index=False, float_format="%.17g")
    hist_type = pa.list_(pa.int64(), 3)
    table = pa.table({"hist": pa.array(list(cols["hist"]), hist_type), "flag": cols["flag"]})
    pq.write_table(table.slice(0, half), tmp_path / "p0.parquet")
    pq.write_table(table.slice(half), tmp_path / "p1.parquet")

    dtypes = {name: dtype_name(array.dtype) for name, array in cols.items()}
    feature_spec = {name: {"dtype": dtype} for name, dtype in dtypes.items()}
    feature_spec["seq"]["dimensions"] = [2]
    feature_spec["hist"]["dimensions"] = [3]
    chunks = [
        ("torch_tensor", ["user", "item"], ["ui.pt"]),
        ("npy", ["score", "seq"], ["dense_0.npy", "dense_1.npy"]),
        ("split_binary", ["cat_0"], ["cat_0.bin"]),
        ("split_binary", ["num_0", "num_1"], ["numerical.bin"]),
        ("split_binary", ["label"], ["label.bin"]),
        ("csv", ["a", "b"], ["part_0.csv", "part_1.csv"]),
        ("parquet", ["hist", "flag"], ["p0.parquet", "p1.parquet"]),
    ]
    assert {chunk[0] for chunk in chunks} == set(CHUNK_TYPES)
    d = {
        "feature_spec": feature_spec,
        "source_spec": {"train": [{"type": t, "features": f, "files": p} for t, f, p in chunks]},
        "channel_spec": {"everything": list(cols)},
    }
    spec = FeatureSpec.from_yaml(write_yaml(tmp_path / "feature_spec.yaml", d))

    read = spec.read_mapping("train")
    assert sorted(read) == sorted(cols)
    for name, expected in cols.items():
        np.testing.assert_array_equal(read[name], expected, err_msg=name)
        assert read[name].dtype == expected.dtype and read[name].shape == expected.shape, name
    subset = spec.read_mapping("train", ["num_1", "user", "hist"])
    assert list(subset) == ["num_1", "user", "hist"]
    np.testing.assert_array_equal(subset["hist"], cols["hist"])


def test_read_mapping_one_dimensional_files(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(5, dtype=np.int32))
    torch.save(torch.arange(5), tmp_path / "y.pt")
    d = {
        "feature_spec": {"x": {"dtype": "int32"}, "y": {}},
        "source_spec": {
            "m": [
                {"type": "npy", "features": ["x"], "files": ["x.npy"]},
                {"type": "torch_tensor", "features": ["y"], "files": ["y.pt"]},
            ]
        },
        "channel_spec": {},
    }
    read = FeatureSpec.from_yaml(write_yaml(tmp_path / "s.yaml", d)).read_mapping("m")
    np.testing.assert_array_equal(read["x"], np.arange(5))
    np.testing.assert_array_equal(read["y"], np.arange(5))


# ---- validation errors --------------------------------------------------------------------------


def _chunk(d: dict, index: int) -> dict:
    return d["source_spec"]["train"][index]


BAD_SPECS: list[tuple[str, Callable[[dict], object], str]] = [
    ("missing section", lambda d: d.pop("channel_spec"), r"missing required section.*channel_spec"),
    ("unknown key", lambda d: d.update(extras=1), r"unknown top-level key.*extras"),
    (
        "channel feature undeclared",
        lambda d: d["channel_spec"].update(user_ch=["usr"]),
        r"channel_spec\.user_ch\[0\]: feature 'usr' is not declared",
    ),
    (
        "channel not a list",
        lambda d: d["channel_spec"].update(user_ch="user"),
        r"channel_spec\.user_ch: expected",
    ),
    (
        "chunk feature undeclared",
        lambda d: _chunk(d, 1).update(features=["lbl"]),
        r"source_spec\.train\[1\]\.features\[0\]: feature 'lbl' is not declared",
    ),
    (
        "empty chunk features",
        lambda d: _chunk(d, 1).update(features=[]),
        r"source_spec\.train\[1\]\.features: expected a non-empty list",
    ),
    (
        "unknown chunk type",
        lambda d: _chunk(d, 0).update(type="tfrecord"),
        r"source_spec\.train\[0\]\.type: expected one of .*got 'tfrecord'",
    ),
    (
        "file missing",
        lambda d: _chunk(d, 1).update(files=["nope.pt"]),
        r"source_spec\.train\[1\]\.files\[0\]: file .*nope\.pt does not exist",
    ),
    (
        "files not a list",
        lambda d: _chunk(d, 1).update(files="a.pt"),
        r"source_spec\.train\[1\]\.files: expected",
    ),
    (
        "no chunks",
        lambda d: d["source_spec"].update(test=[]),
        r"source_spec\.test: expected a non-empty list",
    ),
    (
        "duplicate feature in mapping",
        lambda d: _chunk(d, 1).update(features=["label", "user"]),
        r"source_spec\.train\[1\]\.features: feature 'user' is already in source_spec\.train\[0\]",
    ),
    (
        "torch_tensor with two files",
        lambda d: _chunk(d, 0).update(files=["train_data_0.pt", "test_data_0.pt"]),
        r"source_spec\.train\[0\]\.files: a torch_tensor chunk holds one file, got 2",
    ),
    (
        "unknown dtype",
        lambda d: d["feature_spec"]["label"].update(dtype="torch.float128"),
        r"feature_spec\.label\.dtype: unknown dtype 'torch\.float128'",
    ),
    (
        "cardinality float",
        lambda d: d["feature_spec"]["item"].update(cardinality=12.5),
        r"feature_spec\.item\.cardinality: expected a positive integer, got 12\.5",
    ),
    (
        "cardinality string",
        lambda d: d["feature_spec"]["item"].update(cardinality="12"),
        r"feature_spec\.item\.cardinality: expected a positive integer, got '12' \(str\)",
    ),
    (
        "cardinality bool",
        lambda d: d["feature_spec"]["item"].update(cardinality=True),
        r"feature_spec\.item\.cardinality: expected a positive integer, got True",
    ),
    (
        "cardinality auto",
        lambda d: d["feature_spec"]["user"].update(cardinality="auto"),
        r"feature_spec\.user\.cardinality: 'auto' is only valid in transcoder input",
    ),
    (
        "bad dimensions",
        lambda d: d["feature_spec"]["label"].update(dimensions=[0]),
        r"feature_spec\.label\.dimensions: expected a list of positive integers",
    ),
    (
        "feature entry not a mapping",
        lambda d: d["feature_spec"].update(label=3),
        r"feature_spec\.label: expected",
    ),
    ("section not a mapping", lambda d: d.update(metadata=[1]), r"metadata: expected a mapping"),
]


@pytest.mark.parametrize(
    ("mutate", "pattern"), [case[1:] for case in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_validation_errors_name_the_key(ncf_dir, mutate, pattern):
    d = copy.deepcopy(ncf_spec_dict())
    mutate(d)
    expect_error(write_yaml(ncf_dir / "feature_spec.yaml", d), pattern)


def test_auto_cardinality_only_with_allow_auto(ncf_dir):
    d = ncf_spec_dict()
    d["feature_spec"]["user"]["cardinality"] = "auto"
    path = write_yaml(ncf_dir / "feature_spec.yaml", d)
    expect_error(path, "only valid in transcoder input")
    spec = FeatureSpec.from_yaml(path, allow_auto=True)
    with pytest.raises(FeatureSpecError, match=r"feature_spec\.user\.cardinality: 'auto' is only valid"):
        spec.cardinality("user")


def test_check_files_false_skips_existence(tmp_path):
    path = write_yaml(tmp_path / "feature_spec.yaml", ncf_spec_dict())
    expect_error(path, r"source_spec\.test\[0\]\.files\[0\]: file .* does not exist")
    assert FeatureSpec.from_yaml(path, check_files=False).cardinality("user") == N_USERS


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("feature_spec: {a: [1, 2\n", r"invalid YAML at line \d+, column \d+"),
        ("", "empty file"),
        ("# only a comment\n", "empty file"),
        ("- 1\n- 2\n", "top level is a list"),
    ],
)
def test_unreadable_yaml(tmp_path, text, pattern):
    path = tmp_path / "feature_spec.yaml"
    path.write_text(text)
    expect_error(path, pattern)


def test_missing_yaml_file(tmp_path):
    expect_error(tmp_path / "absent.yaml", "cannot read feature spec")


# ---- read-time errors ---------------------------------------------------------------------------


def _binary_spec(tmp_path: Path, label_rows: int, numerical_bytes: bytes) -> FeatureSpec:
    (tmp_path / "numerical.bin").write_bytes(numerical_bytes)
    np.zeros(label_rows, dtype=bool).tofile(tmp_path / "label.bin")
    d = {
        "feature_spec": {"n0": {"dtype": "float16"}, "n1": {"dtype": "float16"}, "label": {"dtype": "bool"}},
        "source_spec": {
            "train": [
                {"type": "split_binary", "features": ["n0", "n1"], "files": ["numerical.bin"]},
                {"type": "split_binary", "features": ["label"], "files": ["label.bin"]},
            ]
        },
        "channel_spec": {"numerical": ["n0", "n1"], "label": ["label"]},
    }
    return FeatureSpec.from_yaml(write_yaml(tmp_path / "feature_spec.yaml", d))


def test_split_binary_size_not_multiple_of_row(tmp_path):
    spec = _binary_spec(tmp_path, label_rows=2, numerical_bytes=bytes(10))  # 2.5 rows of 2 x float16
    pattern = r"source_spec\.train\[0\]\.files\[0\]: cannot read .*numerical\.bin.*"
    pattern += r"10 bytes is not a multiple of the row size 4"
    with pytest.raises(FeatureSpecError, match=pattern):
        spec.read_mapping("train")


def test_mismatched_chunk_row_counts(tmp_path):
    spec = _binary_spec(tmp_path, label_rows=3, numerical_bytes=np.zeros((2, 2), np.float16).tobytes())
    with pytest.raises(FeatureSpecError, match=r"source_spec\.train: chunks hold different row counts"):
        spec.read_mapping("train")
    assert len(spec.read_mapping("train", ["label"])["label"]) == 3  # a single chunk has nothing to align


def test_stored_dtype_must_match_declared(ncf_dir):
    d = ncf_spec_dict()
    d["feature_spec"]["label"]["dtype"] = "float64"
    spec = FeatureSpec.from_yaml(write_yaml(ncf_dir / "feature_spec.yaml", d))
    with pytest.raises(
        FeatureSpecError, match=r"source_spec\.test\[1\]\.files\[0\]: .* stores label as float32"
    ):
        spec.read_mapping("test")


def test_tensor_shape_must_match_features(ncf_dir):
    torch.save(torch.zeros(4, 3, dtype=torch.int64), ncf_dir / "train_data_0.pt")
    spec = FeatureSpec.from_yaml(write_yaml(ncf_dir / "feature_spec.yaml", ncf_spec_dict()))
    with pytest.raises(
        FeatureSpecError, match=r"source_spec\.train\[0\]\.files\[0\]: .*shape \[4, 3\], expected \[N, 2\]"
    ):
        spec.read_mapping("train")


@pytest.mark.parametrize(
    ("text", "pattern"), [("1,2\n3,4,5\n", r"line 2"), ("1,2,3\n", r"3 columns, expected 2"), ("", r"")]
)
def test_csv_errors_name_the_file(tmp_path, text, pattern):
    (tmp_path / "bad.csv").write_text(text)
    d = {
        "feature_spec": {"a": {"dtype": "int64"}, "b": {}},
        "source_spec": {"train": [{"type": "csv", "features": ["a", "b"], "files": ["bad.csv"]}]},
        "channel_spec": {},
    }
    spec = FeatureSpec.from_yaml(write_yaml(tmp_path / "feature_spec.yaml", d))
    with pytest.raises(
        FeatureSpecError, match=r"source_spec\.train\[0\]\.files\[0\]: cannot read .*bad\.csv"
    ) as info:
        spec.read_mapping("train")
    assert re.search(pattern, str(info.value))


def test_read_mapping_unknown_mapping_or_feature(ncf_dir):
    spec = FeatureSpec.from_yaml(write_yaml(ncf_dir / "feature_spec.yaml", ncf_spec_dict()))
    with pytest.raises(FeatureSpecError, match=r"source_spec\.valid: no such mapping.*'test', 'train'"):
        spec.read_mapping("valid")
    with pytest.raises(FeatureSpecError, match=r"features \['rating'\] are not stored"):
        spec.read_mapping("train", ["user", "rating"])
