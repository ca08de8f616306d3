"""Publish a dataset directory atomically: write into a temp dir beside the target, rename when complete.

Readers never see a half-written dataset, and a failed run leaves neither the target nor the temp dir.
`error` is the recipe's own exception class, so its entry point reports the problem as one clear line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_output(
    output: Path, overwrite: bool, error: type[Exception] = ValueError, flag: str = "output"
) -> None:
    """Fail before any work when publishing would fail anyway."""
    if output.exists() and not output.is_dir():
        raise error(f"{output}: {flag} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise error(f"{output}: {flag} directory exists and is not empty; pass --overwrite to replace it")


def make_temp(output: Path) -> Path:
    """A fresh temp dir beside `output` (same filesystem, so the final rename is atomic)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; datasets are shared
    return tmp


def publish(
    tmp: Path, output: Path, overwrite: bool, error: type[Exception] = ValueError, flag: str = "output"
) -> None:
    """Rename the finished temp dir to `output`; with --overwrite swap the old dataset out, then delete it."""
    check_output(output, overwrite, error, flag)
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.rename(output, old)
        os.rename(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, output)


@contextmanager
def staging(
    output: Path, overwrite: bool, error: type[Exception] = ValueError, flag: str = "output"
) -> Iterator[Path]:
    """Yield a temp dir beside `output`; renamed to `output` when the body succeeds, deleted when it fails."""
    output = output.absolute()
    check_output(output, overwrite, error, flag)
    tmp = make_temp(output)
    try:
        yield tmp
        publish(tmp, output, overwrite, error, flag)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
