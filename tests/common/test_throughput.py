"""common.throughput: the numbers every benchmark and training log reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common import throughput
from common.seeding import derived_seed

CPU = torch.device("cpu")


def test_percentiles_interpolate_linearly_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1..4: p50 halfway between 2 and 3, p90 at rank 2.7
    assert throughput.percentiles(values, (50, 90, 100)) == {50: 2.5, 90: pytest.approx(3.7), 100: 4.0}
    assert throughput.percentiles(np.arange(101.0)) == {50: 50.0, 90: 90.0, 95: 95.0, 99: 99.0}


def test_latencies_leave_out_the_warmup_and_latency_row_names_every_value() -> None:
    calls = []
    lat = throughput.latencies(calls.append, warmup=2, count=3, device=CPU)
    assert calls == [0, 1, 2, 3, 4] and lat.shape == (3,) and (lat >= 0).all()
    row = throughput.latency_row(8, np.array([0.1, 0.2, 0.3, 0.4]), {"batch_8_cuda_graph": 0.0})
    assert list(row) == ["batch_8_mean_throughput", "batch_8_mean_latency", "batch_8_cuda_graph",
                         "batch_8_p50_latency", "batch_8_p90_latency", "batch_8_p95_latency", "batch_8_p99_latency"]  # fmt: skip
    assert row["batch_8_mean_throughput"] == pytest.approx(32.0) and row["batch_8_p50_latency"] == 0.25


def test_step_timer_leaves_out_warmup_steps_and_reports_ms() -> None:
    timer = throughput.StepTimer(CPU, warmup=1, limit=2)
    for _ in range(3):
        timer.start()
        timer.stop(samples=10)
    assert timer.done
    timer.steps = [(0, 5.0, 10, 0.0), (1, 0.1, 10, 0.05), (2, 0.3, 10, 0.05)]  # step 0 (warm-up) is slow
    out = timer.results()
    assert out["throughput"] == pytest.approx(20 / 0.4) and out["latency_mean"] == pytest.approx(200.0)
    assert out["latency_p90"] == pytest.approx(280.0) and out["cpu_time_per_step"] == pytest.approx(50.0)


def test_clock_laps_and_peak_memory() -> None:
    clock = throughput.Clock(CPU)
    clock.start()
    first, second = clock.lap(), clock.lap()
    assert first >= 0 and second >= 0
    assert throughput.peak_memory_gib(CPU) > 0.01  # this process's peak RSS: a Python with torch loaded


def test_derived_seeds_keep_the_recipes_formula() -> None:
    """Every resumable run and saved metric depends on these values: they must never change."""
    assert derived_seed(0, 0, 0) == 0
    assert derived_seed(3, 2, 1000) == 3 * 1_000_003 + 2 * 7_919 + 1000
    assert derived_seed(2**62, 1, 5) == (2**62 * 1_000_003 + 7_919 + 5) % (2**63 - 1)
    seeds = {derived_seed(7, epoch, stream) for epoch in range(50) for stream in range(0, 7_919, 97)}
    assert len(seeds) == 50 * len(range(0, 7_919, 97))  # distinct (epoch, stream) pairs never collide
