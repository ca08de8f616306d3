"""Map a function over tasks in worker processes, results in task order, with few results in flight.

Spawned (not forked) workers that die with the parent (common.workers); spawn costs ~1 s per worker at
start, once per run. One worker runs inline,
which also lets tests monkeypatch the task functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from common.workers import spawn_pool


class OrderedPool:
    """Runs tasks in a spawn process pool (or inline for one worker); results come back in task order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = spawn_pool(workers) if workers > 1 else None

    def map(self, fn: Callable, tasks: Iterable) -> Iterator:
        if self.pool is None:
            yield from map(fn, tasks)
            return
        tasks, pending = iter(tasks), []
        for task in tasks:  # at most 2 tasks per worker in flight: bounds the results waiting in memory
            pending.append(self.pool.submit(fn, task))
            if len(pending) >= 2 * self.workers:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
