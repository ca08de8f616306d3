"""Inference latency of NeuMF models side by side (ncf.quantize: float vs INT8), on random ids as ncf.benchmark."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from common import throughput
from ncf.model import NeuMFSizes


@dataclass(frozen=True)
class Timing:
    """How long each batch size is timed: ncf.quantize's --warmup, --num_batches and --bench_seconds."""

    warmup: int  # untimed rounds
    max_batches: int  # timed rounds at most
    seconds: float  # stop after this long (at least 3 rounds)


@torch.no_grad()
def time_models(
    models: dict[str, torch.nn.Module], sizes: NeuMFSizes, batch: int, timing: Timing
) -> dict[str, float]:
    """Latency of sigmoid(model(users, items)) on random ids (as ncf.benchmark), the models taking turns
    batch by batch so that load from other processes hits them alike: timing.warmup untimed rounds, then
    at most timing.max_batches timed rounds, stopping once timing.seconds have passed (at least 3)."""
    g = torch.Generator().manual_seed(batch)
    users = torch.randint(0, sizes.num_users, (batch,), generator=g)
    items = torch.randint(0, sizes.num_items, (batch,), generator=g)
    latencies: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(timing.warmup):
        for m in models.values():
            torch.sigmoid(m(users, items))
    start = time.perf_counter()
    while len(latencies["float"]) < timing.max_batches and (
        len(latencies["float"]) < 3 or time.perf_counter() - start < timing.seconds
    ):
        for name, m in models.items():
            t0 = time.perf_counter()
            torch.sigmoid(m(users, items))
            latencies[name].append(time.perf_counter() - t0)
    out = {}
    for name, values in latencies.items():
        lat, key = np.array(values), f"{name}_batch_{batch}"
        out |= {f"{key}_mean_throughput": batch / lat.mean(), f"{key}_mean_latency": lat.mean()}
        out |= {f"{key}_p{p}_latency": v for p, v in throughput.percentiles(lat, (50, 99)).items()}
    for name in models:  # vs float; the p50 ratio is robust to stalls caused by other processes
        key = f"{name}_batch_{batch}"
        if name != "float":
            out[f"{key}_speedup"] = (
                out[f"{key}_mean_throughput"] / out[f"float_batch_{batch}_mean_throughput"]
            )
            out[f"{key}_p50_speedup"] = out[f"float_batch_{batch}_p50_latency"] / out[f"{key}_p50_latency"]
    return out
