"""Write a small random dataset that any FeatureSpec's own reader accepts: the spec yaml plus data files.

Why: the recipes' data code is tested on datasets whose layout (features, channels, chunk types, file
splits, dtypes) comes from a spec, and writing those files by hand in each test repeats the format rules of
common/chunk_readers.py. Here they are written once, for every chunk type, and a test can plant a signal
(a label that depends on the other features through a known probability) to check that a model learns.
Each recipe's raw-format writer (MovieLens, Criteo, Amazon files) is its own <recipe>/synthetic.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.feature_spec import FeatureSpec, FeatureSpecError

# Values of a feature with no cardinality: ints in [0, FREE_INT_RANGE), floats standard normal.
FREE_INT_RANGE = 100


@dataclass
class TinyDataset:
    """What was written: the spec (loaded back from its yaml), and per mapping the columns as written
    (feature -> [N] or [N, *dimensions]) and, with a planted label, each row's true click probability."""

    spec: FeatureSpec
    columns: dict[str, dict[str, np.ndarray]]
    probability: dict[str, np.ndarray] | None


def write_tiny_dataset(
    spec: FeatureSpec | Mapping,
    directory: str | os.PathLike,
    rows: int | Mapping[str, int] | None = None,
    *,
    seed: int = 0,
    label: str | None = None,
    given: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> TinyDataset:
    """Write every source_spec mapping of `spec` under `directory` (chunk paths are relative to it) and
    `directory`/feature_spec.yaml; refuse, before writing anything, a spec its readers could not read back.

    rows: rows per mapping (one int for all; a mapping left out takes the length of its `given` arrays).
    Values stay in each feature's cardinality (ids 0..card-1) and dtype. label: a scalar feature whose
    values are drawn as Bernoulli(sigmoid(logit)), the logit a sum of fixed random weights of the other
    features' ids (categorical) and values (float), the same weights in every mapping. given: mapping ->
    feature -> [N] or [N, *dimensions] values to write instead of random ones (a recipe's own generator,
    whose rows must follow rules a spec cannot state), cast to the declared dtype after the cardinality
    check. Never overwrites: an existing spec or data file is an error.
    """
    directory = Path(directory)
    raw = spec.to_dict() if isinstance(spec, FeatureSpec) else dict(spec)
    spec = FeatureSpec.from_dict(raw, directory)
    spec.validate(check_files=False)  # 'auto' cardinalities and structural problems fail here
    given = {m: dict(cols) for m, cols in (given or {}).items()}
    counts = {m: _rows(rows, m, given.get(m)) for m in spec.source_spec}
    _check_writable(spec, counts, label)
    _check_given(spec, counts, given, label)
    seeds = np.random.SeedSequence(seed).spawn(len(counts) + 1)
    weights = _weights(spec, label, np.random.default_rng(seeds[0])) if label else {}
    columns, probability = {}, {}
    for (mapping, n), mapping_seed in zip(counts.items(), seeds[1:]):
        rng = np.random.default_rng(mapping_seed)
        stored = [name for chunk in spec.source_spec[mapping] for name in chunk["features"]]
        mine = given.get(mapping, {})
        columns[mapping] = {
            name: mine[name].astype(spec.dtype(name)) if name in mine else _values(spec, name, n, rng)
            for name in stored
        }
        if label in columns[mapping]:
            probability[mapping] = _plant(spec, columns[mapping], label, weights, rng)
    directory.mkdir(parents=True, exist_ok=True)
    for mapping, cols in columns.items():
        for chunk in spec.source_spec[mapping]:
            _write_chunk(spec, chunk, cols)
    spec.to_yaml(directory / "feature_spec.yaml")
    loaded = FeatureSpec.from_yaml(directory / "feature_spec.yaml")
    return TinyDataset(loaded, columns, probability if label else None)


def _dims(spec: FeatureSpec, name: str) -> tuple[int, ...]:
    return tuple(spec.feature_spec[name].get("dimensions", ()))


def _rows(rows: int | Mapping[str, int] | None, mapping: str, given: dict | None) -> int | None:
    if isinstance(rows, int) or (rows is not None and mapping in rows):
        return rows if isinstance(rows, int) else rows[mapping]
    return len(next(iter(given.values()))) if given else None


def _check_given(
    spec: FeatureSpec, counts: dict[str, int], given: dict[str, dict], label: str | None
) -> None:
    where = f"{spec.base_directory}: tiny dataset: given"
    for mapping, cols in given.items():
        if mapping not in spec.source_spec:
            raise FeatureSpecError(
                f"{where}[{mapping!r}]: the spec has no such mapping; it has {list(counts)}"
            )
        stored = [name for chunk in spec.source_spec[mapping] for name in chunk["features"]]
        for name, values in cols.items():
            key, want = f"{where}[{mapping!r}][{name!r}]", (counts[mapping], *_dims(spec, name))
            if name not in stored or name == label:
                raise FeatureSpecError(
                    f"{key}: not a stored feature of {mapping} (or it is the planted label)"
                )
            values = cols[name] = np.asarray(values)
            if values.shape != want:
                raise FeatureSpecError(f"{key}: shape {list(values.shape)}, expected {list(want)}")
            card = spec.feature_spec[name].get("cardinality")
            if card is not None and values.size and (values.min() < 0 or values.max() >= card):
                raise FeatureSpecError(
                    f"{key}: ids [{values.min()}, {values.max()}] outside the cardinality [0, {card})"
                )


def _check_writable(spec: FeatureSpec, counts: dict[str, int | None], label: str | None) -> None:
    """The writer's own limits, on top of validate(): each names the spec key and what it needs."""
    where = f"{spec.base_directory}: tiny dataset"
    bad_label = label is not None and (
        label not in spec.feature_spec or _dims(spec, label) or "dtype" not in spec.feature_spec[label]
    )
    if bad_label:
        raise FeatureSpecError(f"{where}: label {label!r}: expected a declared scalar feature with a dtype")
    if (target := spec.base_directory / "feature_spec.yaml").exists():
        raise FeatureSpecError(f"{where}: {target} exists; the writer never overwrites")
    for mapping, n in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise FeatureSpecError(
                f"{where}: rows for source_spec.{mapping}: expected a positive int, got {n!r}"
            )
        for c, chunk in enumerate(spec.source_spec[mapping]):
            _check_chunk(spec, f"{where}: source_spec.{mapping}[{c}]", chunk, n)


def _check_chunk(spec: FeatureSpec, key: str, chunk: dict, rows: int) -> None:
    for name in chunk["features"]:
        if "dtype" not in spec.feature_spec[name]:
            raise FeatureSpecError(f"{key}: feature {name} has no dtype; a written feature needs one")
        _check_cardinality(spec, name, key)
    dtypes = {spec.dtype(name) for name in chunk["features"]}
    if chunk["type"] in ("torch_tensor", "npy", "split_binary") and len(dtypes) > 1:
        raise FeatureSpecError(
            f"{key}: a {chunk['type']} chunk stores one array, so its features need one dtype; "
            f"got {sorted(map(str, dtypes))}"
        )
    if len(chunk["files"]) > rows:
        raise FeatureSpecError(f"{key}: {len(chunk['files'])} files for {rows} rows; each file needs a row")
    for path in spec.chunk_paths(chunk):
        if path.exists():
            raise FeatureSpecError(f"{key}: {path} exists; the writer never overwrites")


def _check_cardinality(spec: FeatureSpec, name: str, key: str) -> None:
    if "cardinality" not in spec.feature_spec[name]:
        return
    dtype, card = spec.dtype(name), spec.cardinality(name)
    top = 1 if dtype == np.bool_ else np.iinfo(dtype).max if dtype.kind in "iu" else None
    if top is None or card - 1 > top:
        raise FeatureSpecError(
            f"{key}: feature {name}: cardinality {card} needs an integer dtype holding {card - 1}, "
            f"got {dtype}"
        )


def _values(spec: FeatureSpec, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, *dimensions] values of one feature, within its cardinality and dtype."""
    dtype, shape = spec.dtype(name), (n, *_dims(spec, name))
    if "cardinality" in spec.feature_spec[name]:
        return rng.integers(0, spec.cardinality(name), shape).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(0, min(FREE_INT_RANGE, np.iinfo(dtype).max + 1), shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _weights(spec: FeatureSpec, label: str, rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """The planted model: a weight per id of each categorical feature (an array), one per float feature."""
    weights = {}
    for name in sorted(spec.feature_spec):
        entry = spec.feature_spec[name]
        if name == label or "dtype" not in entry:
            continue
        if "cardinality" in entry:
            weights[name] = rng.standard_normal(spec.cardinality(name))
        elif spec.dtype(name).kind == "f":
            weights[name] = float(rng.standard_normal())
    return weights


def _plant(
    spec, cols: dict[str, np.ndarray], label: str, weights: dict, rng: np.random.Generator
) -> np.ndarray:
    """Replace cols[label] by draws from sigmoid(logit); returns the probabilities."""
    n, used = len(cols[label]), [name for name in cols if name in weights]
    logit = np.zeros(n)
    for name in used:
        values = cols[name].reshape(n, -1)
        weight = weights[name]
        term = weight[values] if isinstance(weight, np.ndarray) else weight * values.astype(np.float64)
        logit += term.mean(axis=1)
    logit *= 2.0 / math.sqrt(
        max(len(used), 1)
    )  # ~unit-variance terms: a clear signal, not a deterministic one
    probability = 1.0 / (1.0 + np.exp(-logit))
    cols[label] = (rng.random(n) < probability).astype(spec.dtype(label))
    return probability


def _write_chunk(spec: FeatureSpec, chunk: dict, cols: dict[str, np.ndarray]) -> None:
    n = len(cols[chunk["features"][0]])
    flat = [cols[name].reshape(n, -1) for name in chunk["features"]]
    paths = spec.chunk_paths(chunk)
    bounds = np.linspace(0, n, len(paths) + 1).astype(int)
    for path, lo, hi in zip(paths, bounds, bounds[1:]):
        path.parent.mkdir(parents=True, exist_ok=True)
        part = [column[lo:hi] for column in flat]
        _WRITERS[chunk["type"]](path, chunk["features"], part, [_dims(spec, f) for f in chunk["features"]])


def _write_torch(path: Path, names: list[str], part: list[np.ndarray], dims: list) -> None:
    import torch  # lazy, as in the readers

    torch.save(torch.from_numpy(np.concatenate(part, axis=1)), path)


def _write_npy(path: Path, names: list[str], part: list[np.ndarray], dims: list) -> None:
    with path.open("wb") as stream:  # np.save(path) would append .npy to a name without it
        np.save(stream, np.concatenate(part, axis=1))


def _write_csv(path: Path, names: list[str], part: list[np.ndarray], dims: list) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {f"{k}_{j}": column[:, j] for k, column in enumerate(part) for j in range(column.shape[1])}
    )
    frame.to_csv(path, header=False, index=False, float_format="%.17g")  # exact for every float dtype


def _write_parquet(path: Path, names: list[str], part: list[np.ndarray], dims: list) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [
        pa.FixedSizeListArray.from_arrays(pa.array(column.reshape(-1)), column.shape[1])
        if d
        else pa.array(column[:, 0])
        for column, d in zip(part, dims)
    ]
    pq.write_table(pa.table(dict(zip(names, arrays))), path)


_WRITERS = {
    "torch_tensor": _write_torch,
    "npy": _write_npy,
    "split_binary": lambda path, names, part, dims: (
        np.concatenate(part, axis=1).astype(part[0].dtype.newbyteorder("<")).tofile(path)
    ),
    "csv": _write_csv,
    "parquet": _write_parquet,
}
