"""Convert NVIDIA's 2020 DLRM dataset (`train_data.bin` + `model_size.json`) to the split binary layout.

  python -m dlrm.convert_bin --input /data/dlrm/binary_dataset --output /data/dlrm/split

NVIDIA's 2020 recipe trained from one interleaved file per split: packed rows of 40 int32
(label, 13 numericals as float32 bit patterns already log-transformed, 26 categorical ids), with the table
sizes in `model_size.json` ("_c14".."_c39" -> max id; cardinality = max id + 1). The newest recipe and
this one read one file per feature (label bool, numerical float16 [N, 13], cat_i in the smallest integer
dtype) plus feature_spec.yaml; this writes exactly that, streaming (memory ~ --chunk_rows), so a prepared
2020 dataset need not be prepared again from the raw logs. The output is published atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import cli, config
from common.config import flag
from common.errors import InputError, RunError
from common.feature_spec import FeatureSpec, smallest_int_dtype
from common.logging import JsonLogger
from common.output_dir import no_space_message, staging

ROW_INTS = 40  # label, 13 numerical, 26 categorical
NUM_NUMERICAL = 13
SPLITS = {"train": ("train_data.bin",), "test": ("test_data.bin",),
          "validation": ("validation_data.bin", "val_data.bin")}  # fmt: skip


class ConvertError(InputError):
    """Bad input: the message names the file and what was expected."""


def read_cardinalities(path: Path) -> list[int]:
    try:
        sizes = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: cannot read the 2020 model_size.json ({e})") from None
    values = list(sizes.values()) if isinstance(sizes, dict) else sizes
    if not isinstance(values, list) or len(values) != ROW_INTS - 1 - NUM_NUMERICAL:
        raise ConvertError(f'{path}: expected 26 table sizes ("_c14" .. "_c39": max id), got {sizes!r:.200}')
    if not all(isinstance(v, int) and v >= 0 for v in values):
        raise ConvertError(f"{path}: table sizes must be non-negative integers, got {values}")
    return [v + 1 for v in values]  # max id -> cardinality, as the 2020 trainer did


def count_rows(src: Path) -> int:
    size = src.stat().st_size
    if size % (ROW_INTS * 4):
        raise ConvertError(f"{src}: {size} bytes is not a whole number of 160-byte rows (40 int32 each)")
    return size // (ROW_INTS * 4)


def convert_split(src: Path, out: Path, split: str, cards: list[int], chunk_rows: int) -> int:
    """Stream one interleaved file into out/split/{label,numerical,cat_i}.bin; returns its row count."""
    rows = count_rows(src)
    records = np.memmap(src, dtype="<i4", mode="r", shape=(rows, ROW_INTS))
    dtypes = [smallest_int_dtype(c).newbyteorder("<") for c in cards]
    (out / split).mkdir(parents=True)
    names = ["label.bin", "numerical.bin", *(f"cat_{i}.bin" for i in range(len(cards)))]
    files = [open(out / split / n, "wb") for n in names]  # noqa: SIM115 - closed below
    try:
        for start in range(0, rows, chunk_rows):
            block = np.asarray(records[start : start + chunk_rows])
            labels = block[:, 0]
            if bad := np.flatnonzero((labels != 0) & (labels != 1)).tolist():
                raise ConvertError(f"{src} row {start + bad[0]}: label {labels[bad[0]]} is not 0 or 1")
            files[0].write(labels.astype(np.bool_).tobytes())
            numerical = block[:, 1 : 1 + NUM_NUMERICAL].view("<f4")
            files[1].write(numerical.astype("<f2").tobytes())
            for i, (card, dtype) in enumerate(zip(cards, dtypes)):
                ids = block[:, 1 + NUM_NUMERICAL + i]
                if bad := np.flatnonzero((ids < 0) | (ids >= card)).tolist():
                    raise ConvertError(f"{src} row {start + bad[0]}: cat_{i} id {ids[bad[0]]} is outside "
                                       f"[0, {card}) from model_size.json")  # fmt: skip
                files[2 + i].write(ids.astype(dtype).tobytes())
    finally:
        for f in files:
            f.close()
    return rows


def write_spec(out: Path, splits: list[str], cards: list[int], metadata: dict) -> None:
    num = [f"num_{i}" for i in range(NUM_NUMERICAL)]
    cat = [f"cat_{i}" for i in range(len(cards))]
    features = {n: {"dtype": "float16"} for n in num} | {"label": {"dtype": "bool"}}
    features |= {n: {"dtype": smallest_int_dtype(c).name, "cardinality": c} for n, c in zip(cat, cards)}
    source = {
        s: [{"type": "split_binary", "features": num, "files": [f"{s}/numerical.bin"]},
            {"type": "split_binary", "features": ["label"], "files": [f"{s}/label.bin"]},
            *({"type": "split_binary", "features": [n], "files": [f"{s}/{n}.bin"]} for n in cat)]
        for s in splits
    }  # fmt: skip
    channels = {"numerical": num, "categorical": cat, "label": ["label"]}
    FeatureSpec(features, source, channels, metadata, out).to_yaml()


@dataclass(frozen=True)
class ConvertConfig:
    input: Path | None = flag(None, "directory with train_data.bin, test_data.bin, [val_data.bin | "
                              "validation_data.bin] and model_size.json (required)")  # fmt: skip
    output: Path | None = flag(None, "new dataset directory (required)")
    chunk_rows: int = flag(1 << 20, "rows converted at a time")
    overwrite: bool = flag(False, "replace an existing non-empty --output (never one holding --input)")
    log_path: Path | None = flag(None, "DLLogger JSON log")

    def validate(self) -> None:
        if self.input is None or self.output is None:
            raise ValueError("--input and --output are required")


def main(argv: list[str] | None = None) -> dict[str, int]:
    cfg = config.parse(
        ConvertConfig, argv, prog="python -m dlrm.convert_bin", description=__doc__.split("\n\n")[0]
    )
    try:
        if cfg.chunk_rows <= 0:
            raise ConvertError(f"--chunk_rows must be positive, got {cfg.chunk_rows}")
        cards = read_cardinalities(cfg.input / "model_size.json")
        found = {s: next((cfg.input / n for n in names if (cfg.input / n).is_file()), None)
                 for s, names in SPLITS.items()}  # fmt: skip
        if found["train"] is None or found["test"] is None:
            raise ConvertError(f"{cfg.input}: needs train_data.bin and test_data.bin (the 2020 layout)")
        for src in found.values():  # every file's framing before any work
            if src is not None:
                count_rows(src)
        log = JsonLogger(cfg.log_path, metadata={})
        log.parameters(config.to_dict(cfg))
        rows: dict[str, int] = {}
        with staging(cfg.output, cfg.overwrite, ConvertError, inputs=[cfg.input]) as tmp:
            for split, src in found.items():
                if src is not None:
                    rows[split] = convert_split(src, tmp, split, cards, cfg.chunk_rows)
            write_spec(tmp, list(rows), cards, {"converted_from": str(cfg.input.absolute()), "rows": rows})
    except OSError as e:
        if (full := no_space_message(e, cfg.output)) is not None:
            raise RunError(full) from None
        raise ConvertError(str(e)) from None
    summary = {f"{s}_rows": n for s, n in rows.items()}
    log.summary(summary)
    log.close()
    return summary


if __name__ == "__main__":
    cli.run(main)
