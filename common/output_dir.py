"""Publish a dataset directory atomically: write into a temp dir beside the target, rename when complete.

Readers never see a half-written dataset, and a failed run leaves neither the target nor the temp dir.
`error` is the recipe's own exception class, so its entry point reports the problem as one clear line.

Guarantees every prep pipeline inherits from here:
- An output that equals or contains one of the run's inputs is refused before anything is touched, with or
  without --overwrite (--overwrite may only ever delete the previous *output*).
- The temp dir `.{name}.tmp-XXXX` holds an `owner` file (host, pid). A run killed with SIGKILL leaves it
  behind; the next run for the same output deletes every such dir whose owner process is gone.
- A full disk is reported as "no space left on device" with the output path, not as a deep traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def check_output(
    output: Path,
    overwrite: bool,
    error: type[Exception] = ValueError,
    flag: str = "output",
    inputs: Iterable[Path] = (),
) -> None:
    """Fail before any work when publishing would fail anyway, or would delete one of `inputs`."""
    check_disjoint(output, inputs, error, flag)
    if output.exists() and not output.is_dir():
        raise error(f"{output}: {flag} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise error(f"{output}: {flag} directory exists and is not empty; pass --overwrite to replace it")


def check_disjoint(
    output: Path, inputs: Iterable[Path], error: type[Exception] = ValueError, flag: str = "output"
) -> None:
    """Refuse an output that is, or lies above, an input: replacing it would delete what the user gave us."""
    out = Path(output).resolve()
    for given in inputs:
        src = Path(given).resolve()
        if src == out or out in src.parents:
            raise error(
                f"{output}: {flag} is {'the same path as' if src == out else 'a parent of'} the input {given}; "
                "choose an output directory outside the input (nothing was changed)"
            )


def _owner_alive(tmp: Path) -> bool:
    try:
        host, pid = (tmp / "owner").read_text().split()
    except (OSError, ValueError):  # no owner file yet: a run that is just starting, unless it is old
        try:
            return time.time() - tmp.stat().st_mtime < 60
        except OSError:
            return True
    if host != socket.gethostname():
        return True  # another machine's run on a shared disk: not ours to judge
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def clean_stale(output: Path) -> list[Path]:
    """Delete temp/old dirs of earlier runs for `output` whose process is gone (killed, power loss)."""
    removed = []
    for pattern in (f".{output.name}.tmp-*", f".{output.name}.old-*"):
        for tmp in output.parent.glob(pattern):
            if tmp.is_dir() and not _owner_alive(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
    return removed


def make_temp(output: Path) -> Path:
    """A fresh temp dir beside `output` (same filesystem, so the final rename is atomic), marked with this
    process as its owner; stale ones of killed runs are deleted first."""
    output.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(output)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; datasets are shared
    (tmp / "owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return tmp


def publish(
    tmp: Path, output: Path, overwrite: bool, error: type[Exception] = ValueError, flag: str = "output"
) -> None:
    """Rename the finished temp dir to `output`; with --overwrite swap the old dataset out, then delete it."""
    check_output(output, overwrite, error, flag)
    (tmp / "owner").unlink(missing_ok=True)
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.rename(output, old)
        os.rename(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, output)


def no_space_message(e: OSError, path: Path | str) -> str | None:
    """The one-line message for a full disk (ENOSPC/EDQUOT) while writing under `path`, else None."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device while writing {path} ({e.filename or path}); free space and rerun"
    return None


@contextmanager
def staging(
    output: Path,
    overwrite: bool,
    error: type[Exception] = ValueError,
    flag: str = "output",
    inputs: Iterable[Path] = (),
) -> Iterator[Path]:
    """Yield a temp dir beside `output`; renamed to `output` when the body succeeds, deleted when it fails."""
    output = output.absolute()
    check_output(output, overwrite, error, flag, inputs)
    tmp = make_temp(output)
    try:
        yield tmp
        publish(tmp, output, overwrite, error, flag)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        message = no_space_message(e, output)
        if message is None:
            raise
        raise error(message) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
