"""common.output_dir with dlrm's error class: atomic publish, owner file, stale-dir cleanup, input guard."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from common import output_dir
from common.output_dir import make_temp
from dlrm.criteo_reader import PrepareDataError

__all__ = ["check_output", "make_temp", "publish"]


def check_output(output: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    output_dir.check_output(output, overwrite, PrepareDataError, "--output", inputs)


def publish(tmp: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished temp dir to `output` (swapping out an old dataset with --overwrite)."""
    output_dir.publish(tmp, output, overwrite, PrepareDataError, "--output")
