from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from common.messages import shown

PARENT = """
import sys, time
from common.workers import spawn_pool
if __name__ == "__main__":
    pool = spawn_pool(2)
    pids = [f.result() for f in [pool.submit(__import__("os").getpid) for _ in range(8)]]
    print(" ".join(map(str, sorted(set(pids)))), flush=True)
    pool.submit(time.sleep, 600)  # a worker busy, the other blocked on the task queue
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper counts as gone
        return f.read().split(")")[-1].split()[0] != "Z"


def test_workers_die_when_the_parent_is_killed(tmp_path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers and all(_alive(p) for p in workers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_shown_cuts_long_fields() -> None:
    assert shown("abc") == "'abc'"
    long = shown("x" * 10_000)
    assert len(long) < 230 and long.endswith("(10002 characters)")
