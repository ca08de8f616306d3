"""NVIDIA's NCF command lines (DeepLearningExamples README) run as written, on tiny data and CPU:
`python -m torch.distributed.launch` (which passes --local-rank), `mpiexec`'s variables, the seed's flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.logging import read_log
from ncf import train
from tests.distributed_helpers import free_port, run_like_open_mpi

# The seed's spellings: -b1/-b2 aliases and comma lists.
SEED_TINY = ["-f", "8", "--layers", "32,16,8", "-b", "2048", "-l", "0.005", "-b1", "0.9", "-b2", "0.999",
             "--dropout", "0.1", "--no-progress", "--device", "cpu"]  # fmt: skip
CPU_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.getcwd()}


def _logged(path: Path) -> list[dict]:
    return [r["data"] for r in read_log(path) if r["type"] == "LOG"]


@pytest.mark.parametrize("use_env", [False])  # --use-env is what torchrun does (test_train.py)
def test_torch_distributed_launch_two_gloo_ranks(movielens, tmp_path: Path, use_env: bool) -> None:
    """Without --use-env the launcher appends --local-rank=N, which every entry point used to reject."""
    _, prepared = movielens
    cmd = [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=2", f"--master_port={free_port()}",
           *(["--use-env"] if use_env else []), "-m", "ncf.train", "--data", str(prepared), "-e", "1", "-s", "5",
           "--log_path", str(tmp_path / "log.json"), *SEED_TINY]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=CPU_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = _logged(tmp_path / "log.json")
    assert logs[0]["world_size"] == 2 and logs[0]["layers"] == [32, 16, 8] and logs[0]["beta1"] == 0.9
    assert 0 < logs[-1]["hr@10"] <= 1


def test_mpiexec_variables_make_one_two_rank_job(movielens, tmp_path: Path) -> None:
    """What `mpiexec -np 2 python -m ncf.train ...` (Open MPI) gives each process: before, two independent
    single-process jobs on the same device wrote one log; now they join one gloo group."""
    _, prepared = movielens
    cmd = [sys.executable, "-m", "ncf.train", "--data", str(prepared), "-e", "1", "-s", "5",
           "--log_path", str(tmp_path / "log.json"), *SEED_TINY]  # fmt: skip
    run_like_open_mpi(cmd, CPU_ENV)
    logs = _logged(tmp_path / "log.json")
    assert logs[0]["world_size"] == 2
    epochs = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG" and r["step"] == [0]]
    assert len(epochs) == 1  # one epoch record: one job, not two


def test_mode_test_and_checkpoint_dir_as_the_seed_uses_them(movielens, tmp_path: Path, capsys) -> None:
    _, prepared = movielens
    base = ["--data", str(prepared), "-s", "3", *SEED_TINY]
    trained = train.main([*base, "-e", "1", "--checkpoint_dir", str(tmp_path / "ck"), "--log_path", ""])
    assert (tmp_path / "ck" / "best.pt").is_file()  # the seed's model.pth: the weights of the best epoch
    tested = train.main([*base, "--mode", "test", "--load_checkpoint_path", str(tmp_path / "ck" / "best.pt"),
                         "--log_path", str(tmp_path / "test.json")])  # fmt: skip
    assert (tested["hr@10"], tested["ndcg@10"]) == (trained["hr@10"], trained["ndcg@10"])
    assert "hr@10" in read_log(tmp_path / "test.json")[-1]["data"]
    train.main([*base, "-e", "1", "--checkpoint_dir", "", "--log_path", str(tmp_path / "l.json")])
    assert not (Path.cwd() / "best.pt").exists()  # '' = no checkpoint, as in the seed
    with pytest.raises(SystemExit):
        train.main([*base, "--mode", "test"])
    assert "--mode test evaluates --load_checkpoint_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main([*base, "--opt_level", "O2"])
    assert "--opt_level (NVIDIA's flag): the 2019 apex flag: use --amp" in capsys.readouterr().err


def test_launch_local_rank_reaches_an_entry_point_with_its_own_argparse(movielens, tmp_path: Path) -> None:
    """ncf.evaluate parses its own flags; run_main strips the launcher's --local-rank before it does."""
    _, prepared = movielens
    cmd = [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "ncf.evaluate", "--data", str(prepared), "--baseline", "popularity", "--device", "cpu",
           "--log_path", str(tmp_path / "eval.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=CPU_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 0 < read_log(tmp_path / "eval.json")[-1]["data"]["hr@10"] < 1
