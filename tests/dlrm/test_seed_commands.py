"""NVIDIA's DLRM command lines (DLE DLRM README and main.py) run as written on tiny data and CPU, and the seed
flags keep the seed's meaning: --mode test / inference_benchmark, comma lists, --nofp16, --cuda_graphs,
--decay_steps 0, weights-only --load_checkpoint_path, --test_after, --dataset_subset, --output_dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import parse
from common.errors import UsageError
from common.logging import read_log
from dlrm import train
from dlrm.config import DlrmConfig
from dlrm.lr_schedule import LrSchedule

# tests/dlrm/conftest.py's TINY in the seed's spelling (comma lists)
SEED_TINY = ["--embedding_dim", "8", "--bottom_mlp_sizes", "32,8", "--top_mlp_sizes", "32,16,1",
             "--batch_size", "512", "--test_batch_size", "4096", "--lr", "1.0", "--warmup_steps", "20",
             "--decay_start_step", "100", "--decay_steps", "400", "--print_freq", "16", "--no-progress",
             "--device", "cpu"]  # fmt: skip


def _evals(log: Path) -> list[list[int]]:
    return [r["step"] for r in read_log(log) if r["type"] == "LOG" and "auc" in r["data"] and r.get("step")]


def test_train_test_and_inference_benchmark_modes(planted, tmp_path: Path, capsys) -> None:
    dataset, _ = planted
    base = ["--dataset", str(dataset), *SEED_TINY]
    ck = tmp_path / "ck.pt"
    trained = train.main(["--mode", "train", *base, "--max_steps", "40", "--nofp16", "--cuda_graphs",
                          "--save_checkpoint_path", str(ck), "--log_path", str(tmp_path / "train.json")])  # fmt: skip
    assert "--cuda_graphs (NVIDIA's flag) is ignored" in capsys.readouterr().err
    tested = train.main(["--mode", "test", *base, "--load_checkpoint_path", str(ck),
                         "--log_path", str(tmp_path / "test.json")])  # fmt: skip
    assert tested["auc"] == pytest.approx(trained["auc"], abs=1e-12)
    bench = train.main(["--mode", "inference_benchmark", *base, "--load_checkpoint_path", str(ck),
                        "--inference_benchmark_batch_sizes", "1,64", "--inference_benchmark_steps", "3",
                        "--log_path", str(tmp_path / "bench.json")])  # fmt: skip
    assert bench["batch_1_mean_throughput"] > 0 and bench["batch_64_mean_latency"] > 0


def test_load_checkpoint_path_loads_weights_and_does_not_resume(planted, tmp_path: Path) -> None:
    dataset, _ = planted
    base = ["--dataset", str(dataset), *SEED_TINY]
    ck = tmp_path / "ck.pt"
    first = train.main([*base, "--max_steps", "30", "--save_checkpoint_path", str(ck), "--log_path", ""])
    # One step at a vanishing lr from the loaded weights scores what the first run scored: the weights were
    # loaded; the step count starts at 0: nothing (step, schedule, best AUC) was resumed.
    tiny_step = [*base, "--max_steps", "1", "--lr", "1e-9"]
    again = train.main(
        [*tiny_step, "--load_checkpoint_path", str(ck), "--log_path", str(tmp_path / "log.json")]
    )
    params = next(r["data"] for r in read_log(tmp_path / "log.json") if r.get("step") == "PARAMETER")
    assert params["resumed_from_step"] == 0 and again["steps"] == 1
    assert again["auc"] == pytest.approx(first["auc"], abs=1e-6)
    fresh = train.main([*tiny_step, "--log_path", ""])
    assert abs(fresh["auc"] - first["auc"]) > 0.05


def test_test_after_dataset_subset_output_dir_and_warmup(planted, tmp_path: Path) -> None:
    dataset, _ = planted
    result = train.main(["--dataset", str(dataset), *SEED_TINY, "--epochs", "2", "--test_freq", "16",
                         "--test_after", "1", "--dataset_subset", "0.5", "--benchmark_warmup_steps", "5",
                         "--output_dir", str(tmp_path), "--log_path", "log.json"])  # fmt: skip
    steps = 65536 // 512 // 2  # --dataset_subset 0.5 of 128 full batches
    assert result["steps"] == 2 * steps
    evals = _evals(tmp_path / "log.json")  # written under --output_dir
    assert evals and min(step for _, step in evals) >= steps  # --test_after 1: none in the first epoch
    assert result["average_train_throughput"] > 0


def test_lr_schedule_decay_as_the_seed_means_it() -> None:
    no_decay = LrSchedule(2.0, warmup_steps=10, decay_start_step=20, decay_steps=0)
    assert [no_decay.lr(s) for s in (10, 21, 10**6)] == [2.0, 2.0, 2.0]  # --decay_steps 0: no decay
    cfg = parse(DlrmConfig, ["--decay_start_step", "none", "--synthetic_dataset"])
    unset = LrSchedule(2.0, cfg.warmup_steps, 0, cfg.decay_start_step, cfg.decay_steps)
    assert cfg.decay_start_step is None and unset.lr(10**6) == 2.0


def test_seed_flags_that_do_not_exist_here_say_what_to_use(capsys) -> None:
    with pytest.raises(SystemExit):
        train.main(["--synthetic_dataset", "--embedding_type", "custom_cuda"])
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "--embedding_type (NVIDIA's flag)" in err and "--embedding_sharding" in err
    )
    with pytest.raises(UsageError, match="float16 autocast is not supported on CPU"):
        train.main(["--synthetic_dataset", "--fp16", "--device", "cpu", *SEED_TINY[:6]])
    with pytest.raises(SystemExit):
        train.main(["--synthetic_dataset", "--mode", "test"])
    assert "--mode test evaluates --load_checkpoint_path" in capsys.readouterr().err
