"""Publishing a dataset directory atomically: temp dir next to the target, renamed when complete.

check_output/publish are common.output_dir's; this module adds the owner file and stale-dir cleanup.

A run writes everything into `.{name}.tmp-XXXX` beside --output (same filesystem, so the final rename is
atomic) holding an `owner` file (host, pid). Failures inside the process delete it; a run that was
killed (SIGKILL, power loss) leaves it behind, and the next run for the same output deletes every such
dir whose owner process no longer exists on this host.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from common import output_dir
from dlrm.criteo_reader import PrepareDataError


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


def clean_stale(output: Path) -> None:
    """Delete temp dirs of earlier runs for `output` whose process is gone (killed, power loss)."""
    for tmp in output.parent.glob(f".{output.name}.tmp-*"):
        if tmp.is_dir() and not _owner_alive(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def check_output(output: Path, overwrite: bool) -> None:
    output_dir.check_output(output, overwrite, PrepareDataError)


def publish(tmp: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished temp dir to `output` (swapping out an old dataset with --overwrite)."""
    output_dir.publish(tmp, output, overwrite, PrepareDataError)


def make_temp(output: Path) -> Path:
    """A fresh temp dir beside `output`, marked with this process as owner (stale ones cleaned first)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(output)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; datasets are shared
    (tmp / "owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return tmp
