"""NVIDIA's SIM command line (DLE-SIM scripts/run_model.sh = `mpiexec -np N python main.py ...`) runs as
written on tiny data and CPU: mpiexec's variables make one N-rank job, comma lists, `--dropout_rate -1`,
`--seed -1`, `--xla`, and the tf.data knobs are accepted with a note."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from common.config import parse
from common.logging import read_log
from sim.config import SimConfig
from tests.distributed_helpers import run_like_open_mpi

SEED_TINY = ["--embedding_dim", "8", "--long_seq_length", "14", "--stage_one_mlp_dims", "32",
             "--stage_two_mlp_dims", "32,16", "--aux_mlp_dims", "16,8", "--global_batch_size", "256",
             "--lr", "0.01", "--dropout_rate", "-1", "--seed", "-1", "--drop_remainder", "--disable_cache",
             "--prefetch_train_size", "10", "--prebatch_train_size", "0", "--no-progress", "--device", "cpu"]  # fmt: skip


def test_mpiexec_two_ranks_with_the_seed_flags(small, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "sim.train", "--dataset_dir", str(small.path), "--model_type", "din",
           "--epochs", "1", "--gsu_topk", "6", "--results_dir", str(tmp_path), *SEED_TINY]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.getcwd()}
    outs = run_like_open_mpi(cmd, env)
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


def test_nvidia_tfrecord_dataset_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    """NVIDIA's parquet_to_tfrecord.py output: its feature_spec.yaml (with the YAML alias it emits)."""
    from common import cli
    from sim import train

    feats = ["label", "user_feat_0", "item_feat_0_trgt", "item_feat_0_pos", "item_feat_0_neg"]
    spec = f"""channel_spec:
  label: [label]
  negative_history: [item_feat_0_neg]
  positive_history: [item_feat_0_pos]
  target_item_features: [item_feat_0_trgt]
  user_features: [user_feat_0]
feature_spec:
  item_feat_0_neg: {{cardinality: 50, dimensions: [10], dtype: int64}}
  item_feat_0_pos: {{cardinality: 50, dimensions: [10], dtype: int64}}
  item_feat_0_trgt: {{cardinality: 50, dtype: int64}}
  label: {{dtype: bool}}
  user_feat_0: {{cardinality: 9, dtype: int64}}
metadata: {{}}
source_spec:
  test:
  - {{type: tfrecord, features: &id001 [{", ".join(feats)}], files: [test/part_0.tfrecord]}}
  train:
  - {{type: tfrecord, features: *id001, files: [train/part_0.tfrecord]}}
"""
    (tmp_path / "feature_spec.yaml").write_text(spec)
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "part_0.tfrecord").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:  # as the command line runs it: common.cli.run
        cli.run(
            train.main,
            ["--dataset_dir", str(tmp_path), "--results_dir", str(tmp_path / "r"), "--device", "cpu"],
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "python -m sim.convert_tfrecord" in err
