"""NCF recipe smoke, learning, resume and distributed tests (CPU)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common import distributed
from common.errors import InputError, UsageError
from common.logging import read_log
from ncf import data as ncf_data
from ncf import evaluate as ncf_evaluate
from ncf import train
from tests.distributed_helpers import run_distributed
from tests.ncf.conftest import TINY


def _train(prepared: Path, tmp: Path, *flags: str) -> dict:
    return train.main(["--data", str(prepared), "--seed", "3", "--log_path", str(tmp / "log.json"),
                       "--checkpoint_dir", str(tmp / "ck"), *TINY, *flags])  # fmt: skip


def test_learns_beyond_popularity_towards_the_oracle(movielens, tmp_path: Path) -> None:
    syn, prepared = movielens
    result = _train(prepared, tmp_path, "--epochs", "10")
    data = ncf_data.load(prepared)
    env = distributed.DistEnv(0, 0, 1, torch.device("cpu"))
    popularity, _ = ncf_evaluate.ranking_metrics(ncf_evaluate.popularity_scores(data, env), data, env, 10)
    users = np.load(prepared / "user_ids.npy")[data.test_users.numpy()]
    items = np.load(prepared / "item_ids.npy")[data.test_items.numpy()]
    oracle, _ = ncf_evaluate.ranking_metrics(torch.from_numpy(syn.scores(users, items)), data, env, 10)
    assert oracle > popularity + 0.1  # the planted signal is there
    assert result["hr@10"] > popularity + 0.05, (result["hr@10"], popularity, oracle)
    assert result["hr@10"] > popularity + 0.5 * (oracle - popularity), (result["hr@10"], popularity, oracle)


def test_log_checkpoint_and_evaluate_agree(movielens, tmp_path: Path) -> None:
    _, prepared = movielens
    result = _train(prepared, tmp_path, "--epochs", "3")
    records = read_log(tmp_path / "log.json")
    logs = [r for r in records if r["type"] == "LOG"]
    assert logs[0]["step"] == "PARAMETER" and logs[0]["data"]["seed"] == 3
    assert [r["step"] for r in logs[1:]] == [[0], [1], [2], []]
    for r in logs[1:-1]:
        d = r["data"]
        assert math.isfinite(d["train_loss"]) and math.isfinite(d["validation_loss"])
        assert 0 <= d["hr@10"] <= 1 and 0 <= d["ndcg@10"] <= d["hr@10"] and d["train_throughput"] > 0
    assert {"best_accuracy", "best_epoch", "time_to_target", "time_to_best_model"} <= set(logs[-1]["data"])
    again = ncf_evaluate.main(["--data", str(prepared), "--checkpoint", str(tmp_path / "ck" / "best.pt")])
    assert (again["hr@10"], again["ndcg@10"]) == (result["hr@10"], result["ndcg@10"])


def test_killed_run_resumes_to_the_same_metrics(movielens, tmp_path: Path, monkeypatch) -> None:
    _, prepared = movielens
    full = _train(prepared, tmp_path / "full", "--epochs", "4")
    real_epoch = train.train_one_epoch
    calls = {"n": 0}

    def dies_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill mid-epoch")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(prepared, tmp_path / "killed", "--epochs", "4")
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    resumed = _train(prepared, tmp_path / "killed", "--epochs", "4")
    keys = ("hr@10", "ndcg@10", "best_epoch", "train_loss", "validation_loss", "epochs")
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}


@pytest.mark.parametrize(
    "flags",
    [("--grads_accumulated", "2"), ("--optimizer", "sparse_adam"), ("--amp",), ("--negative_samples", "0")],
)
def test_training_variants_run(movielens, tmp_path: Path, flags) -> None:
    _, prepared = movielens
    result = _train(prepared, tmp_path, "--epochs", "1", *flags)
    assert 0 <= result["hr@10"] <= 1 and math.isfinite(result["train_loss"])


def _evaluate_worker(prepared: str, ckpt: str) -> dict:
    return ncf_evaluate.main(
        ["--data", prepared, "--checkpoint", ckpt, "--device", "cpu", "--valid_batch_size", "310"]
    )


def test_one_and_two_rank_evaluation_are_identical(movielens, tmp_path: Path) -> None:
    _, prepared = movielens
    _train(prepared, tmp_path, "--epochs", "1")
    ckpt = str(tmp_path / "ck" / "best.pt")
    single = _evaluate_worker(str(prepared), ckpt)
    ranks = run_distributed(_evaluate_worker, str(prepared), ckpt, world_size=2)
    for r in ranks:
        assert (r["hr@10"], r["ndcg@10"]) == (single["hr@10"], single["ndcg@10"])
        assert r["validation_loss"] == pytest.approx(single["validation_loss"], rel=1e-9)


def test_torchrun_two_gloo_ranks_train(movielens, tmp_path: Path) -> None:
    _, prepared = movielens
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ncf.train",
           "--data", str(prepared), "--epochs", "2", "--seed", "5", "--log_path", str(tmp_path / "log.json"),
           "--device", "cpu", *TINY]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG"]
    assert logs[0]["data"]["world_size"] == 2
    assert 0 < logs[-1]["data"]["hr@10"] <= 1


def test_clear_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(UsageError, match="--data is required"):
        train.main([])
    with pytest.raises(InputError, match="feature_spec.yaml"):
        train.main(["--data", str(tmp_path), "--log_path", str(tmp_path / "log.json")])
    with pytest.raises(SystemExit):  # a bad flag value: argparse's usage error
        train.main(["--data", str(tmp_path), "--layers", "7", "4"])
    assert "even first size" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written: no log
