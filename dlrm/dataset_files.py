"""A prepared DLRM dataset on disk (dlrm.prepare_data output, DLE's "split binary" layout): its feature spec
checked against DLRM's channel rules and resolved to one file per channel and split.

Per split: `numerical.bin` [rows, N] float16, `label.bin` bool and one `cat_i.bin` per categorical feature in
its smallest int type, all described by `feature_spec.yaml`. A spec that breaks the rules is a DataError
naming the file and the feature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.feature_spec import FeatureSpec, FeatureSpecError

CHANNELS = ("numerical", "categorical", "label")


class DataError(FeatureSpecError):
    """A dataset that does not fit DLRM's channel rules or whose files disagree; names file and feature."""


@dataclass(frozen=True)
class SplitFiles:
    """One mapping (train/test/validation) resolved to files; categorical lists are in channel order."""

    name: str
    rows: int
    numerical: Path
    label: Path
    categorical: tuple[Path, ...]
    categorical_dtypes: tuple[np.dtype, ...]


@dataclass(frozen=True)
class DlrmDataset:
    directory: Path
    num_numerical: int
    cardinalities: tuple[int, ...]  # table rows per categorical feature, channel order
    splits: dict[str, SplitFiles]

    def split(self, name: str) -> SplitFiles:
        if name not in self.splits:
            raise DataError(
                f"{self.directory}: the feature spec has no '{name}' mapping; it has {sorted(self.splits)}"
            )
        return self.splits[name]


def open_dataset(directory: str | os.PathLike, spec_file: str = "feature_spec.yaml") -> DlrmDataset:
    """Load the spec and check DLRM's channel rules (DLE README "Channel definitions"): channels numerical,
    categorical, label; all numerical features float16 in ONE split_binary file in channel order; one file
    per categorical feature, integer dtype with a cardinality; one bool label. Feature names are free (ours
    `cat_0`, the reference's `cat_0.bin`): only the channel order matters."""
    directory = Path(directory)
    path = directory / spec_file
    if not path.is_file():
        raise DataError(f"{path} does not exist; --dataset must be a directory written by dlrm.prepare_data")
    spec = FeatureSpec.from_yaml(path)
    where = str(path)
    if missing := [c for c in CHANNELS if c not in spec.channel_spec]:
        raise DataError(f"{where}: channel_spec lacks {missing}; DLRM needs {list(CHANNELS)}")
    numerical, categorical, label = (spec.channel(c) for c in CHANNELS)
    if len(label) != 1 or spec.dtype(label[0]) != np.bool_:
        raise DataError(f"{where}: the label channel must hold exactly one bool feature, got {label}")
    if not categorical or not numerical:
        raise DataError(f"{where}: need at least one numerical and one categorical feature")
    if bad := [f for f in numerical if spec.dtype(f) != np.float16]:
        raise DataError(
            f"{where}: numerical features must be float16, got {[(f, str(spec.dtype(f))) for f in bad]}"
        )
    for f in categorical:
        if spec.dtype(f).kind not in "iu":
            raise DataError(
                f"{where}: categorical feature {f} must have an integer dtype, got {spec.dtype(f)}"
            )
    cards = tuple(spec.cardinality(f) for f in categorical)
    splits = {m: _resolve_split(spec, where, m, numerical, categorical, label[0]) for m in spec.source_spec}
    if "train" not in splits or "test" not in splits:
        raise DataError(f"{where}: source_spec needs mappings 'train' and 'test', got {sorted(splits)}")
    return DlrmDataset(directory, len(numerical), cards, splits)


def _resolve_split(
    spec: FeatureSpec, where: str, mapping: str, numerical: list[str], categorical: list[str], label: str
) -> SplitFiles:
    files: dict[str, tuple[list[str], Path]] = {}
    for c, chunk in enumerate(spec.source_spec[mapping]):
        key = f"{where}: source_spec.{mapping}[{c}]"
        if chunk["type"] != "split_binary" or len(chunk["files"]) != 1:
            raise DataError(
                f"{key}: DLRM reads split_binary chunks of one file, got {chunk['type']} with {chunk['files']}"
            )
        for f in chunk["features"]:
            files[f] = (chunk["features"], spec.chunk_paths(chunk)[0])
    for f in [*numerical, *categorical, label]:
        if f not in files:
            raise DataError(f"{where}: source_spec.{mapping} does not store feature {f}")
    if files[numerical[0]][0] != numerical:
        raise DataError(
            f"{where}: source_spec.{mapping}: the numerical features must form one chunk in channel order "
            f"{numerical}, got {files[numerical[0]][0]}"
        )
    for f in [*categorical, label]:
        if files[f][0] != [f]:
            raise DataError(
                f"{where}: source_spec.{mapping}: {f} must be alone in its chunk, got {files[f][0]}"
            )
    rows = {}
    for f, width in [(numerical[0], len(numerical)), (label, 1), *[(f, 1) for f in categorical]]:
        p, item = files[f][1], spec.dtype(f).itemsize * width
        size = p.stat().st_size
        if size % item:
            raise DataError(
                f"{p}: {size} bytes is not a whole number of {item}-byte rows of {f} ({spec.dtype(f)})"
            )
        rows[p] = size // item
    if len(set(rows.values())) != 1:
        counts = ", ".join(f"{p.name}: {n}" for p, n in rows.items())
        raise DataError(f"{where}: mapping {mapping}: files hold different row counts ({counts})")
    return SplitFiles(
        mapping, next(iter(rows.values())), files[numerical[0]][1], files[label][1],
        tuple(files[f][1] for f in categorical), tuple(spec.dtype(f) for f in categorical),
    )  # fmt: skip
