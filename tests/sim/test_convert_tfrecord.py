"""NVIDIA's SIM TFRecord output (parquet_to_tfrecord.py) converts to our Parquet layout with
the same values, prebatched or not, and trains; bad files are errors naming the file and record."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from common.errors import InputError
from common.feature_spec import FeatureSpec
from sim import convert_tfrecord, train
from tests.sim.conftest import TINY


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _example(features: dict[str, np.ndarray]) -> bytes:
    """tf.train.Example with one packed Int64List per feature (what TensorFlow serialises)."""
    packed = {k: b"".join(_varint(int(v)) for v in np.ravel(a)) for k, a in features.items()}
    return _ld(1, b"".join(_ld(1, _ld(1, k.encode()) + _ld(2, _ld(3, _ld(1, p)))) for k, p in packed.items()))


def _write_tfrecord(path: Path, payloads: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("<Q", len(p)) + b"\0" * 4 + p + b"\0" * 4 for p in payloads))


def _nvidia_dataset(src: Path, out: Path, prebatch: int) -> dict[str, dict[str, np.ndarray]]:
    """Our Parquet dataset re-encoded the way parquet_to_tfrecord.py writes it (int64, YAML alias)."""
    spec = FeatureSpec.from_yaml(src / "feature_spec.yaml")
    names = list(spec.source_spec["train"][0]["features"])
    data, source = {}, {}
    for split, batch in (("train", prebatch), ("test", 1)):
        arrays = data[split] = spec.read_mapping(split, names)
        rows = len(arrays[names[0]])
        (out / split).mkdir(parents=True)
        records = [
            _example({n: arrays[n][i : i + batch].astype(np.int64) for n in names})
            for i in range(0, rows, batch)
        ]
        half = len(records) // 2
        files = [f"{split}/part_0.tfrecord", f"{split}/part_1.tfrecord"]
        _write_tfrecord(out / files[0], records[:half])
        _write_tfrecord(out / files[1], records[half:])  # the short last prebatch rides in the last file
        source[split] = [{"type": "tfrecord", "features": names, "files": files}]
    features = {n: {**spec.feature_spec[n], "dtype": "bool" if n == "label" else "int64"} for n in names}
    nv = {"channel_spec": spec.channel_spec, "feature_spec": features, "metadata": {}, "source_spec": source}
    (out / "feature_spec.yaml").write_text(
        yaml.dump(nv)
    )  # one shared features list: yaml.dump emits an alias
    return data


@pytest.mark.parametrize("prebatch", [1, 16])
def test_nvidia_tfrecord_converts_exactly_and_trains(small, tmp_path: Path, prebatch: int) -> None:
    expected = _nvidia_dataset(small.path, tmp_path / "nv", prebatch)
    assert "&id" in (tmp_path / "nv" / "feature_spec.yaml").read_text()
    rows = convert_tfrecord.main(["--input", str(tmp_path / "nv"), "--output", str(tmp_path / "ours")])
    assert rows == {f"{s}_rows": len(a["label"]) for s, a in expected.items()}
    spec = FeatureSpec.from_yaml(tmp_path / "ours" / "feature_spec.yaml")
    for split, arrays in expected.items():
        got = spec.read_mapping(split)
        for name, values in arrays.items():
            assert np.array_equal(got[name], values), (split, name)
    if prebatch == 16:
        result = train.main(["--dataset_dir", str(tmp_path / "ours"), "--model_type", "din", "--epochs", "1",
                             "--seed", "1", "--results_dir", str(tmp_path / "r"), "--device", "cpu", *TINY])  # fmt: skip
        assert 0 < result["test_auc"] < 1


def test_bad_tfrecord_names_the_file_and_record(small, tmp_path: Path) -> None:
    _nvidia_dataset(small.path, tmp_path / "nv", 16)
    part = tmp_path / "nv" / "test" / "part_1.tfrecord"
    part.write_bytes(part.read_bytes()[:-3])
    argv = ["--input", str(tmp_path / "nv"), "--output", str(tmp_path / "ours")]
    with pytest.raises(convert_tfrecord.ConvertError, match=r"part_1.tfrecord: record \d+ is truncated"):
        convert_tfrecord.main(argv)
    assert not (tmp_path / "ours").exists()
    _write_tfrecord(part, [b"\x0a\x05garbage"])
    with pytest.raises(InputError, match="part_1.tfrecord: record 0: not a tf.train.Example"):
        convert_tfrecord.main(argv)
    (tmp_path / "nv" / "test" / "part_0.tfrecord").unlink()  # read before the bad part_1
    with pytest.raises(InputError, match="part_0.tfrecord"):  # a missing input file: named, no traceback
        convert_tfrecord.main(argv)


def test_packed_varints_match_the_scalar_decoder() -> None:
    values = [0, 1, 127, 128, 300, 2**31 - 1, 2**40, -1, -(2**33)]
    data = b"".join(_varint(v) for v in values)
    assert convert_tfrecord.packed_varints(data).tolist() == values
