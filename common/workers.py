"""Worker processes that die with their parent.

A prep run killed with SIGKILL cannot shut its pool down, and a spawned worker blocked on the task queue
would wait forever (the queue's write end lives on in its siblings, so no EOF ever comes). Each worker
runs a daemon thread that watches its parent and exits the process once the parent is gone (the worker
is then re-parented, so getppid() changes). It polls: prctl(PR_SET_PDEATHSIG) fires when the parent
*thread* that spawned the worker ends, which pools do from helper threads, and it is Linux-only.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

POLL_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: exit this worker within POLL_SECONDS of its parent's death."""
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn-context process pool whose workers end when this process ends, however it ends.

    Spawn, not fork: the parent may hold threads (tqdm's monitor, pyarrow's pool), and fork with threads
    can deadlock."""
    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
    )
