"""ncf.benchmark and ncf.benchmark_prepare: ours vs the plain loop in separate processes, typed errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from common.errors import UsageError
from ncf import benchmark, benchmark_prepare
from ncf import benchmark_peers as peers
from ncf.model import NeuMF, NeuMFSizes

TINY = ["--users", "40", "--items", "30", "--train_rows", "400", "--device", "cpu"]


def test_train_runs_ours_and_the_plain_loop_in_separate_processes(tmp_path: Path) -> None:
    """Two child processes (each imports torch: a few seconds)."""
    argv = ["--mode", "train", *TINY, "--batch_sizes", "256", "--steps", "2", "--warmup", "1", "--repeats", "1",
            "--log_path", str(tmp_path / "b.json")]  # fmt: skip
    result = benchmark.main(argv)
    for name in ("ours", "plain"):
        key = f"batch_256_{name}_train_throughput"
        assert result[f"{key}_min"] <= result[key] <= result[f"{key}_max"] and result[key] > 0
    assert result["batch_256_speedup_vs_plain"] > 0 and result["peak_memory_gib"] > 0


def test_plain_loop_is_the_same_model_and_imports_no_recipe() -> None:
    sizes = NeuMFSizes(40, 30)
    plain = peers.PlainNeuMF(40, 30, sizes.mf_dim, list(sizes.mlp_layers), sizes.dropout)
    ours = NeuMF(sizes)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in ours.parameters())
    users, items = peers.synthetic_positives(40, 30, 1000)
    assert users.dtype == torch.int32 and users.min() >= 0 and users.max() < 40 and items.max() < 30
    tree = ast.parse(benchmark.PEERS_SCRIPT.read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {n for n in names if n.split(".")[0] in ("dlrm", "ncf", "sim")}


def test_too_few_rows_is_a_usage_error_before_any_run() -> None:
    with pytest.raises(UsageError, match="400 training rows .* fewer than 7 batches of 1024"):
        benchmark.main(["--mode", "train", *TINY, "--batch_sizes", "1024"])


def test_inference_reports_sorted_latency_percentiles() -> None:
    result = benchmark.main(["--mode", "inference", *TINY, "--batch_sizes", "1", "64", "--num_batches", "5"])
    for b in (1, 64):
        lat = [result[f"batch_{b}_{k}_latency"] for k in ("p50", "p90", "p95", "p99")]
        assert lat == sorted(lat) and result[f"batch_{b}_mean_throughput"] > 0


def test_prepare_benchmark_sizes_that_cannot_work_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot give 100 users >= 20"):
        benchmark_prepare.main(
            ["--ratings", "1000", "--users", "100", "--items", "50", "--workdir", str(tmp_path)]
        )


def test_help_documents_every_flag_with_its_default(capsys) -> None:
    for main, flags in ((benchmark.main, ("--repeats", "--compare_baseline", "--train_rows")),
                        (benchmark_prepare.main, ("--ratings", "--workdir", "--keep"))):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["--help"])
        out = capsys.readouterr().out
        assert all(flag in out for flag in flags) and "(default: " in out
