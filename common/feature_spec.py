"""FeatureSpec: the YAML dataset description shared by the NCF, DLRM and SIM recipes.

Owns the generic contract only: schema, load/save, structural validation and reading chunks into numpy.
Which channels a recipe needs, and how many features each holds, is checked in that recipe's data.py.
The per-format file readers live in common/chunk_readers.py, the dtype names in common/spec_dtypes.py,
and common/tiny_dataset.py writes a small random dataset for any spec.
torch is imported only by the functions that need it: the prep CLIs that import this module start in
a fraction of the time (torch's import alone takes seconds).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import yaml

from common.chunk_readers import CHUNK_TYPES, READERS, UNREAD_TYPES, ChunkLayout, read_file
from common.spec_dtypes import (
    FeatureSpecError,
    dtype_name,
    is_positive_int,
    is_torch,
    parse_dtype,
    smallest_int_dtype,
    to_torch_dtype,
)

if TYPE_CHECKING:
    import torch

# Re-exported: callers import these from here; they live in spec_dtypes / chunk_readers since the split.
__all__ = [
    "CHUNK_TYPES",
    "SECTIONS",
    "UNREAD_TYPES",
    "FeatureSpec",
    "FeatureSpecError",
    "dtype_name",
    "parse_dtype",
    "smallest_int_dtype",
    "to_torch_dtype",
]
SECTIONS = ("feature_spec", "source_spec", "channel_spec", "metadata")  # the last one is optional


def _plain(value: Any) -> Any:
    """Deep copy into yaml.safe_dump-able types; fresh lists also keep anchors out of the written yaml."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (np.generic, np.ndarray)) or is_torch(value, "Tensor"):
        return value.tolist()
    if isinstance(value, (np.dtype, os.PathLike)) or is_torch(value, "dtype"):
        return str(value)
    return value


@dataclass
class FeatureSpec:
    """The four spec sections plus the directory that chunk file paths are relative to.

    Mutable on purpose: prep scripts and transcoders build or edit a spec, then write it with to_yaml.
    `yaml_path` (set by from_yaml) only serves error messages.
    """

    feature_spec: dict[str, dict]
    source_spec: dict[str, list[dict]]
    channel_spec: dict[str, list[str]]
    metadata: dict
    base_directory: Path
    yaml_path: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Absolute, so that a later chdir cannot change what the chunk paths point to.
        self.base_directory = Path(os.path.abspath(self.base_directory))
        self.metadata = {} if self.metadata is None else self.metadata
        if isinstance(self.feature_spec, dict):  # `label:` with no value is legal (transcoder input)
            self.feature_spec = {k: {} if v is None else v for k, v in self.feature_spec.items()}

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike, *, check_files: bool = True, allow_auto: bool = False
    ) -> FeatureSpec:
        """Load and validate; chunk paths resolve against the yaml's directory, never the CWD."""
        path = Path(os.path.abspath(path))
        try:
            with path.open() as stream:
                raw = yaml.safe_load(stream)
        except OSError as err:
            raise FeatureSpecError(f"{path}: cannot read feature spec: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise FeatureSpecError(f"{path}: invalid YAML{at}: {err}") from err
        problem = None
        if not isinstance(raw, dict):
            problem = "empty file" if raw is None else f"top level is a {type(raw).__name__}"
        elif unknown := [key for key in raw if key not in SECTIONS]:
            problem = f"unknown top-level key(s) {unknown}"
        elif missing := [section for section in SECTIONS[:3] if section not in raw]:
            problem = f"missing required section(s) {missing}"
        if problem:
            raise FeatureSpecError(
                f"{path}: {problem}; expected {', '.join(SECTIONS[:3])} and optional metadata"
            )
        spec = cls.from_dict(raw, path.parent)
        spec.yaml_path = path
        spec.validate(check_files=check_files, allow_auto=allow_auto)
        return spec

    @classmethod
    def from_dict(cls, d: dict, base_directory: str | os.PathLike) -> FeatureSpec:
        """Build without validating, for code that assembles a spec and validates or writes it later."""
        d = copy.deepcopy(d)
        return cls(*[d.get(section, {}) for section in SECTIONS], base_directory=Path(base_directory))

    def to_dict(self) -> dict:
        return {section: _plain(getattr(self, section)) for section in SECTIONS}

    def to_yaml(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically, so a reader racing a prep script never sees a half-written spec.

        File paths are written unchanged: writing outside base_directory changes what they resolve to.
        """
        target = Path(path) if path is not None else self.base_directory / "feature_spec.yaml"
        text = yaml.safe_dump(self.to_dict(), sort_keys=True, default_flow_style=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as stream:
                stream.write(text)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; specs are shared data
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def _fail(self, key: str, message: str) -> NoReturn:
        where = self.yaml_path or f"feature spec in {self.base_directory}"
        raise FeatureSpecError(f"{where}: {key}: {message}")

    def validate(self, *, check_files: bool = True, allow_auto: bool = False) -> None:
        """Structural checks shared by every recipe; raises on the first problem found."""
        for section in SECTIONS:
            if not isinstance(getattr(self, section), dict):
                self._fail(section, f"expected a mapping, got {getattr(self, section)!r}")
        for name, entry in self.feature_spec.items():
            key = f"feature_spec.{name}"
            if not isinstance(name, str) or not isinstance(entry, dict):
                self._fail(key, f"expected a feature name mapped to a mapping (or null), got {entry!r}")
            if "dtype" in entry:
                self._parse_dtype_at(f"{key}.dtype", entry["dtype"])
            if "cardinality" in entry:
                self._check_cardinality(f"{key}.cardinality", entry["cardinality"], allow_auto)
            dims = entry.get("dimensions", [1])
            if not isinstance(dims, list) or not dims or not all(is_positive_int(d) for d in dims):
                self._fail(f"{key}.dimensions", f"expected a list of positive integers, got {dims!r}")
        for channel, names in self.channel_spec.items():
            self._check_features(f"channel_spec.{channel}", names, allow_empty=True)
        for mapping, chunks in self.source_spec.items():
            self._check_mapping(mapping, chunks, check_files)

    def _check_cardinality(self, key: str, value: Any, allow_auto: bool) -> Any:
        if value == "auto" and not allow_auto:
            self._fail(key, "'auto' is only valid in transcoder input; transcode to resolve it to an integer")
        if value != "auto" and not is_positive_int(value):
            self._fail(key, f"expected a positive integer, got {value!r} ({type(value).__name__})")
        return value

    def _parse_dtype_at(self, key: str, value: Any) -> np.dtype:
        try:
            return parse_dtype(value)
        except FeatureSpecError as err:
            self._fail(key, str(err))

    def _check_list(self, key: str, value: Any, what: str, *, allow_empty: bool = False) -> None:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok or not (value or allow_empty):
            self._fail(key, f"expected a {'' if allow_empty else 'non-empty '}list of {what}, got {value!r}")

    def _check_features(self, key: str, names: Any, *, allow_empty: bool = False) -> None:
        self._check_list(key, names, "feature names", allow_empty=allow_empty)
        for i, name in enumerate(names):
            if name not in self.feature_spec:
                self._fail(f"{key}[{i}]", f"feature '{name}' is not declared in feature_spec")

    def _check_mapping(self, mapping: str, chunks: Any, check_files: bool) -> None:
        key = f"source_spec.{mapping}"
        if not isinstance(chunks, list) or not chunks:
            self._fail(key, f"expected a non-empty list of chunks, got {chunks!r}")
        seen: dict[str, int] = {}  # feature -> chunk index: the chunks of a mapping are disjoint columns
        for c, chunk in enumerate(chunks):
            ckey = f"{key}[{c}]"
            if not isinstance(chunk, dict):
                self._fail(ckey, f"expected a mapping with type, features and files, got {chunk!r}")
            if chunk.get("type") not in CHUNK_TYPES:
                hint = f": {UNREAD_TYPES[chunk['type']]}" if chunk.get("type") in UNREAD_TYPES else ""
                self._fail(
                    f"{ckey}.type", f"expected one of {list(CHUNK_TYPES)}, got {chunk.get('type')!r}{hint}"
                )
            self._check_features(f"{ckey}.features", chunk.get("features"))
            for name in chunk["features"]:
                if name in seen:
                    self._fail(f"{ckey}.features", f"feature '{name}' is already in {key}[{seen[name]}]")
                seen[name] = c
            self._check_list(f"{ckey}.files", chunk.get("files"), "file paths")
            if chunk["type"] == "torch_tensor" and len(chunk["files"]) != 1:
                self._fail(f"{ckey}.files", f"a torch_tensor chunk holds one file, got {len(chunk['files'])}")
            for i, path in enumerate(self.chunk_paths(chunk) if check_files else []):
                if not path.is_file():
                    self._fail(f"{ckey}.files[{i}]", f"file {path} does not exist")

    def _entry(self, feature: str) -> dict:
        if feature not in self.feature_spec:
            self._fail(f"feature_spec.{feature}", f"not declared; declared: {list(self.feature_spec)}")
        return self.feature_spec[feature] or {}

    def dtype(self, feature: str) -> np.dtype:
        if "dtype" not in self._entry(feature):
            self._fail(f"feature_spec.{feature}.dtype", "missing, but this use needs the feature's dtype")
        return self._parse_dtype_at(f"feature_spec.{feature}.dtype", self.feature_spec[feature]["dtype"])

    def torch_dtype(self, feature: str) -> torch.dtype:
        return to_torch_dtype(self.dtype(feature))

    def cardinality(self, feature: str) -> int:
        key = f"feature_spec.{feature}.cardinality"
        if "cardinality" not in self._entry(feature):
            self._fail(key, "missing; categorical features need an integer cardinality")
        return int(self._check_cardinality(key, self.feature_spec[feature]["cardinality"], allow_auto=False))

    def channel(self, name: str) -> list[str]:
        if name not in self.channel_spec:
            self._fail(f"channel_spec.{name}", f"no such channel; available: {list(self.channel_spec)}")
        return list(self.channel_spec[name])

    def chunk_paths(self, chunk: dict) -> list[Path]:
        return [Path(os.path.abspath(Path(self.base_directory, name))) for name in chunk["files"]]

    def read_mapping(self, mapping: str, features: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Read whole feature columns into numpy, for prep scripts, transcoders and in-memory datasets.

        Returns feature -> [N] array, or [N, *dimensions] for a feature with `dimensions`, in the order
        asked. npy / split_binary chunks of one file come back as read-only memory maps (copy to write).
        Nothing is cast: a stored dtype that differs from the declared one is an error.
        """
        if mapping not in self.source_spec:
            self._fail(f"source_spec.{mapping}", f"no such mapping; available: {list(self.source_spec)}")
        chunks = self.source_spec[mapping]
        stored = [name for chunk in chunks for name in chunk["features"]]
        wanted = list(stored if features is None else features)
        if missing := [name for name in wanted if name not in stored]:
            self._fail(f"source_spec.{mapping}", f"features {missing} are not stored here; it holds {stored}")
        arrays: dict[str, np.ndarray] = {}
        rows: dict[str, int] = {}
        for c, chunk in enumerate(chunks):
            if needed := [name for name in chunk["features"] if name in wanted]:
                arrays.update(self._read_chunk(f"source_spec.{mapping}[{c}]", chunk, needed))
                rows[f"[{c}]"] = len(arrays[needed[0]])
        if len(set(rows.values())) > 1:
            self._fail(f"source_spec.{mapping}", f"chunks hold different row counts {rows}; they must align")
        return {name: arrays[name] for name in wanted}

    def _read_chunk(self, key: str, chunk: dict, needed: list[str]) -> dict[str, np.ndarray]:
        if chunk.get("type") not in READERS:
            self._fail(f"{key}.type", f"expected one of {list(CHUNK_TYPES)}, got {chunk.get('type')!r}")
        features = chunk["features"]
        dims = {name: tuple(self._entry(name).get("dimensions", ())) for name in features}
        declared = {name: self.dtype(name) if "dtype" in self._entry(name) else None for name in features}
        layout = ChunkLayout(features, list(dims.values()), list(declared.values()), needed)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in needed}
        for i, path in enumerate(self.chunk_paths(chunk)):
            fkey = f"{key}.files[{i}]"
            try:
                loaded = read_file(chunk["type"], path, layout)
            except Exception as err:  # format libraries raise many types; all mean "this file is unusable"
                self._fail(fkey, f"cannot read {path} as {chunk['type']}: {str(err).strip()}")
            for name in needed:
                stored, want = loaded[name].dtype, declared[name]
                if want is not None and stored != want:
                    self._fail(fkey, f"{path} stores {name} as {stored}, declared {want}")
                parts[name].append(loaded[name])
        out = {}
        for name, arrays in parts.items():
            col = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            out[name] = col.reshape(len(col), *dims[name]) if dims[name] else col[:, 0]
        return out
