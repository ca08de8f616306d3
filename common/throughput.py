"""Timing every recipe shares: device-synchronised clocks, per-step latencies and their percentiles, and
peak memory.

CUDA runs asynchronously: a timestamp read without `sync` measures how fast work was queued, not done, so
every clock here synchronises the device before reading the time. Percentiles are numpy's default
(linear interpolation between the closest ranks), the same as the reference benchmarks.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

PERCENTILES = (50, 90, 95, 99)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory; CPU: peak resident set size of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def percentiles(values: Sequence[float] | np.ndarray, ps: Sequence[int] = PERCENTILES) -> dict[int, float]:
    """{p: the p-th percentile of `values`} (numpy's linear interpolation)."""
    values = np.asarray(values)
    return {p: float(np.percentile(values, p)) for p in ps}


class Clock:
    """Wall time between read-outs, device-synchronised at each read-out (not in between, so timing
    does not serialise the steps it measures)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.t = time.perf_counter()

    def start(self) -> None:
        """Restart after the device has finished what was queued before."""
        sync(self.device)
        self.t = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the last start/lap, once the device has finished; restarts the lap."""
        sync(self.device)
        now = time.perf_counter()
        elapsed, self.t = now - self.t, now
        return elapsed


def latencies(run: Callable[[int], object], warmup: int, count: int, device: torch.device) -> np.ndarray:
    """Seconds of each of `count` synchronised calls run(i) after `warmup` untimed ones."""
    out = []
    for i in range(warmup + count):
        sync(device)
        t0 = time.perf_counter()
        run(i)
        sync(device)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return np.array(out)


def latency_row(batch: int, lat: np.ndarray, extra: dict[str, float] | None = None) -> dict[str, float]:
    """The inference benchmarks' record of one batch size: mean throughput and latency, `extra`, then the
    latency percentiles (seconds)."""
    row = {f"batch_{batch}_mean_throughput": batch / lat.mean(), f"batch_{batch}_mean_latency": lat.mean()}
    row |= extra or {}
    return row | {f"batch_{batch}_p{p}_latency": v for p, v in percentiles(lat).items()}


class StepTimer:
    """Per-step latency (device-synchronised) -> throughput and latency percentiles, reference style.

    The first `warmup` steps of the process are excluded (when a window has later steps). Windows restart
    every epoch, except with `limit` (benchmark: stop after warmup + limit steps) where one window spans
    epochs. `done` turns true when a limit is reached.
    """

    def __init__(self, device: torch.device, warmup: int, limit: int | None = None) -> None:
        self.device, self.warmup, self.limit = device, warmup, limit
        self.count, self.steps, self.t_window = 0, [], time.perf_counter()

    def new_epoch(self) -> None:
        if self.limit is None or not self.steps:
            self.steps, self.t_window = [], time.perf_counter()

    def start(self) -> None:
        sync(self.device)
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def stop(self, samples: int) -> float:
        sync(self.device)
        latency = time.perf_counter() - self.t0
        self.steps.append((self.count, latency, samples, time.process_time() - self.cpu0))
        self.count += 1
        return latency

    @property
    def done(self) -> bool:
        return self.limit is not None and self.limit > 0 and self.count >= self.warmup + self.limit

    def results(self) -> dict[str, float]:
        """throughput (samples/s), time (s, wall time of the window), latency_mean/p90/p95/p99 (ms) and
        cpu_time_per_step (ms)."""
        timed = [s for s in self.steps if s[0] >= self.warmup] or self.steps
        lat = np.array([s[1] for s in timed]) if timed else np.zeros(1)
        samples = sum(s[2] for s in timed)
        out = {
            "throughput": samples / max(float(lat.sum()), 1e-12),
            "time": time.perf_counter() - self.t_window,
        }
        out["latency_mean"] = 1000 * float(lat.mean())
        # CPU seconds of this process per step (all threads): a load-independent cost on shared machines
        out["cpu_time_per_step"] = 1000 * sum(s[3] for s in timed) / max(len(timed), 1)
        out |= {f"latency_p{p}": 1000 * v for p, v in percentiles(lat, (90, 95, 99)).items()}
        return out
