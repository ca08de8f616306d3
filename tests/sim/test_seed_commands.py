"""NVIDIA's SIM command line (sim.md §3.1: scripts/run_model.sh = `mpiexec -np N python main.py ...`) runs as
written on tiny data and CPU: mpiexec's variables make one N-rank job, comma lists, `--dropout_rate -1`,
`--seed -1`, `--xla`, and the tf.data knobs are accepted with a note."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import parse
from common.logging import read_log
from sim.config import SimConfig
from tests.distributed_helpers import free_port

SEED_TINY = ["--embedding_dim", "8", "--long_seq_length", "14", "--stage_one_mlp_dims", "32",
             "--stage_two_mlp_dims", "32,16", "--aux_mlp_dims", "16,8", "--global_batch_size", "256",
             "--lr", "0.01", "--dropout_rate", "-1", "--seed", "-1", "--drop_remainder", "--disable_cache",
             "--prefetch_train_size", "10", "--prebatch_train_size", "0", "--no-progress", "--device", "cpu"]  # fmt: skip


def test_mpiexec_two_ranks_with_the_seed_flags(small, tmp_path: Path) -> None:
    port = str(free_port())
    cmd = [sys.executable, "-m", "sim.train", "--dataset_dir", str(small.path), "--model_type", "din",
           "--epochs", "1", "--gsu_topk", "6", "--results_dir", str(tmp_path), *SEED_TINY]  # fmt: skip
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.getcwd(),
               "MASTER_PORT": port, "OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": "2",
               "OMPI_COMM_WORLD_LOCAL_RANK": str(rank), "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}  # fmt: skip
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
            env.pop(name, None)
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "--disable_cache (NVIDIA's flag) is ignored" in outs[0][1]  # rank 0 says so, once
    assert "--disable_cache" not in outs[1][1]
    records = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG"]
    params = records[0]["data"]
    assert params["world_size"] == 2 and params["dropout_rate"] == 0.0 and params["seed"] >= 0
    assert params["stage_two_mlp_dims"] == [32, 16]
    assert 0 < records[-1]["data"]["test_auc"] < 1


def test_seed_spellings_parse_to_our_values(capsys) -> None:
    cfg = parse(SimConfig, ["--xla", "--seed", "-1", "--dropout_rate", "-1", "--stage_one_mlp_dims", "200"])
    assert (cfg.compile, cfg.seed, cfg.dropout_rate, cfg.stage_one_mlp_dims) == (True, None, 0.0, [200])
    assert parse(SimConfig, ["--seed", "7", "--dropout_rate", "0.1"]).seed == 7
    with pytest.raises(SystemExit):
        parse(SimConfig, ["--repeat_count", "2"])
    assert "--repeat_count (NVIDIA's flag): use --epochs" in capsys.readouterr().err
