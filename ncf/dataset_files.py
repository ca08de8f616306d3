"""The files of a prepared NCF dataset: their FeatureSpec and the atomic publish of a finished output
directory (shared by ncf.prepare_data and ncf.transcode)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common import output_dir
from common.feature_spec import FeatureSpec
from ncf.ratings_csv import PrepareDataError

DATA_FILES = ("train_data_0.npy", "train_data_1.npy", "test_data_0.npy", "test_data_1.npy")


def ncf_spec(
    names: tuple[str, str, str],
    cardinalities: tuple[int, int],
    metadata: dict,
    channel_spec: dict | None = None,
) -> dict:
    """The NCF FeatureSpec (DLE convert.py's) for the npy files of DATA_FILES: int32 ids, float32 labels."""
    user, item, label = names
    chunks = {
        mapping: [
            {"type": "npy", "features": [user, item], "files": [f"{mapping}_data_0.npy"]},
            {"type": "npy", "features": [label], "files": [f"{mapping}_data_1.npy"]},
        ]
        for mapping in ("train", "test")
    }
    return {
        "feature_spec": {
            user: {"dtype": "int32", "cardinality": int(cardinalities[0])},
            item: {"dtype": "int32", "cardinality": int(cardinalities[1])},
            label: {"dtype": "float32"},
        },
        "source_spec": chunks,
        "channel_spec": channel_spec or {"user_ch": [user], "item_ch": [item], "label_ch": [label]},
        "metadata": metadata,
    }


def check_output(output: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Fail before any work when publishing would fail anyway, or would delete one of `inputs`."""
    output_dir.check_output(output, overwrite, PrepareDataError, "--output", inputs)


def publish(
    output: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    spec: dict,
    overwrite: bool = False,
    inputs: Iterable[Path] = (),
) -> Path:
    """Write npy files + feature_spec.yaml into a temp sibling, validate, then rename it to `output`.

    Readers never see a half-written dataset and a failed run leaves neither `output` nor the temp dir;
    an `output` that is or contains one of `inputs` is refused (--overwrite would delete it).
    """
    output = Path(output).absolute()
    with output_dir.staging(output, overwrite, PrepareDataError, "--output", inputs) as tmp:
        for name, array in arrays.items():
            np.save(tmp / name, array)
        FeatureSpec.from_dict(spec, tmp).to_yaml(tmp / "feature_spec.yaml")
        FeatureSpec.from_yaml(tmp / "feature_spec.yaml")  # structural check, files included
    return output
