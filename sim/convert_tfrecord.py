"""Convert NVIDIA's SIM TFRecord dataset (parquet_to_tfrecord.py output) to this recipe's Parquet layout.

  python -m sim.convert_tfrecord --input /data/sim_tfrecord --output /data/sim

Reads the input's feature_spec.yaml (`tfrecord` chunks, YAML aliases allowed) and every listed file:
TFRecord framing (u64 length, u32 CRC, payload, u32 CRC) around `tf.train.Example` protobufs whose features
are all Int64List (DLE-SIM's parquet_to_tfrecord.py), prebatched or not (a record of p rows holds p·dims
values per feature).
The protobuf wire format is decoded here (no TensorFlow or protobuf package); CRCs are not verified, the
framing is (a truncated file is an error naming it and the record). Output: one Parquet part per input
file (label bool, ids int32, histories fixed_size_list<int32>[T]) and a feature_spec.yaml with the same
features, channels and cardinalities and `parquet` chunks, published atomically. Speed (2-core machine under
load): ~850 rows/s unbatched (Python per record), ~3,500 rows/s prebatched by 4096 (vectorised varints).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from common import cli, config
from common.config import flag
from common.errors import InputError
from common.feature_spec import FeatureSpec
from common.logging import log_run
from common.output_dir import staging

MAX_ID = 2**31 - 1


class ConvertError(InputError):
    """Bad input: the message names the file, record and feature."""


def records(path: Path) -> Iterator[bytes]:
    """Payloads of a TFRecord file (uncompressed, as NVIDIA writes them)."""
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            raise ConvertError(f"{path}: gzip-compressed TFRecord; decompress it first (gunzip -c)")
        f.seek(0)
        index = 0
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8]) if len(header) == 12 else (None,)
            data = f.read(length) if length is not None else b""
            if length is None or len(data) != length or len(f.read(4)) != 4:
                raise ConvertError(f"{path}: record {index} is truncated (not a complete TFRecord frame)")
            yield data
            index += 1


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, nxt = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            nxt = pos + length
        elif wire in (1, 5):
            nxt = pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if nxt > end:
            raise ValueError("a field runs past the end of its message")
        yield field, wire, pos, nxt
        pos = nxt


def packed_varints(data: bytes) -> np.ndarray:
    """Vectorised decode of a packed repeated int64 field (two's complement for negatives)."""
    b = np.frombuffer(data, np.uint8)
    if b.size == 0:
        return np.zeros(0, np.int64)
    ends = np.flatnonzero(b < 0x80)
    if ends.size == 0 or ends[-1] != b.size - 1:
        raise ValueError("a packed varint is cut off")
    starts = np.concatenate(([0], ends[:-1] + 1))
    shift = (np.arange(b.size) - np.repeat(starts, ends - starts + 1)) * 7
    values = (b & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    return np.bitwise_or.reduceat(values, starts).view(np.int64)


def parse_example(buf: bytes) -> dict[str, np.ndarray]:
    """tf.train.Example {features {feature: map<string, Feature{int64_list}>}} -> name -> int64 values."""
    out: dict[str, np.ndarray] = {}
    for field, wire, s, e in _fields(buf, 0, len(buf)):
        if field != 1 or wire != 2:
            continue
        for f2, w2, s2, e2 in _fields(buf, s, e):  # Features.feature: map entries
            if f2 != 1 or w2 != 2:
                continue
            key, value = None, None
            for f3, _, s3, e3 in _fields(buf, s2, e2):
                if f3 == 1:
                    key = buf[s3:e3].decode()
                elif f3 == 2:
                    value = (s3, e3)
            if key is None or value is None:
                raise ValueError("a feature map entry without key or value")
            out[key] = _int64_list(buf, key, *value)
    return out


def _int64_list(buf: bytes, name: str, start: int, end: int) -> np.ndarray:
    for field, _, s, e in _fields(buf, start, end):
        if field != 3:
            kind = {1: "BytesList", 2: "FloatList"}.get(field, f"field {field}")
            raise ValueError(f"feature {name} is a {kind}; NVIDIA's SIM records hold Int64List only")
        values = []
        for f2, w2, s2, e2 in _fields(buf, s, e):
            if f2 == 1 and w2 == 2:
                values.append(packed_varints(buf[s2:e2]))
            elif f2 == 1 and w2 == 0:
                values.append(np.array([_varint(buf, s2)[0]], np.uint64).view(np.int64))
        return np.concatenate(values) if values else np.zeros(0, np.int64)
    return np.zeros(0, np.int64)


def convert_file(path: Path, out: Path, features: list[str], spec: dict) -> int:
    """One TFRecord file -> one Parquet part; returns its rows."""
    dims = {n: int(np.prod(spec[n].get("dimensions", [1]))) for n in features}
    columns: dict[str, list[np.ndarray]] = {n: [] for n in features}
    for index, payload in enumerate(records(path)):
        try:
            example = parse_example(payload)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise ConvertError(f"{path}: record {index}: not a tf.train.Example ({e})") from None
        if missing := [n for n in features if n not in example]:
            raise ConvertError(f"{path}: record {index} lacks feature(s) {missing}")
        rows = example[features[0]].size // dims[features[0]]
        for n in features:
            values = example[n]
            if values.size != rows * dims[n] or rows == 0:
                raise ConvertError(f"{path}: record {index}: feature {n} has {values.size} values, expected "
                                   f"{rows} row(s) x {dims[n]}")  # fmt: skip
            columns[n].append(values.reshape(rows, dims[n]))
    arrays = []
    for n in features:
        data = np.concatenate(columns[n]) if columns[n] else np.zeros((0, dims[n]), np.int64)
        if spec[n].get("dtype") == "bool" or n == "label":
            arrays.append(pa.array(data[:, 0] != 0))
            continue
        if data.size and (data.min() < 0 or data.max() > MAX_ID):
            raise ConvertError(f"{path}: feature {n} has ids outside [0, {MAX_ID}]")
        flat = pa.array(data.astype(np.int32).ravel())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, dims[n]) if "dimensions" in spec[n] else flat)
    pq.write_table(pa.table(dict(zip(features, arrays))), out, compression="zstd")
    return len(arrays[0])


@dataclass(frozen=True)
class ConvertConfig:
    input: Path | None = flag(None, "NVIDIA's TFRecord dataset dir (required)")
    feature_spec: str = flag("feature_spec.yaml", "spec file inside --input")
    output: Path | None = flag(None, "new dataset directory (required)")
    overwrite: bool = flag(False, "replace an existing non-empty --output")
    log_path: Path | None = flag(None, "DLLogger JSON log")

    def validate(self) -> None:
        if missing := [f"--{name}" for name in ("input", "output") if getattr(self, name) is None]:
            raise ValueError(f"the following arguments are required: {', '.join(missing)}")


def main(argv: list[str] | None = None) -> dict[str, int]:
    cfg = config.parse(
        ConvertConfig, argv, prog="python -m sim.convert_tfrecord", description=__doc__.split("\n\n")[0]
    )
    spec_path = cfg.input / cfg.feature_spec
    try:
        rows = convert(cfg.input, spec_path, cfg.output, cfg.overwrite)
    except OSError as e:  # a missing or unreadable input file (a full disk is a ConvertError from staging)
        raise ConvertError(str(e)) from None
    except (KeyError, TypeError) as e:
        raise ConvertError(
            f"{spec_path}: not a feature spec of tfrecord chunks ({type(e).__name__}: {e})"
        ) from None
    print(f"converted {cfg.input}: " + ", ".join(f"{s} {n} rows" for s, n in rows.items()) + f" -> {cfg.output}",
          file=sys.stderr)  # fmt: skip
    return log_run(cfg.log_path, config.to_dict(cfg), {f"{s}_rows": n for s, n in rows.items()})


def convert(source: Path, spec_path: Path, output: Path, overwrite: bool) -> dict[str, int]:
    """Every split of the dataset at `source` (described by `spec_path`) into `output`, published
    atomically; returns the rows per split."""
    try:
        nv = yaml.safe_load(spec_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConvertError(f"{spec_path}: cannot read the feature spec ({e})") from None
    features_spec = nv.get("feature_spec") or {}
    sources = {}
    for split, chunks in (nv.get("source_spec") or {}).items():
        if not chunks or any(c.get("type") != "tfrecord" for c in chunks):
            raise ConvertError(f"{spec_path}: source_spec.{split} must hold tfrecord chunks")
        sources[split] = chunks
    rows: dict[str, int] = {}
    with staging(output, overwrite, ConvertError, inputs=[source]) as tmp:
        files: dict[str, list[str]] = {}
        for split, chunks in sources.items():
            (tmp / split).mkdir()
            files[split], rows[split] = [], 0
            for chunk in chunks:
                names = list(chunk["features"])
                if unknown := [n for n in names if n not in features_spec]:
                    raise ConvertError(
                        f"{spec_path}: source_spec.{split}: features {unknown} not in feature_spec"
                    )
                for name in chunk["files"]:
                    part = f"{split}/part_{len(files[split])}.parquet"
                    rows[split] += convert_file(source / name, tmp / part, names, features_spec)
                    files[split].append(part)
        new_features = {n: {**v, "dtype": "bool" if v.get("dtype") == "bool" else "int32"}
                        for n, v in features_spec.items()}  # fmt: skip
        columns = list(next(iter(sources.values()))[0]["features"])
        source_spec = {s: [{"type": "parquet", "features": columns, "files": f}] for s, f in files.items()}
        metadata = {**(nv.get("metadata") or {}), "converted_from": str(source.absolute()), "rows": rows}
        out = {"feature_spec": new_features, "source_spec": source_spec, "channel_spec": nv.get("channel_spec"),
               "metadata": metadata}  # fmt: skip
        FeatureSpec.from_dict(out, tmp).to_yaml(tmp / "feature_spec.yaml")
        FeatureSpec.from_yaml(tmp / "feature_spec.yaml")  # structural check, files included
    return rows


if __name__ == "__main__":
    cli.run(main)
