"""Transcode a bring-your-own CSV dataset, described by a FeatureSpec, into NCF's npy dataset.

  python -m ncf.transcode --input_spec /data/byo/feature_spec.yaml --output /data/cache/byo [--overwrite]

The input is a "simplified" FeatureSpec (DLE transcode.py's): `type: csv` chunks (no header, columns in the
chunk's `features` order, the files of a chunk row-concatenated), dtypes optional, `cardinality: auto`
allowed, `metadata.test_samples_per_series` required. The features of the user_ch / item_ch / label_ch
channels are written exactly like ncf.prepare_data writes them (int32 [N, 2] user,item + float32 labels,
npy chunks); other features and mappings are dropped (the summary says which).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import cli, config
from common.config import ConfigError, flag
from common.errors import RecipeError
from common.feature_spec import FeatureSpec
from common.logging import log_run
from common.messages import shown
from ncf.dataset_files import DATA_FILES, check_output, ncf_spec, publish
from ncf.ratings_csv import PrepareDataError, parse_csv, released

CHANNELS = ("user_ch", "item_ch", "label_ch")
MAPPINGS = ("train", "test")
Parts = list[tuple[str, int]]  # (file, rows) in row-concatenation order, to turn a row into file + line


def _where(parts: Parts, row: int) -> str:
    for source, rows in parts:
        if row < rows:
            return f"{source} line {row + 1}"
        row -= rows
    return f"row {row}"


def channel_features(spec: FeatureSpec) -> tuple[str, str, str]:
    """(user, item, label) feature names: NCF channels hold exactly one feature each."""
    names = []
    for channel in CHANNELS:
        features = spec.channel(channel)
        if len(features) != 1:
            raise PrepareDataError(
                f"{spec.yaml_path}: channel_spec.{channel}: NCF needs exactly one feature, got {shown(features)}"
            )
        names.append(features[0])
    return names[0], names[1], names[2]


def read_csv_mapping(
    spec: FeatureSpec, mapping: str, features: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Parts]]:
    """Read `features` (ids as int64, labels as float64) from the csv chunks of one mapping."""
    if mapping not in spec.source_spec:
        raise PrepareDataError(
            f"{spec.yaml_path}: source_spec: mapping '{mapping}' is missing; NCF needs {list(MAPPINGS)}"
        )
    arrays: dict[str, np.ndarray] = {}
    parts: dict[str, Parts] = {}
    chunk_rows: dict[str, int] = {}
    for c, chunk in enumerate(spec.source_spec[mapping]):
        wanted = [name for name in chunk["features"] if name in features]
        if not wanted:
            continue
        key = f"source_spec.{mapping}[{c}]"
        if chunk["type"] != "csv":
            raise PrepareDataError(
                f"{spec.yaml_path}: {key}.type: transcode reads csv chunks, got {shown(chunk['type'])}"
            )
        kinds = {name: "float" if name == features[-1] else "int" for name in wanted}
        columns: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        chunk_parts: Parts = []
        for path in spec.chunk_paths(chunk):
            read = parse_csv(path.read_bytes(), str(path), tuple(chunk["features"]), kinds)
            for name in wanted:
                columns[name].append(read[name])
            chunk_parts.append((str(path), len(read[wanted[0]])))
        for name in wanted:
            arrays[name], parts[name] = np.concatenate(columns[name]), chunk_parts
        chunk_rows[key] = sum(rows for _, rows in chunk_parts)
    missing = [name for name in features if name not in arrays]
    if missing:
        raise PrepareDataError(
            f"{spec.yaml_path}: source_spec.{mapping}: features {missing} are not stored in any chunk"
        )
    if len(set(chunk_rows.values())) > 1:
        raise PrepareDataError(
            f"{spec.yaml_path}: source_spec.{mapping}: chunks hold different row counts {chunk_rows}"
        )
    return arrays, parts


def _cardinality(spec: FeatureSpec, name: str, data: dict, parts: dict) -> int:
    """max id + 1 over both mappings; a declared integer must be at least that (DLE checks it too)."""
    found, where = 0, ""
    for mapping in MAPPINGS:
        ids = data[mapping][name]
        negative = np.flatnonzero(ids < 0)
        if negative.size:
            row = int(negative[0])
            raise PrepareDataError(f"{_where(parts[mapping][name], row)}: {name} id {ids[row]} is negative")
        if ids.size and ids.max() + 1 > found:
            row = int(np.argmax(ids))
            found, where = int(ids[row]) + 1, _where(parts[mapping][name], row)
    declared = spec.feature_spec[name].get("cardinality", "auto")
    if declared != "auto" and declared < found:
        raise PrepareDataError(
            f"{spec.yaml_path}: feature '{name}': found max id {found - 1} ({where}), but feature_spec.{name}.cardinality "
            f"is declared {declared}; it must be at least {found}"
        )
    cardinality = found if declared == "auto" else int(declared)
    if cardinality >= 2**31:
        raise PrepareDataError(
            f"{spec.yaml_path}: feature '{name}': cardinality {cardinality} does not fit int32 ids"
        )
    return cardinality


def _check_labels(label: str, data: dict, parts: dict, series: int, spec_path: Path) -> None:
    """Binary labels, and a test set of whole series with exactly one positive each (HR@K needs it)."""
    for mapping in MAPPINGS:
        values = data[mapping][label]
        bad = np.flatnonzero((values != 0) & (values != 1))
        if bad.size:
            where = _where(parts[mapping][label], int(bad[0]))
            raise PrepareDataError(f"{where}: label {values[bad[0]]} is not 0 or 1")
    labels = data["test"][label]
    if len(labels) % series:
        raise PrepareDataError(
            f"{spec_path}: source_spec.test: {len(labels)} rows is not a multiple of "
            f"metadata.test_samples_per_series={series}"
        )
    positives = (labels == 1).reshape(-1, series).sum(axis=1)
    bad = np.flatnonzero(positives != 1)
    if bad.size:
        first = int(bad[0])
        where = _where(parts["test"][label], first * series)
        raise PrepareDataError(
            f"test series {first} (rows {first * series}..{(first + 1) * series - 1}, from {where}) has "
            f"{positives[first]} positives; every series needs exactly one"
        )


def _check_series_users(user: str, data: dict, parts: dict, series: int) -> None:
    """Every test series is one user's candidates: a series mixing users would score one user's positive
    against another user's negatives, and HR@K would silently mean nothing."""
    users = data["test"][user].reshape(-1, series)
    mixed = np.flatnonzero((users != users[:, :1]).any(axis=1))
    if mixed.size:
        first = int(mixed[0])
        offset = int(np.argmax(users[first] != users[first, 0]))
        row = first * series + offset
        raise PrepareDataError(
            f"{_where(parts['test'][user], row)}: {user} {users[first, offset]} in test series {first}, which "
            f"began with {user} {users[first, 0]} ({_where(parts['test'][user], first * series)}); every "
            f"series of metadata.test_samples_per_series={series} rows must belong to one user "
            f"({mixed.size} series are mixed)"
        )


def transcode(input_spec: str | Path, output: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Read, validate and publish; returns row counts and cardinalities.

    An --output that is, or contains, the spec or one of its csv files is refused before anything is read
    or written: --overwrite may only ever replace an earlier output."""
    check_output(Path(output).absolute(), overwrite, [Path(input_spec)])  # fail before reading anything
    spec = FeatureSpec.from_yaml(input_spec, check_files=True, allow_auto=True)
    inputs = [Path(input_spec)] + [p for chunks in spec.source_spec.values() for c in chunks
                                   for p in spec.chunk_paths(c)]  # fmt: skip
    check_output(Path(output).absolute(), overwrite, inputs)
    user, item, label = names = channel_features(spec)
    series = spec.metadata.get("test_samples_per_series")
    if not isinstance(series, int) or isinstance(series, bool) or series < 1:
        raise PrepareDataError(
            f"{input_spec}: metadata.test_samples_per_series must be a positive integer, got {shown(series)}"
        )
    data, parts = {}, {}
    for mapping in MAPPINGS:
        data[mapping], parts[mapping] = read_csv_mapping(spec, mapping, names)
    cards = (_cardinality(spec, user, data, parts), _cardinality(spec, item, data, parts))
    _check_labels(label, data, parts, series, spec.yaml_path)
    _check_series_users(user, data, parts, series)
    arrays = []
    for mapping in MAPPINGS:
        columns = data[mapping]
        arrays += [
            np.stack([columns[user], columns[item]], axis=1).astype(np.int32),
            columns[label].astype(np.float32),
        ]
    channels = {ch: [f for f in features if f in names] for ch, features in spec.channel_spec.items()}
    out_spec = ncf_spec(names, cards, dict(spec.metadata), {ch: f for ch, f in channels.items() if f})
    publish(output, dict(zip(DATA_FILES, arrays)), out_spec, overwrite, inputs)
    return {
        "train_rows": len(arrays[0]),
        "test_rows": len(arrays[2]),
        "users": cards[0],
        "items": cards[1],
        "dropped_features": sorted(set(spec.feature_spec) - set(names)),
        "dropped_mappings": sorted(set(spec.source_spec) - set(MAPPINGS)),
    }


@dataclass(frozen=True)
class TranscodeConfig:
    """python -m ncf.transcode's flags."""

    input_spec: Path | None = flag(None, "simplified FeatureSpec yaml with csv chunks; required")
    output: Path | None = flag(None, "dataset directory to create (atomically); required")
    overwrite: bool = flag(False, "replace a non-empty --output (without it: refuse)")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run; none = no log")

    def validate(self) -> None:
        if self.input_spec is None or self.output is None:
            raise ConfigError("--input_spec and --output are required")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = config.parse(TranscodeConfig, argv, prog="python -m ncf.transcode", description=__doc__)
    start = time.perf_counter()
    try:
        result = transcode(cfg.input_spec, cfg.output, cfg.overwrite)
    except (RecipeError, OSError) as err:
        failure = released(err)
    else:
        return _finished(cfg, result, time.perf_counter() - start)
    raise failure  # outside the except block: see ncf.ratings_csv.released


def _finished(cfg: TranscodeConfig, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The summary line and the log of a finished transcode."""
    result["seconds"] = seconds
    print(
        f"transcoded {cfg.input_spec}: {result['train_rows']} train rows, {result['test_rows']} test rows, "
        f"{result['users']} users, {result['items']} items; dropped features {result['dropped_features']}, "
        f"mappings {result['dropped_mappings']}; in {result['seconds']:.1f} s -> {cfg.output}",
        file=sys.stderr,
    )
    return log_run(cfg.log_path, config.to_dict(cfg), result)


if __name__ == "__main__":
    cli.run(main)
