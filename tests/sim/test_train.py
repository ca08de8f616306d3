"""SIM recipe tests on CPU: learning on planted interests, logs, checkpoints and exact resume, 1 vs 2 gloo
ranks, torchrun, inference and benchmark modes, bring-your-own datasets and bad-dataset errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from common import checkpoint
from common.checkpoint import CheckpointError
from common.errors import InputError, RecipeError
from common.feature_spec import FeatureSpec
from common.logging import read_log
from sim import data as sim_data
from sim import evaluate as sim_evaluate
from sim import train
from tests.distributed_helpers import run_distributed
from tests.sim.conftest import TINY, write_planted

LEARN = ["--epochs", "6", "--global_batch_size", "128", "--no-evaluate_train"]


def _train(dataset: Path, tmp: Path, *flags: str) -> dict:
    return train.main(
        ["--dataset_dir", str(dataset), "--seed", "3", "--results_dir", str(tmp), *TINY, *flags]
    )


@pytest.mark.parametrize("attention", ["mlp", "dot"])
def test_din_learns_beyond_the_no_history_baseline(
    planted, planted_no_history, tmp_path: Path, attention: str
) -> None:
    """DIN reads the planted long-term interests from the history, with the activation unit (the default)
    and with the dot product; the same model on the same rows with empty histories only has the user and
    target embeddings."""
    flags = ["--model_type", "din", "--din_attention", attention, *LEARN]
    din = _train(planted.path, tmp_path / "din", *flags)
    baseline = _train(planted_no_history.path, tmp_path / "base", *flags)
    assert din["test_auc"] > 0.72, din
    assert din["test_auc"] > baseline["test_auc"] + 0.1, (din["test_auc"], baseline["test_auc"])


@pytest.mark.slow
def test_sim_beats_din_beats_no_history(planted, planted_no_history, tmp_path: Path) -> None:
    """SIM sees both the long-term interests (long part) and the current intent (newest item, DIEN part);
    DIN cannot tell the newest item apart; DIEN sees only the intent; the baseline sees neither."""
    auc = {
        m: _train(planted.path, tmp_path / m, "--model_type", m, *LEARN)["test_auc"]
        for m in ("sim", "din", "dien")
    }
    auc["none"] = _train(planted_no_history.path, tmp_path / "none", "--model_type", "din", *LEARN)[
        "test_auc"
    ]
    assert auc["sim"] > auc["din"] > auc["none"] + 0.1, auc
    assert auc["dien"] > auc["none"], auc


def test_log_checkpoint_and_evaluate_agree(small, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    result = _train(
        small.path, tmp_path, "--model_type", "sim", "--epochs", "2", "--save_checkpoint_path", str(ckpt)
    )
    records = read_log(tmp_path / "log.json")
    units = {r["metric"]: r["metadata"].get("unit") for r in records if r["type"] == "METADATA"}
    assert (
        units["throughput"] == "samples/s" and units["latency_p90"] == "ms" and units["time_to_train"] == "s"
    )
    logs = [r for r in records if r["type"] == "LOG"]
    assert logs[0]["step"] == "PARAMETER" and logs[0]["data"]["seed"] == 3
    steps = [r for r in logs[1:-1] if len(r["step"]) == 2]
    epochs = [r for r in logs[1:-1] if len(r["step"]) == 1]
    assert steps and all(
        {"classification_loss", "dien_aux_loss", "total_loss", "samples/s"} == set(r["data"]) for r in steps
    )
    assert [r["step"] for r in epochs] == [[0], [1]] and logs[-1]["step"] == []
    for r in epochs:
        d = r["data"]
        assert {"throughput", "time", "latency_mean", "latency_p90", "latency_p95", "latency_p99"} <= set(d)
        assert all(0 <= d[k] <= 1 for k in ("train_auc", "test_auc"))
        assert all(math.isfinite(d[k]) and d[k] > 0 for k in ("train_loss", "test_loss", "throughput"))
    assert logs[-1]["data"]["time_to_train"] > 0 and logs[-1]["data"]["test_auc"] == result["test_auc"]
    again = sim_evaluate.main(
        ["--dataset_dir", str(small.path), "--checkpoint", str(ckpt), "--batch_size", "100"]
    )
    assert again["test_auc"] == pytest.approx(result["test_auc"], abs=1e-12)
    assert again["test_loss"] == pytest.approx(result["test_loss"], rel=1e-6)


def test_killed_run_resumes_to_the_same_metrics(small, tmp_path: Path, monkeypatch) -> None:
    flags = ("--model_type", "dien", "--epochs", "4", "--dropout_rate", "0.2")
    full = _train(small.path, tmp_path / "full", *flags)
    ckpt = tmp_path / "killed" / "ck.pt"
    real_epoch, calls = train.train_one_epoch, {"n": 0}

    def dies_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill mid-epoch")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(small.path, tmp_path / "killed", *flags, "--save_checkpoint_path", str(ckpt))
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    resumed = _train(small.path, tmp_path / "killed", *flags, "--save_checkpoint_path", str(ckpt),
                     "--load_checkpoint_path", str(ckpt))  # fmt: skip
    keys = ("train_auc", "train_loss", "test_auc", "test_loss", "epochs")
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}
    with pytest.raises(CheckpointError, match="embedding_dim"):  # a resumed run must keep the model flags
        _train(
            small.path,
            tmp_path / "killed",
            *flags,
            "--embedding_dim",
            "4",
            "--load_checkpoint_path",
            str(ckpt),
        )


def test_checkpoint_progress_is_typed_and_old_progress_resumes(small, tmp_path: Path) -> None:
    """Checkpoints store sim.checkpoint_rules.SimState; one written before it (progress = epoch + history
    only) still resumes, its missing counters starting from their defaults."""
    ckpt = tmp_path / "ck.pt"
    flags = ("--model_type", "din", "--global_batch_size", "128", "--no-evaluate_train",
             "--save_checkpoint_path", str(ckpt))  # fmt: skip
    _train(small.path, tmp_path, *flags, "--epochs", "1")
    saved = checkpoint.load(ckpt)
    progress = saved["progress"]
    assert progress["epoch"] == 1 and progress["seed"] == 3 and progress["elapsed"] > 0
    assert progress["global_step"] > 0 and progress["best"]["epoch"] == 0 and len(progress["history"]) == 1
    saved["progress"] = {"epoch": 1, "history": progress["history"]}  # the format before TrainState
    saved["checksum"] = checkpoint.checksum(saved)
    torch.save(saved, ckpt)
    resumed = _train(small.path, tmp_path, *flags, "--epochs", "2", "--load_checkpoint_path", str(ckpt))
    after = checkpoint.load(ckpt)["progress"]
    assert resumed["epochs"] == 2 and after["epoch"] == 2 and after["seed"] == 3
    assert after["global_step"] == progress["global_step"]  # one epoch's steps since the old file's default 0
    assert after["history"][0] == progress["history"][0] and len(after["history"]) == 2


def _evaluate_worker(dataset: str, ckpt: str) -> dict:
    return sim_evaluate.main(
        ["--dataset_dir", dataset, "--checkpoint", ckpt, "--device", "cpu", "--batch_size", "64"]
    )


def test_one_and_two_rank_evaluation_are_identical(small, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    _train(small.path, tmp_path, "--model_type", "sim", "--epochs", "1", "--save_checkpoint_path", str(ckpt))
    single = _evaluate_worker(str(small.path), str(ckpt))
    for rank_result in run_distributed(_evaluate_worker, str(small.path), str(ckpt), world_size=2):
        assert rank_result["test_auc"] == single["test_auc"]
        assert rank_result["test_loss"] == pytest.approx(single["test_loss"], rel=1e-6)  # fp32 batch sums


def test_torchrun_two_gloo_ranks_train(small, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sim.train",
           "--dataset_dir", str(small.path), "--model_type", "din", "--epochs", "1", "--seed", "5",
           "--results_dir", str(tmp_path), "--device", "cpu", *TINY]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG"]
    assert logs[0]["data"]["world_size"] == 2
    assert 0 < logs[-1]["data"]["test_auc"] < 1


def test_inference_and_benchmark_modes(small, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    bench = ["--benchmark", "--benchmark_warmup_steps", "1", "--benchmark_steps", "3"]
    trained = _train(
        small.path, tmp_path, "--model_type", "dien", "--save_checkpoint_path", str(ckpt), *bench
    )
    assert "test_auc" not in trained and trained["throughput"] > 0 and trained["peak_memory_gib"] > 0
    assert not ckpt.exists()  # a benchmark run trains, times and stops; it does not checkpoint
    _train(small.path, tmp_path, "--model_type", "dien", "--epochs", "1", "--save_checkpoint_path", str(ckpt))
    for flags in (["--load_checkpoint_path", str(ckpt), *bench], ["--model_type", "sim"]):
        result = _train(small.path, tmp_path, "--mode", "inference", *flags)
        assert result["throughput"] > 0 and result["latency_p99"] >= result["latency_p90"] > 0
    steps = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG" and len(r["step"]) == 2]
    assert steps and steps[0]["step"][0] == 0 and "samples/s" in steps[0]["data"]


@pytest.mark.parametrize(("item_features", "user_features"), [(1, 0), (3, 2)])
def test_any_feature_names_and_counts(tmp_path: Path, item_features: int, user_features: int) -> None:
    rename = {"label": "clicked", "item_feat_0_trgt": "asin", "item_feat_0_pos": "asin_history",
              "item_feat_0_neg": "sampled_asins", "user_feat_0": "reviewer"}  # fmt: skip
    planted = write_planted(tmp_path / "byo", users=60, train_rows_per_user=3, test_rows_per_user=1,
                            item_features=item_features, user_features=user_features, rename=rename)  # fmt: skip
    spec = yaml.safe_load((planted.path / "feature_spec.yaml").read_text())
    assert spec["channel_spec"]["target_item_features"][0] == "asin"
    for model_type in ("din", "sim"):
        result = _train(planted.path, tmp_path / model_type, "--model_type", model_type, "--epochs", "1")
        assert 0 <= result["test_auc"] <= 1


def test_shards_and_other_chunk_types_load_the_same_rows(small, tmp_path: Path) -> None:
    spec, schema = sim_data.open_spec(small.path)
    full = sim_data.load_split(spec, schema, "train", negative_length=6)
    assert full.total_rows == len(full) == 480 and full.rows.dtype == torch.int32
    shard = (37, 333)  # crosses a file boundary and row groups
    part = sim_data.load_split(spec, schema, "train", negative_length=6, shard=shard)
    assert torch.equal(part.rows, full.rows[37:333])
    batch = full.batch(torch.tensor([5, 2]))
    assert batch.history.shape == (2, 20, 2) and batch.neg_history.shape == (2, 6, 2)
    # the same split as one npy file per feature (FeatureSpec.read_mapping path)
    columns = spec.read_mapping("train")
    npy = tmp_path / "npy"
    npy.mkdir()
    for name, values in columns.items():
        np.save(npy / f"{name}.npy", values)
    raw = spec.to_dict()
    raw["source_spec"]["train"] = [{"type": "npy", "features": [n], "files": [f"{n}.npy"]} for n in columns]
    raw["source_spec"]["test"] = raw["source_spec"]["train"]
    other = FeatureSpec.from_dict(raw, npy)
    assert torch.equal(sim_data.load_split(other, schema, "train", negative_length=6).rows, full.rows)


def _broken(small, tmp_path: Path, change) -> Path:
    """A copy of the small dataset's spec (pointing at the same files) after change(spec_dict)."""
    raw = yaml.safe_load((small.path / "feature_spec.yaml").read_text())
    change(raw)
    for chunks in raw["source_spec"].values():
        chunks[0]["files"] = [str(small.path / f) for f in chunks[0]["files"]]
    (tmp_path / "feature_spec.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def _right_padded(small, tmp_path: Path) -> Path:
    """The small train split with every positive item-id history reversed (padding on the right)."""
    import pyarrow as pa

    table = pq.read_table(small.path / "train" / "part_0.parquet")
    history = np.array(table.column("item_feat_0_pos").to_pylist(), dtype=np.int32)[:, ::-1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(history.reshape(-1)), history.shape[1])
    table = table.set_column(table.schema.get_field_index("item_feat_0_pos"), "item_feat_0_pos", column)
    tmp_path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp_path / "bad.parquet")

    def change(raw):
        raw["source_spec"]["train"][0]["files"] = [str(tmp_path / "bad.parquet")]

    return _broken(small, tmp_path, change)


def _set(path: str, value):
    def change(raw):
        *keys, last = path.split(".")
        node = raw
        for k in keys:
            node = node[k]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return change


BAD = {
    "missing channel": (
        _set("channel_spec.negative_history", None),
        "channel_spec lacks ['negative_history']",
    ),
    "channel sizes": (
        _set("channel_spec.positive_history", ["item_feat_0_pos"]),
        "same features in the same order",
    ),
    "no dimensions": (_set("feature_spec.item_feat_1_neg.dimensions", None), "must be [T]"),
    "tables differ": (_set("feature_spec.item_feat_1_pos.cardinality", 99), "shares one embedding table"),
    "id range": (
        lambda raw: [
            raw["feature_spec"][f"item_feat_0_{s}"].update(cardinality=5) for s in ("trgt", "pos", "neg")
        ],
        "outside [0, 5]",
    ),
    "float ids": (_set("feature_spec.user_feat_0.dtype", "float32"), "needs integer ids"),
    "no test split": (_set("source_spec.test", None), "needs a 'test' mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_datasets_fail_with_one_clear_error(small, tmp_path: Path, case: str) -> None:
    change, message = BAD[case]
    broken = _broken(small, tmp_path, change)
    with pytest.raises(InputError) as error:
        _train(broken, tmp_path / "r", "--model_type", "sim", "--epochs", "1")
    assert error.value.exit_code == 2 and message in str(error.value), error.value


def test_the_command_line_prints_one_error_line(small, tmp_path: Path) -> None:
    """What a user sees (common.cli.run): one `error: ...` line naming the problem, no traceback, exit 2;
    nothing written to --results_dir."""
    broken = _broken(small, tmp_path, BAD["missing channel"][0])
    cmd = [sys.executable, "-m", "sim.train", "--dataset_dir", str(broken), "--results_dir", str(tmp_path / "r"),
           "--device", "cpu", *TINY]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: "), (
        proc.stderr
    )
    assert "channel_spec lacks ['negative_history']" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_other_bad_inputs(small, tmp_path: Path, capsys) -> None:
    cases = [
        ([], "--dataset_dir is required"),
        (["--dataset_dir", str(tmp_path)], "feature_spec.yaml"),
        (["--dataset_dir", str(_right_padded(small, tmp_path / "rp"))], "LEFT-padded"),
        (
            ["--dataset_dir", str(small.path), "--model_type", "dien", "--long_seq_length", "20"],
            "history longer",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(RecipeError) as error:
            train.main([*TINY, *argv, "--results_dir", str(tmp_path / "r")])
        assert error.value.exit_code == 2 and message in str(error.value), (message, error.value)
    with pytest.raises(SystemExit) as exit_info:  # a flag check: argparse's usage error
        train.main(["--dataset_dir", str(small.path), "--gsu_topk", "10", "--long_seq_length", "5"])
    assert exit_info.value.code == 2 and "exceeds long_seq_length" in capsys.readouterr().err


def _strip_din_attention(path: Path) -> None:
    """Rewrite a checkpoint as one written before --din_attention existed (no field in flags or sizes)."""
    ckpt = checkpoint.load(path)
    for part in ("config", "hyperparams"):
        del ckpt[part]["din_attention"]
    ckpt["checksum"] = checkpoint.checksum(ckpt)
    torch.save(ckpt, path)


@pytest.mark.parametrize("model_type", ["din", "sim"])
def test_checkpoint_from_before_din_attention_resumes_as_dot(small, tmp_path: Path, model_type) -> None:
    """An old DIN checkpoint holds a dot-product DIN: resuming it under the new default (mlp) is refused
    with the flag named, and resumes with --din_attention dot; old SIM checkpoints resume unchanged."""
    ckpt = tmp_path / "ck.pt"
    flags = ["--model_type", model_type, "--epochs", "1", "--global_batch_size", "128", "--no-evaluate_train",
             "--save_checkpoint_path", str(ckpt)]  # fmt: skip
    _train(small.path, tmp_path, *flags, "--din_attention", "dot" if model_type == "din" else "mlp")
    _strip_din_attention(ckpt)
    again = [*flags[:3], "2", *flags[4:], "--load_checkpoint_path", str(ckpt)]
    if model_type == "din":
        with pytest.raises(CheckpointError, match="--din_attention: 'dot' in the checkpoint, 'mlp' now"):
            _train(small.path, tmp_path, *again)
        again += ["--din_attention", "dot"]
    assert math.isfinite(_train(small.path, tmp_path, *again)["test_auc"])
