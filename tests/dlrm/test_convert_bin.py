"""NVIDIA's two on-disk DLRM layouts are read: the 2020 interleaved `train_data.bin` (via dlrm.convert_bin)
and the newest split binary + feature_spec.yaml exactly as its preprocessing writes it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from common.errors import InputError
from dlrm import convert_bin, train
from dlrm import data as dlrm_data
from tests.dlrm.conftest import TABLES, TINY


def _arrays(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    numerical = np.log(rng.integers(0, 50, (rows, 13)) + 3.0).astype(np.float32)
    categorical = np.stack([rng.integers(0, n, rows) for n in TABLES], axis=1)
    categorical = np.concatenate([categorical, np.zeros((rows, 26 - len(TABLES)), np.int64)], axis=1)
    return numerical, categorical, rng.random(rows) < 0.3


def _write_2020(directory: Path, splits: dict[str, tuple]) -> None:
    """The 2020 layout: rows of 40 int32 (label, numerical float32 bits, 26 ids) + model_size.json."""
    directory.mkdir(parents=True)
    for name, (numerical, categorical, label) in splits.items():
        rec = np.empty((len(label), 40), "<i4")
        rec[:, 0] = label
        rec[:, 1:14] = numerical.astype("<f4").view("<i4")
        rec[:, 14:] = categorical
        rec.tofile(directory / name)
    sizes = {f"_c{14 + i}": (TABLES[i] if i < len(TABLES) else 1) - 1 for i in range(26)}
    (directory / "model_size.json").write_text(json.dumps(sizes))


def test_2020_train_data_bin_converts_and_trains(tmp_path: Path, capsys) -> None:
    splits = {
        "train_data.bin": _arrays(4096, 1),
        "test_data.bin": _arrays(1024, 2),
        "val_data.bin": _arrays(512, 3),
    }
    _write_2020(tmp_path / "bin", splits)
    out = tmp_path / "split"
    rows = convert_bin.main(["--input", str(tmp_path / "bin"), "--output", str(out), "--chunk_rows", "1000"])
    assert rows == {"train_rows": 4096, "test_rows": 1024, "validation_rows": 512}
    dataset = dlrm_data.open_dataset(out)
    assert dataset.cardinalities[: len(TABLES)] == TABLES and dataset.num_numerical == 13
    numerical, categorical, label = splits["test_data.bin"]
    assert np.array_equal(np.fromfile(out / "test" / "label.bin", np.bool_), label)
    assert np.array_equal(np.fromfile(out / "test" / "numerical.bin", "<f2").reshape(-1, 13),
                          numerical.astype(np.float16))  # fmt: skip
    assert np.array_equal(
        np.fromfile(out / "test" / "cat_3.bin", "<i2"), categorical[:, 3]
    )  # 1000 rows: int16
    result = train.main(
        ["--dataset", str(out), *TINY, "--max_steps", "4", "--log_path", "", "--device", "cpu"]
    )
    assert result["steps"] == 4 and 0 < result["auc"] < 1
    with pytest.raises(convert_bin.ConvertError, match="exists and is not empty"):  # never over a dataset
        convert_bin.main(["--input", str(tmp_path / "bin"), "--output", str(out)])


def test_2020_bad_input_names_the_file_and_row(tmp_path: Path, capsys) -> None:
    numerical, categorical, label = _arrays(64, 4)
    categorical[17, 2] = TABLES[2]  # one past the table
    _write_2020(
        tmp_path / "bin", {"train_data.bin": (numerical, categorical, label), "test_data.bin": _arrays(8, 5)}
    )
    with pytest.raises(InputError, match=re.escape("train_data.bin row 17: cat_2 id 7 is outside [0, 7)")):
        convert_bin.main(["--input", str(tmp_path / "bin"), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    with open(tmp_path / "bin" / "test_data.bin", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(InputError, match="not a whole number of 160-byte rows"):
        convert_bin.main(["--input", str(tmp_path / "bin"), "--output", str(tmp_path / "out")])


def test_nvidia_split_binary_as_its_preprocessing_writes_it(tmp_path: Path) -> None:
    """split_dataset.py's output: cat_i.bin feature names, int8 up to cardinality 126, float16 numericals in
    one chunk, bool label, no validation mapping in the spec, empty metadata."""
    numerical, categorical, label = _arrays(2048, 6)
    cards = list(TABLES)
    dtypes = ["int8" if c < 127 else "int16" if c < 32767 else "int32" for c in cards]
    source = {}
    for split, (lo, hi) in {"train": (0, 1536), "test": (1536, 2048)}.items():
        (tmp_path / split).mkdir()
        label[lo:hi].tofile(tmp_path / split / "label.bin")
        numerical[lo:hi].astype("<f2").tofile(tmp_path / split / "numerical.bin")
        chunks = [{"type": "split_binary", "features": [f"num_{i}" for i in range(13)],
                   "files": [f"{split}/numerical.bin"]},
                  {"type": "split_binary", "features": ["label"], "files": [f"{split}/label.bin"]}]  # fmt: skip
        for i, dt in enumerate(dtypes):
            categorical[lo:hi, i].astype(dt).tofile(tmp_path / split / f"cat_{i}.bin")
            chunks.append(
                {"type": "split_binary", "features": [f"cat_{i}.bin"], "files": [f"{split}/cat_{i}.bin"]}
            )
        source[split] = chunks
    spec = {"channel_spec": {"categorical": [f"cat_{i}.bin" for i in range(len(cards))],
                             "label": ["label"], "numerical": [f"num_{i}" for i in range(13)]},
            "feature_spec": {**{f"cat_{i}.bin": {"cardinality": c, "dtype": d}
                                for i, (c, d) in enumerate(zip(cards, dtypes))},
                             "label": {"dtype": "bool"}, **{f"num_{i}": {"dtype": "float16"} for i in range(13)}},
            "metadata": {}, "source_spec": source}  # fmt: skip
    (tmp_path / "feature_spec.yaml").write_text(yaml.dump(spec))  # yaml.dump: sorted keys, as NVIDIA's
    result = train.main(
        ["--dataset", str(tmp_path), *TINY, "--max_steps", "3", "--log_path", "", "--device", "cpu"]
    )
    assert result["steps"] == 3 and 0 < result["auc"] < 1
