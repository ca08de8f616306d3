"""common.peer_runs: interleaved runs in fresh processes, peers without our settings, medians with spreads."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from common import peer_runs
from common.errors import RunError


def _child(log: Path, name: str, value: float) -> list[str]:
    """A child that records its name (the run order) and prints its result as the last stdout line."""
    code = (f"import json, os; open({str(log)!r}, 'a').write({name!r} + ' ' + str(os.environ.get('THP_MEM_ALLOC_ENABLE')) + '\\n'); "
            f"print('noise'); print(json.dumps({{'train_throughput': {value}, 'peak_rss_gib': 1.0}}))")  # fmt: skip
    return [sys.executable, "-c", code]


def test_interleaves_runs_and_reports_median_min_max(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")
    log = tmp_path / "order.txt"
    runs = {
        "ours": (_child(log, "ours", 10.0), dict(os.environ)),
        "plain": (_child(log, "plain", 5.0), peer_runs.peer_env()),
    }
    results = peer_runs.interleave(runs, repeats=3)
    assert log.read_text().split("\n")[:-1] == ["ours 1", "plain None"] * 3  # interleaved; peer without THP
    results["ours"][1]["train_throughput"] = 16.0
    results["ours"][2]["train_throughput"] = 4.0
    row = peer_runs.summarize("batch_8", results)
    assert (row["batch_8_ours_train_throughput"], row["batch_8_ours_train_throughput_min"],
            row["batch_8_ours_train_throughput_max"]) == (10.0, 4.0, 16.0)  # fmt: skip
    assert row["batch_8_speedup_vs_plain"] == 2.0 and "batch_8_plain_load" in row


def test_a_failed_child_is_one_run_error_with_its_last_stderr_lines() -> None:
    with pytest.raises(RunError, match="run 'peer' failed \\(exit status 1\\).*KeyError: 'nope'"):
        peer_runs.run_child("peer", [sys.executable, "-c", "raise KeyError('nope')"], peer_runs.peer_env())
    with pytest.raises(RunError, match="run 'quiet' failed"):  # no result line is a failure too
        peer_runs.run_child("quiet", [sys.executable, "-c", "print('x')"], peer_runs.peer_env())


def test_time_steps_counts_samples_per_wall_and_cpu_second() -> None:
    calls = []
    result = peer_runs.time_steps(lambda i: calls.append(i) or torch.ones(()), 100, 2, 3, torch.device("cpu"))
    assert calls == [0, 1, 2, 3, 4] and result["train_throughput"] > 0 and result["peak_rss_gib"] > 0
    assert json.dumps(result)  # a child prints it as one JSON line
