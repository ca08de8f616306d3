"""Criteo click logs -> DLRM split-binary dataset (train/, test/, validation/ + feature_spec.yaml).

  terabyte : python -m dlrm.prepare_data --input /data/criteo --output /data/dlrm           (day_0..day_23)
  kaggle   : python -m dlrm.prepare_data --input /data/criteo_kaggle/train.txt --output /data/dlrm_kaggle
  subset   : python -m dlrm.prepare_data --input /data/criteo --days 3 --output /tmp/dlrm3 --frequency_threshold 3
  big box  : python -m dlrm.prepare_data --input /data/criteo --output /data/dlrm --workers 64 --memory_limit 64GB

Semantics (NVIDIA DLRM's Spark path): Terabyte train = days 0..22, day 23 halved in line order
(first half test, second half validation); Kaggle train = first 6/7 of train.txt, the last 1/7 halved the
same way. Vocabulary over all lines, ids by descending frequency from 1, rare (< --frequency_threshold)
and missing values -> 0; numerical ln(x + 3), missing or x <= -3 -> 0, float16; train rows shuffled once.
Three streaming passes (see dlrm/README.md "Data preparation"): count, encode, shuffle; memory is bounded
by --memory_limit plus the vocabularies, never by the number of lines. The dataset is written into a
temp dir next to --output and renamed when complete.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common import cli, config
from common.config import flag
from common.errors import InputError, RunError
from common.logging import log_run
from common.output_dir import no_space_message
from dlrm.criteo_layout import find_input
from dlrm.criteo_reader import PrepareDataError
from dlrm.output_dir import check_output
from dlrm.prepare_pipeline import prepare

__all__ = ["PrepareConfig", "PrepareDataError", "main", "parse_memory"]
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_memory(text: str) -> int:
    """'8GB', '512M', '1.5GiB', '100000' -> bytes (K/M/G/T are powers of 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"--memory_limit: expected a size like 8GB, 512MB or 1000000, got {text!r}")
    return int(float(match[1]) * _UNITS[match[2].upper()])


@dataclass(frozen=True)
class PrepareConfig:
    input: Path | None = flag(
        None, "directory with day_0.. (Terabyte) or train.txt, or a Kaggle-format file (required)"
    )
    output: Path | None = flag(None, "dataset directory to create, published atomically (required)")
    dataset_type: Literal["auto", "terabyte", "kaggle"] = flag(
        "auto", "auto: terabyte if --input holds day_* files, else kaggle"
    )
    days: int = flag(24, "terabyte: use day_0 .. day_{N-1}; the last one is test/validation")
    frequency_threshold: int = flag(15, "values seen fewer times map to id 0")
    workers: int = flag(_CPUS, "worker processes, the CPUs here by default; the output does not depend on it")
    memory_limit: str = flag(
        "8GB", "working memory of all processes together, beyond the vocabularies (K/M/G/T = powers of "
        "1024); sets block, segment and shuffle-bucket sizes",
    )  # fmt: skip
    seed: int = flag(0, "seed of the training-row shuffle")
    overwrite: bool = flag(False, "replace a non-empty --output directory (never one holding --input)")
    progress: bool = flag(True, "tqdm progress bars on stderr")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run; none = no log")

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory_limit)

    def validate(self) -> None:
        if self.input is None or self.output is None:
            raise ValueError("--input and --output are required")
        if self.days < 2 or self.frequency_threshold < 0 or self.workers < 1 or self.memory_bytes < 1:
            raise ValueError(
                "need --days >= 2, --frequency_threshold >= 0, --workers >= 1 and --memory_limit > 0"
            )


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(PrepareConfig, argv, prog="python -m dlrm.prepare_data", description=__doc__)
    output = cfg.output.absolute()
    try:
        check_output(output, cfg.overwrite, inputs=[cfg.input])  # --overwrite never deletes the input
        dataset_type, files = find_input(cfg.input.absolute(), cfg.dataset_type, cfg.days)
        summary = prepare(cfg, dataset_type, files, output)
    except OSError as err:
        if (full := no_space_message(err, output)) is not None:
            raise RunError(full) from None
        raise InputError(str(err)) from None
    print(
        f"dlrm.prepare_data: {summary['rows']:,} rows (train {summary['train_rows']:,}, test "
        f"{summary['test_rows']:,}, validation {summary['validation_rows']:,}) in {summary['seconds']:.1f} s = "
        f"{summary['rows_per_s']:,.0f} rows/s; peak RSS main {summary['peak_rss_gib']:.2f} GiB"
        + (f", largest worker {summary['peak_worker_rss_gib']:.2f} GiB" if cfg.workers > 1 else "")
        + f"; {summary['embedding_rows']:,} embedding rows -> {output}",
        file=sys.stderr,
    )
    return log_run(cfg.log_path, config.to_dict(cfg), summary)


if __name__ == "__main__":
    cli.run(main)
