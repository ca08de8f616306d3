"""sim.benchmark and sim.benchmark_prepare: every flag documented with its default, each model timed on tiny
synthetic shapes with a parsable log, bad flags refused with one line naming the flag, and a failed
preparation raised as a RunError (not a SystemExit from inside the library)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common import config
from common.errors import RunError
from common.logging import read_log
from sim import benchmark, benchmark_prepare

TINY = ["--batch_size", "16", "--history_length", "8", "--long_seq_length", "5", "--embedding_dim", "4",
        "--user_cardinalities", "20", "--item_cardinalities", "50", "7", "--steps", "2", "--warmup", "1",
        "--pool", "2", "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize("cls", [benchmark.BenchmarkConfig, benchmark_prepare.PrepareBenchConfig])
def test_help_documents_every_flag_with_its_default(cls) -> None:
    text = " ".join(config.build_parser(cls).format_help().split())  # argparse wraps lines
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, list) else repr(default)
        shown = shown if isinstance(default, (list, str)) else str(default)
        assert f"--{f.name}" in text and f"(default: {shown})" in text, f.name


def test_benchmark_help_keeps_the_old_defaults() -> None:
    cfg = config.parse(benchmark.BenchmarkConfig, [])
    assert (cfg.model_type, cfg.batch_size, cfg.history_length, cfg.long_seq_length) == ("din", 4096, 100, 90)
    assert (cfg.steps, cfg.warmup, cfg.pool, cfg.din_attention, cfg.amp) == (20, 3, 4, "mlp", False)
    assert cfg.item_cardinalities == [1_209_081, 2_330] and cfg.user_cardinalities == [105_925]
    prep = config.parse(benchmark_prepare.PrepareBenchConfig, [])
    assert (prep.reviews, prep.seed, prep.keep, prep.workdir) == (3_000_000, 0, False, None)


@pytest.mark.parametrize(
    "model, extra",
    [
        ("din", ["--din_attention", "dot"]),
        ("dien", ["--long_seq_length", "0"]),
        ("sim", ["--mode", "inference"]),
    ],
)
def test_each_model_is_timed_and_logged(model: str, extra: list[str], tmp_path: Path) -> None:
    log = tmp_path / "bench.json"
    result = benchmark.main(["--model_type", model, *TINY, *extra, "--log_path", str(log)])
    assert result["throughput"] > 0 and result["peak_memory_gib"] > 0
    records = read_log(log)
    params = next(r["data"] for r in records if r.get("step") == "PARAMETER")
    assert params["model_type"] == model and params["batch_size"] == 16 and params["device"] == "cpu"
    assert params["item_cardinalities"] == [50, 7] and "torch" in params and params["threads"] == 1
    summary = [r["data"] for r in records if r.get("step") == []][-1]
    assert summary["throughput"] == pytest.approx(result["throughput"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--long_seq_length", "100"], "--long_seq_length must be in [0, --history_length)"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--item_cardinalities", "0"], "every cardinality must be >= 1"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(flags: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        benchmark.main(flags)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_prepare_benchmark_times_a_run_and_reuses_kept_input(tmp_path: Path, capsys) -> None:
    flags = [
        "--reviews",
        "3000",
        "--workdir",
        str(tmp_path),
        "--keep",
        "--log_path",
        str(tmp_path / "p.json"),
    ]
    first = benchmark_prepare.main(flags)
    assert first["reviews"] > 0 and first["wall_s"] > 0 and first["peak_rss_gb"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["amazon_3000_0", "p.json"]  # output removed
    assert "reviews/s" in capsys.readouterr().out
    benchmark_prepare.main(flags)
    assert "reusing" in capsys.readouterr().err
    params = next(r["data"] for r in read_log(tmp_path / "p.json") if r.get("step") == "PARAMETER")
    assert params["reviews"] == 3000 and params["workdir"] == str(tmp_path)


def test_a_failed_preparation_is_a_run_error_and_removes_the_input(tmp_path: Path) -> None:
    flags = ["--reviews", "3000", "--workdir", str(tmp_path), "--prepare_args", "--max_sequence_length 0"]
    with pytest.raises(RunError, match="sim.prepare_data failed"):
        benchmark_prepare.main(flags)
    assert list(tmp_path.iterdir()) == []
