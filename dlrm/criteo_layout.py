"""Where the Criteo lines come from and where they go: input files, split routes, output FeatureSpec.

Terabyte: day_0 .. day_{D-1}; days 0..D-2 are train, the last day is halved in line order (first half
test, second half validation; NVIDIA's head -n floor(n/2)). Kaggle: one train.txt cut like
FB's getCriteoAdData into 7 consecutive chunks with the remainder going to the first ones, so the last
chunk (n // 7 lines) is held out and halved the same way (NVIDIA's Kaggle split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrm.criteo_reader import NUM_CATEGORICAL, NUM_INTEGER, PrepareDataError
from dlrm.prepare_passes import SPLITS, Route


def find_input(path: Path, dataset_type: str, days: int) -> tuple[str, list[Path]]:
    """(dataset type, files in order); a missing day, a missing train.txt or an empty file is an error."""
    if not path.exists():
        raise PrepareDataError(f"{path}: input does not exist")
    detected = dataset_type == "auto"
    if detected:
        dataset_type = "terabyte" if path.is_dir() and any(path.glob("day_*")) else "kaggle"
    if dataset_type == "terabyte":
        if not path.is_dir():
            raise PrepareDataError(
                f"{path}: a Terabyte dataset is a directory holding day_0 .. day_{days - 1}"
            )
        files = [path / f"day_{d}" for d in range(days)]
        for file in files:
            if not file.is_file():
                gz = (
                    " (day files must be decompressed first: gunzip day_*.gz)"
                    if file.with_suffix(".gz").exists()
                    else ""
                )
                raise PrepareDataError(
                    f"{file}: missing day{gz}; a Terabyte dataset needs day_0 .. day_{days - 1} (--days {days})"
                )
    else:
        files = [path / "train.txt" if path.is_dir() else path]
        if not files[0].is_file():
            terabyte = f"no day_0 .. day_{days - 1} (Terabyte) and " if detected else ""
            packed = [p.name for p in (path / "train.txt.gz", path / "dac.tar.gz") if p.exists()]
            hint = f" ({' and '.join(packed)} must be decompressed first)" if packed else ""
            raise PrepareDataError(f"{path}: {terabyte}no train.txt (Kaggle) here{hint}")
    for file in files:
        if file.stat().st_size == 0:
            raise PrepareDataError(f"{file}: file is empty")
        check_not_compressed(file)
    return dataset_type, files


def check_not_compressed(file: Path) -> None:
    """Refuse gzip input by its magic bytes, whatever its name: the passes cut files into byte ranges and
    read them in parallel, which a gzip stream cannot do (decompressing once costs less than per pass)."""
    with open(file, "rb") as stream:
        if stream.read(2) == b"\x1f\x8b":
            raise PrepareDataError(
                f"{file}: gzip-compressed; decompress it first (gunzip -k FILE, or tar xzf for dac.tar.gz)"
            )


def plan_routes(
    dataset_type: str, files: list[Path], lines: list[int]
) -> tuple[list[tuple[Route, ...]], dict[str, int]]:
    """Which lines of which file form which split (and at which row), from the per-file line counts."""
    routes: list[tuple[Route, ...]] = []
    if dataset_type == "kaggle":  # FB's 7 consecutive chunks, remainder to the first ones: last = n // 7
        n = lines[0]
        held = n // 7
        train, test = n - held, held // 2
        if test < 1:
            raise PrepareDataError(f"{files[0]}: {n} lines; the held-out last 1/7 needs at least 14 lines")
        routes.append(
            (
                Route("train", 0, train, 0),
                Route("test", train, train + test, 0),
                Route("validation", train + test, n, 0),
            )
        )
        return routes, {"train": train, "test": test, "validation": held - test}
    offset = 0
    for file_lines in lines[:-1]:
        routes.append((Route("train", 0, file_lines, offset),))
        offset += file_lines
    n = lines[-1]
    if n < 2:
        raise PrepareDataError(f"{files[-1]}: {n} line(s); the test and validation halves need at least 2")
    routes.append((Route("test", 0, n // 2, 0), Route("validation", n // 2, n, 0)))
    return routes, {"train": offset, "test": n // 2, "validation": n - n // 2}


def dlrm_spec(cardinalities: list[int], cat_dtypes: list[np.dtype], metadata: dict) -> dict:
    """The FeatureSpec of the split-binary layout (NVIDIA's), with a validation mapping too."""
    numerical = [f"num_{i}" for i in range(NUM_INTEGER)]
    categorical = [f"cat_{j}" for j in range(NUM_CATEGORICAL)]
    features = dict.fromkeys(numerical, {"dtype": "float16"}) | {"label": {"dtype": "bool"}}
    for name, card, dt in zip(categorical, cardinalities, cat_dtypes):
        features[name] = {"dtype": np.dtype(dt).name, "cardinality": int(card)}

    def chunk(features: list[str], file: str) -> dict:
        return {"type": "split_binary", "features": features, "files": [file]}

    sources = {
        split: [
            chunk(numerical, f"{split}/numerical.bin"),
            chunk(["label"], f"{split}/label.bin"),
            *[chunk([name], f"{split}/{name}.bin") for name in categorical],
        ]
        for split in SPLITS
    }
    channels = {"numerical": numerical, "categorical": categorical, "label": ["label"]}
    return {"feature_spec": features, "source_spec": sources, "channel_spec": channels, "metadata": metadata}


def write_spec(directory: Path, spec: dict) -> None:
    """Write feature_spec.yaml and read it back (structure, files, row counts) before publishing.

    common.feature_spec imports torch (seconds); imported here, not at module level, so the spawned
    prep workers, which import this package, start in ~1 s.
    """
    from common.feature_spec import FeatureSpec, FeatureSpecError

    try:
        FeatureSpec.from_dict(spec, directory).to_yaml(directory / "feature_spec.yaml")
        loaded = FeatureSpec.from_yaml(directory / "feature_spec.yaml")
        for split in SPLITS:
            loaded.read_mapping(split)  # every chunk of a mapping must hold the same number of rows
    except FeatureSpecError as err:
        raise PrepareDataError(str(err)) from err
