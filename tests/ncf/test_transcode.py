"""ncf.transcode: a bring-your-own CSV FeatureSpec -> the npy dataset ncf.prepare_data writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from common.errors import InputError
from common.feature_spec import FeatureSpec
from ncf.ratings_csv import PrepareDataError
from ncf.transcode import main, transcode

# Columns: user, gender (dropped), item, label. Train spans two files, and has one train negative.
TRAIN_A = "0,1,3,1\n0,1,5,1\n1,0,2,1\n"
TRAIN_B = "2,1,0,1\n2,1,4,0\n"
# Series of 3, positive LAST (as in DLE's csv_conversion sample), a duplicated negative (user 0: 7 twice),
# a negative equal to the positive (user 1: 12). Item 12 only occurs in test: cardinality 13.
TEST = "0,1,7,0\n0,1,7,0\n0,1,12,1\n1,0,12,0\n1,0,4,0\n1,0,12,1\n2,1,6,0\n2,1,1,0\n2,1,9,1\n"


def byo(tmp_path: Path, *, test: str = TEST, train_b: str = TRAIN_B, **changes: object) -> Path:
    """Write the csv files and a simplified spec (cardinality auto, no dtypes); returns the yaml path."""
    src = tmp_path / "byo"
    src.mkdir(parents=True)
    for name, text in (("train_a.csv", TRAIN_A), ("train_b.csv", train_b), ("test.csv", test)):
        (src / name).write_text(text)
    columns = ["user", "gender", "item", "label"]
    spec = {
        "feature_spec": {
            "user": {"cardinality": "auto"},
            "item": {"cardinality": "auto"},
            "label": None,
            "gender": {},
        },
        "source_spec": {
            "train": [{"type": "csv", "features": columns, "files": ["train_a.csv", "train_b.csv"]}],
            "test": [{"type": "csv", "features": columns, "files": ["test.csv"]}],
        },
        "channel_spec": {
            "user_ch": ["user"],
            "item_ch": ["item"],
            "label_ch": ["label"],
            "numeric_inputs": ["gender"],
        },
        "metadata": {"test_samples_per_series": 3, "note": "kept"},
    }
    for key, value in changes.items():  # "section.key" -> value
        section, name = key.split(".")
        spec[section][name] = value
    (src / "feature_spec.yaml").write_text(yaml.safe_dump(spec))
    return src / "feature_spec.yaml"


def test_transcode_exact_arrays(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    result = main(["--input_spec", str(byo(tmp_path)), "--output", str(out)])
    assert (result["users"], result["items"], result["train_rows"], result["test_rows"]) == (3, 13, 5, 9)
    np.testing.assert_array_equal(np.load(out / "train_data_0.npy"), [[0, 3], [0, 5], [1, 2], [2, 0], [2, 4]])
    np.testing.assert_array_equal(np.load(out / "train_data_1.npy"), [1, 1, 1, 1, 0])
    test_pairs = [[0, 7], [0, 7], [0, 12], [1, 12], [1, 4], [1, 12], [2, 6], [2, 1], [2, 9]]
    np.testing.assert_array_equal(np.load(out / "test_data_0.npy"), test_pairs)
    np.testing.assert_array_equal(np.load(out / "test_data_1.npy"), [0, 0, 1] * 3)
    assert (
        np.load(out / "test_data_0.npy").dtype == np.int32
        and np.load(out / "test_data_1.npy").dtype == np.float32
    )

    spec = FeatureSpec.from_yaml(out / "feature_spec.yaml")
    assert spec.cardinality("user") == 3 and spec.cardinality("item") == 13
    assert spec.dtype("item") == np.int32 and spec.dtype("label") == np.float32
    assert "gender" not in spec.feature_spec and "numeric_inputs" not in spec.channel_spec
    assert spec.metadata == {"test_samples_per_series": 3, "note": "kept"}
    assert {c["type"] for chunks in spec.source_spec.values() for c in chunks} == {"npy"}
    np.testing.assert_array_equal(spec.read_mapping("test")["item"], np.array(test_pairs)[:, 1])
    err = capsys.readouterr().err
    assert "transcoded" in err and "gender" in err


def test_declared_cardinality_is_kept_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = byo(tmp_path, **{"feature_spec.item": {"cardinality": 20}})
    assert transcode(spec, tmp_path / "ok")["items"] == 20
    small = byo(tmp_path / "small", **{"feature_spec.item": {"cardinality": 10}})
    with pytest.raises(PrepareDataError) as exit_:
        main(["--input_spec", str(small), "--output", str(tmp_path / "bad")])
    err = str(exit_.value)
    assert exit_.value.exit_code == 2 and capsys.readouterr().err == ""
    assert (
        "feature 'item'" in err and "max id 12" in err and "declared 10" in err and "test.csv line 3" in err
    )
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"test": TEST + "3,0,1,1\n"}, ["10 rows is not a multiple", "test_samples_per_series=3"]),
        ({"test": TEST.replace("0,1,7,0\n0,1,7,0", "0,1,7,1\n0,1,7,0")}, ["test series 0", "2 positives"]),
        ({"test": TEST.replace("2,1,9,1", "2,1,9,0")}, ["test series 2", "0 positives", "test.csv line 7"]),
        ({"train_b": "2,1,0,1\n-1,1,4,0\n"}, ["train_b.csv line 2", "user id -1 is negative"]),
        ({"train_b": "2,1,x,1\n"}, ["train_b.csv line 1", "item 'x' is not an integer"]),
        ({"train_b": "2,1,0,1\n2,1,4\n"}, ["train_b.csv line 2", "expected 4 fields"]),
        ({"train_b": "2,1,0,2\n"}, ["train_b.csv line 1", "label 2.0 is not 0 or 1"]),
        ({"metadata.test_samples_per_series": None}, ["test_samples_per_series must be a positive integer"]),
        ({"channel_spec.user_ch": ["user", "gender"]}, ["channel_spec.user_ch", "exactly one feature"]),
        ({"feature_spec.user": {"cardinality": "many"}}, ["feature_spec.user.cardinality"]),
    ],
)
def test_bad_input_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, kwargs: dict, expected: list[str]
) -> None:
    spec = byo(tmp_path, **kwargs)
    with pytest.raises(InputError) as exit_:
        main(["--input_spec", str(spec), "--output", str(tmp_path / "out" / "ds")])
    err = str(exit_.value)
    assert exit_.value.exit_code == 2 and capsys.readouterr().err == ""
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["byo"]  # no temp dir left behind


def test_non_csv_chunk_and_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = byo(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.npy").write_bytes(b"")
    with pytest.raises(PrepareDataError, match="--overwrite"):
        main(["--input_spec", str(spec), "--output", str(out)])
    main(["--input_spec", str(spec), "--output", str(out), "--overwrite"])
    assert not (out / "old.npy").exists()
    # the npy output is not transcoder input
    with pytest.raises(PrepareDataError, match="transcode reads csv chunks"):
        main(["--input_spec", str(out / "feature_spec.yaml"), "--output", str(tmp_path / "again")])
