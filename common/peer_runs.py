"""Side-by-side speed runs: ours and each peer in a fresh process, interleaved, reported as medians.

A comparison is honest only when every variant starts from the same state: each run is its own process
(no allocator, cache or thread-pool state inherited from the previous variant; peak RSS is that variant's
alone), runs are interleaved (ours, peer, ours, peer, ...) so a change in the load of a shared machine
hits all variants alike, and a peer runs without our process settings (OUR_SETTINGS are removed from
its environment: PyTorch's defaults apply). A child prints one JSON object as its last stdout line.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from common.errors import RunError

OUR_SETTINGS = ("THP_MEM_ALLOC_ENABLE",)  # set by common/cpu_env.py when a recipe package is imported


def peer_env() -> dict[str, str]:
    """This process's environment without our settings, for a peer's process."""
    return {k: v for k, v in os.environ.items() if k not in OUR_SETTINGS}


def run_child(name: str, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one timed child; its result is the last stdout line. RunError (with its last stderr lines) if it
    fails, so a missing peer install reads as one line instead of a traceback from this process."""
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RunError(f"benchmark run '{name}' failed (exit status {proc.returncode}): {tail}")
    return json.loads(lines[-1])


def interleave(runs: dict[str, tuple[list[str], dict[str, str]]], repeats: int) -> dict[str, list[dict]]:
    """{name: [result per repeat]} of `repeats` rounds, each running every (command, env) once in order;
    each result also holds the 1-minute load average just before it started."""
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (command, env) in runs.items():
            load = os.getloadavg()[0]
            results[name].append({**run_child(name, command, env), "load": load})
    return results


def summarize(prefix: str, results: dict[str, list[dict]], ours: str = "ours") -> dict[str, float]:
    """`{prefix}_{name}_{metric}` = median over the runs, with `_min` / `_max` for the spread, and
    `{prefix}_speedup_vs_{peer}` = ratio of the median samples/s (ours / peer)."""
    row: dict[str, float] = {}
    for name, runs in results.items():
        for metric in runs[0]:
            values = [r[metric] for r in runs]
            key = f"{prefix}_{name}_{metric}"
            row[key] = statistics.median(values)
            row[f"{key}_min"], row[f"{key}_max"] = min(values), max(values)
    for name in results:
        if name != ours:
            row[f"{prefix}_speedup_vs_{name}"] = (
                row[f"{prefix}_{ours}_train_throughput"] / row[f"{prefix}_{name}_train_throughput"]
            )
    return row


def table_line(prefix: str, row: dict[str, float], name: str) -> str:
    """'name: 84,600 [80,100 - 90,200] samples/s (CPU-time 70,000), peak RSS 1.52 GiB' from a summarize row."""
    k = f"{prefix}_{name}"
    return (
        f"{name}: {row[f'{k}_train_throughput']:,.0f} [{row[f'{k}_train_throughput_min']:,.0f} - "
        f"{row[f'{k}_train_throughput_max']:,.0f}] samples/s (per CPU second {row[f'{k}_cpu_throughput']:,.0f}), "
        f"peak RSS {row[f'{k}_peak_rss_gib']:.2f} GiB, load {row[f'{k}_load']:.1f}"
    )


def compare(
    prefix: str, runs: dict[str, tuple[list[str], dict[str, str]]], repeats: int, device_type: str
) -> dict[str, float]:
    """Run the variants interleaved, print one line each, and return their summary row with
    `peak_memory_gib` (ours: the largest peak of its runs, CUDA memory on a GPU, RSS on CPU)."""
    row = summarize(prefix, interleave(runs, repeats))
    for name in runs:
        print(f"{prefix.replace('_', ' ')} {table_line(prefix, row, name)}", file=sys.stderr)
    peak = "peak_cuda_gib" if device_type == "cuda" else "peak_rss_gib"
    row["peak_memory_gib"] = row[f"{prefix}_ours_{peak}_max"]
    return row


def time_steps(step: Callable[[int], torch.Tensor], batch: int, warmup: int, steps: int, device) -> dict:
    """samples/s over `steps` calls of step(i) after `warmup`, per wall second and per CPU second of this
    process (what an idle machine would give: on a shared one wall time also counts other jobs), and the
    process's peak resident memory (plus peak CUDA memory on a GPU)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(i)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    losses = [step(warmup + i) for i in range(steps)]
    float(torch.stack([loss.float() for loss in losses]).sum())  # waits for the device
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"train_throughput": batch * steps / wall, "cpu_throughput": batch * steps / cpu}
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    if device.type == "cuda":
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result
