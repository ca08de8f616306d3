"""Issue 10 for sim.train / sim.evaluate: a trained checkpoint is never replaced by a fresh run, a resume
with other result-changing flags or data is refused, a diverged run fails loudly without a checkpoint,
another recipe's checkpoint is one clear error, and a corrupt Parquet page names its file and row group."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from common import amp as amp_lib
from common import checkpoint, distributed
from common.errors import RecipeError
from common.feature_spec import FeatureSpecError
from common.logging import read_log
from sim import data as sim_data
from sim import evaluate as sim_evaluate
from sim import train
from sim.models import SimSizes, build_model
from sim.scoring import evaluate
from tests.sim.conftest import TINY, write_planted

FLAGS = ("--model_type", "din", "--epochs", "1")


def _train(dataset: Path, results: Path, *flags: str) -> dict:
    return train.main(["--dataset_dir", str(dataset), "--seed", "3", "--results_dir", str(results), *TINY,
                       *FLAGS, *flags])  # fmt: skip


def _error(call, code: int = 2) -> str:
    """Run `call`, expect a typed error (common.errors) whose exit status is `code`; return its message,
    as common.cli.run prints it."""
    with pytest.raises(RecipeError) as info:
        call()
    assert info.value.exit_code == code, info.value
    return f"error: {info.value}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small) -> Path:
    """A one-epoch DIN checkpoint of the small dataset (copy it before changing it)."""
    results = tmp_path_factory.mktemp("trained")
    _train(small.path, results, "--save_checkpoint_path", str(results / "ck.pt"))
    return results / "ck.pt"


def test_checkpoint_records_recipe_and_dataset(trained: Path, small) -> None:
    ckpt = checkpoint.load(trained, recipe="sim")
    assert ckpt["recipe"] == "sim"
    assert ckpt["dataset"] == {"user_cardinalities": [small.users], "item_cardinalities": [small.items,
                               small.categories], "history_length": small.history_length}  # fmt: skip


def test_fresh_run_never_replaces_a_trained_checkpoint(trained: Path, small, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    shutil.copy(trained, ckpt)
    before = ckpt.read_bytes()
    err = _error(lambda: _train(small.path, tmp_path, "--save_checkpoint_path", str(ckpt)))
    assert f"--load_checkpoint_path {ckpt}" in err and "--overwrite_checkpoint" in err, err
    other = tmp_path / "other.pt"  # resuming another file does not make this one replaceable either
    shutil.copy(trained, other)
    args = ("--save_checkpoint_path", str(ckpt), "--load_checkpoint_path", str(other), "--epochs", "2")
    assert "already exists" in _error(lambda: _train(small.path, tmp_path, *args))
    assert ckpt.read_bytes() == before
    _train(
        small.path, tmp_path, "--save_checkpoint_path", str(ckpt), "--overwrite_checkpoint", "--lr", "0.02"
    )
    assert checkpoint.load(ckpt)["config"]["lr"] == 0.02


def test_resume_with_changed_flags_is_refused_listing_them(trained: Path, small, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    shutil.copy(trained, ckpt)
    before = ckpt.read_bytes()
    changed = ("--lr", "0.5", "--seed", "4", "--embedding_dim", "4", "--global_batch_size", "128")
    resume = ("--save_checkpoint_path", str(ckpt), "--load_checkpoint_path", str(ckpt), "--epochs", "2")
    err = _error(lambda: _train(small.path, tmp_path, *resume, *changed))
    for line in ("--lr: 0.01 in the checkpoint, 0.5 now", "--seed: 3 in the checkpoint, 4 now",
                 "--embedding_dim: 8 in the checkpoint, 4 now", "--global_batch_size: 256 in the checkpoint"):  # fmt: skip
        assert line in err, err
    assert "drop --load_checkpoint_path" in err and "--overwrite_checkpoint" in err, err
    assert ckpt.read_bytes() == before
    # flags that cannot change the result (--epochs, where logs go, progress) resume; the log is appended
    shutil.copy(trained.parent / "log.json", tmp_path / "log.json")
    result = _train(small.path, tmp_path, *resume, "--log_every", "1", "--progress")
    assert result["epochs"] == 2
    epochs = [
        r["step"] for r in read_log(tmp_path / "log.json") if r["type"] == "LOG" and len(r["step"]) == 1
    ]
    assert epochs == [[0], [1]]


def test_resume_or_evaluate_on_other_data_is_refused(trained: Path, tmp_path: Path) -> None:
    other = write_planted(tmp_path / "other", users=120, train_rows_per_user=2, test_rows_per_user=1,
                          items=30, row_group_size=100)  # fmt: skip
    ckpt = tmp_path / "ck.pt"
    shutil.copy(trained, ckpt)
    resume = ("--save_checkpoint_path", str(ckpt), "--load_checkpoint_path", str(ckpt), "--epochs", "2")
    err = _error(lambda: _train(other.path, tmp_path, *resume))
    assert "trained on a different dataset: item_cardinalities: [24, 12] in the checkpoint, [30, 12]" in err
    evaluate = ["--dataset_dir", str(other.path), "--checkpoint", str(ckpt)]
    assert "different dataset" in _error(lambda: sim_evaluate.main(evaluate))


@pytest.mark.parametrize("written", ["now", "before checkpoints named their recipe"])
def test_other_recipes_checkpoint_is_one_clear_error(small, tmp_path: Path, written: str) -> None:
    """A DLRM checkpoint (today a bare TypeError from SimSizes)."""
    ckpt, hyperparams = tmp_path / "dlrm.pt", {"table_sizes": [3, 4], "bottom_mlp_sizes": [8]}
    model = torch.nn.Linear(2, 2)
    if written == "now":
        checkpoint.save(ckpt, model=model, hyperparams=hyperparams, recipe="dlrm")
    else:
        torch.save({"model": model.state_dict(), "hyperparams": hyperparams, "config": {}}, ckpt)
    message = "is a dlrm checkpoint; sim needs one" if written == "now" else "is not a SIM checkpoint"
    evaluate = ["--dataset_dir", str(small.path), "--checkpoint", str(ckpt)]
    assert message in _error(lambda: sim_evaluate.main(evaluate))
    assert message in _error(lambda: _train(small.path, tmp_path, "--load_checkpoint_path", str(ckpt)))
    inference = ("--mode", "inference", "--load_checkpoint_path", str(ckpt))
    assert message in _error(lambda: _train(small.path, tmp_path, *inference))


def test_diverged_run_fails_loudly_and_writes_no_checkpoint(small, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    err = _error(lambda: _train(small.path, tmp_path, "--lr", "1e30", "--save_checkpoint_path", str(ckpt)),
                 code=1)  # fmt: skip
    assert "non-finite (NaN/inf) training loss" in err and len(err.strip().splitlines()) == 1, err
    assert not ckpt.exists() and not list(tmp_path.glob(".ck.pt*"))


def test_auc_refuses_non_finite_logits(small) -> None:
    spec, schema = sim_data.open_spec(small.path)
    data = sim_data.load_split(spec, schema, "test", negative_length=0)
    model = build_model(SimSizes("din", schema.user_cardinalities, schema.item_cardinalities, 8, 14, 6))
    with torch.no_grad():
        model.item_embedding.weight[1:].fill_(float("nan"))
    env = distributed.init("cpu")
    with pytest.raises(FloatingPointError, match="non-finite"):
        evaluate(model, data, env, 64, amp_lib.setup(False, env.device))


def test_full_disk_while_checkpointing_is_one_line(small, tmp_path: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    ckpt = tmp_path / "ck.pt"
    err = _error(lambda: _train(small.path, tmp_path, "--save_checkpoint_path", str(ckpt)), code=1)
    assert f"no space left on device while writing {ckpt}" in err, err
    assert not ckpt.exists() and not list(tmp_path.glob(".ck.pt*"))


def flip_page(path: Path, row_group: int, column: str) -> None:
    """Overwrite 16 bytes in the middle of a column chunk's data page (after its header)."""
    group = pq.ParquetFile(path).metadata.row_group(row_group)
    chunk = next(
        c for c in map(group.column, range(group.num_columns)) if c.path_in_schema.startswith(column)
    )
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    middle = (chunk.data_page_offset + end) // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_corrupt_parquet_page_names_file_and_row_group(small, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(small.path, copy)
    part = copy / "train" / "part_1.parquet"
    # zstd without checksums: the page no longer decompresses
    pq.write_table(pq.read_table(part), part, row_group_size=100, compression="zstd", use_dictionary=False)
    flip_page(part, 1, "item_feat_0_pos")
    err = _error(lambda: _train(copy, tmp_path / "r"))
    assert "part_1.parquet)" in err and "row group 1 of 3 is corrupt" in err, err
    # as sim.prepare_data writes them (page CRCs): even a flip that still decodes is caught
    part = copy / "train" / "part_0.parquet"
    pq.write_table(pq.read_table(part), part, row_group_size=100, compression="none", use_dictionary=False,
                   write_page_checksum=True)  # fmt: skip
    flip_page(part, 2, "item_feat_0_pos")
    spec, schema = sim_data.open_spec(copy)
    with pytest.raises(FeatureSpecError, match=r"part_0.parquet\): row group 2 of \d+ is corrupt.*CRC"):
        sim_data.load_split(spec, schema, "train", negative_length=0)
