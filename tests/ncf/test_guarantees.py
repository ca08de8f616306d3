"""The guarantees of ncf/README.md "Guarantees" (issue 10): user input and trained checkpoints are never
deleted or replaced, a run never silently reports wrong results, crashes leave nothing behind."""

from __future__ import annotations

import errno
import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from common import checkpoint, cli
from common.logging import read_log
from ncf import data as ncf_data
from ncf import evaluate as ncf_evaluate
from ncf import prepare_data, train, transcode
from ncf.synthetic import write_movielens
from tests.ncf.conftest import TINY

SMALL = {"num_users": 40, "num_items": 30, "ratings_per_user": (8, 25), "seed": 3}


def _exit(main, argv: list, capsys: pytest.CaptureFixture, status: int = 2) -> str:
    """stderr of the command line main(*argv) (run in process as `python -m` runs it: common.cli.run), which
    must stop with exit `status` (2: bad input, 1: the run failed) and one clear error line, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.run(lambda _: main(*argv) if main is _train else main(argv), [])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert e.value.code == status and len(errors) == 1 and "Traceback" not in err, (e.value.code, err)
    return err


def _tree(root: Path) -> dict[str, str]:
    """Every file under root -> its SHA-256: proof that nothing was deleted or changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


# ---- preparation: --overwrite never deletes the input; stale temp dirs; gzip; long fields -------------


@pytest.mark.parametrize("where", ["same", "parent", "parent_of_file"])
def test_output_equal_to_or_above_the_input_is_refused_even_with_overwrite(tmp_path, capsys, where) -> None:
    raw = write_movielens(tmp_path / "raw" / "ml", **SMALL).path.parent  # tmp/raw/ml/ratings.csv
    given, output = {
        "same": (raw, raw),
        "parent": (raw, tmp_path / "raw"),
        "parent_of_file": (raw / "ratings.csv", raw),
    }[where]
    before = _tree(tmp_path)
    err = _exit(prepare_data.main, ["--input", str(given), "--output", str(output), "--overwrite"], capsys)
    assert "the input" in err and "nothing was changed" in err
    assert _tree(tmp_path) == before and not list(tmp_path.rglob(".*"))


def test_transcode_output_holding_its_csv_files_is_refused(tmp_path, capsys) -> None:
    src = tmp_path / "byo"
    src.mkdir()
    (src / "train.csv").write_text("0,1,1\n1,0,1\n")
    (src / "test.csv").write_text("0,1,1\n0,0,0\n1,0,1\n1,1,0\n")
    spec = {"feature_spec": {"u": {"cardinality": "auto"}, "i": {"cardinality": "auto"}, "l": None},
            "source_spec": {m: [{"type": "csv", "features": ["u", "i", "l"], "files": [f"{m}.csv"]}]
                            for m in ("train", "test")},
            "channel_spec": {"user_ch": ["u"], "item_ch": ["i"], "label_ch": ["l"]},
            "metadata": {"test_samples_per_series": 2}}  # fmt: skip
    yaml_dir = tmp_path / "specs"  # the spec lives elsewhere: only its csv files are under the output
    yaml_dir.mkdir()
    (yaml_dir / "spec.yaml").write_text(yaml.safe_dump({**spec, "source_spec": {
        m: [{**c, "files": [f"../byo/{m}.csv"]} for c in chunks] for m, chunks in spec["source_spec"].items()}}))  # fmt: skip
    before = _tree(tmp_path)
    for spec_path, out in ((yaml_dir / "spec.yaml", src), (yaml_dir / "spec.yaml", yaml_dir)):
        argv = ["--input_spec", str(spec_path), "--output", str(out), "--overwrite"]
        assert "the input" in _exit(transcode.main, argv, capsys)
    assert _tree(tmp_path) == before
    transcode.main(["--input_spec", str(yaml_dir / "spec.yaml"), "--output", str(tmp_path / "out")])


def test_transcode_refuses_a_test_series_mixing_two_users(tmp_path, capsys) -> None:
    src = tmp_path / "byo"
    src.mkdir()
    (src / "train.csv").write_text("0,1,1\n1,0,1\n")
    (src / "test.csv").write_text("0,1,1\n0,0,0\n1,0,1\n0,1,0\n")  # line 4: user 0 inside user 1's series
    spec = {"feature_spec": {"u": {}, "i": {}, "l": None},
            "source_spec": {m: [{"type": "csv", "features": ["u", "i", "l"], "files": [f"{m}.csv"]}]
                            for m in ("train", "test")},
            "channel_spec": {"user_ch": ["u"], "item_ch": ["i"], "label_ch": ["l"]},
            "metadata": {"test_samples_per_series": 2}}  # fmt: skip
    (src / "spec.yaml").write_text(yaml.safe_dump(spec))
    err = _exit(
        transcode.main, ["--input_spec", str(src / "spec.yaml"), "--output", str(tmp_path / "o")], capsys
    )
    assert f"{src / 'test.csv'} line 4: u 0 in test series 1" in err and "one user" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["byo"]


def test_stale_temp_dir_of_a_killed_prep_is_removed_by_the_next_run(tmp_path) -> None:
    raw = write_movielens(tmp_path / "raw", **SMALL).path
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # its pid now names no process, like a prep killed with SIGKILL
    stale = tmp_path / ".out.tmp-killed"
    stale.mkdir()
    (stale / "train_data_0.npy").write_bytes(b"half written")
    (stale / "owner").write_text(f"{__import__('socket').gethostname()} {dead.pid}\n")
    prepare_data.main(["--input", str(raw), "--output", str(tmp_path / "out"), "--min_ratings", "3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_gzipped_input_is_read_and_a_truncated_one_is_named(tmp_path, capsys) -> None:
    raw = write_movielens(tmp_path / "raw", **SMALL).path
    packed = tmp_path / "gz" / "ratings.csv.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(raw.read_bytes()))
    prepare_data.main(["--input", str(raw), "--output", str(tmp_path / "plain"), "--min_ratings", "3"])
    for given in (packed, packed.parent):  # the file, or a directory holding it
        out = tmp_path / f"from_{given.name}"
        prepare_data.main(["--input", str(given), "--output", str(out), "--min_ratings", "3"])
        for name in ("train_data_0.npy", "test_data_0.npy", "user_ids.npy", "item_ids.npy"):
            np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "plain" / name))
    cut = tmp_path / "cut" / "ratings.csv.gz"
    cut.parent.mkdir()
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    err = _exit(prepare_data.main, ["--input", str(cut), "--output", str(tmp_path / "x")], capsys)
    assert f"{cut}: truncated or corrupt gzip file" in err and not (tmp_path / "x").exists()


def test_errors_never_echo_a_huge_field(tmp_path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("1,2,3\n" + "1," + "7x" * 500_000 + ",4\n")
    err = _exit(
        prepare_data.main, ["--input", str(path), "--output", str(tmp_path / "o"), "--format", "csv"], capsys
    )
    assert f"{path} line 2: item '7x7x" in err and "(1000002 characters)" in err and len(err) < 600, err
    path.write_text("1,2,3\n" + "1,2,3," * 200_000 + "\n")  # too many fields: the line is cut too
    err = _exit(
        prepare_data.main, ["--input", str(path), "--output", str(tmp_path / "o"), "--format", "csv"], capsys
    )
    assert f"{path} line 2: expected 3 fields" in err and len(err) < 600, err


# ---- training: resume only with the same result-changing flags and data; NaN; checkpoints --------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared 40-user dataset: an epoch is one or two steps, so each run here takes a moment."""
    root = tmp_path_factory.mktemp("ncf_small")
    raw = write_movielens(root / "raw", **SMALL).path
    prepare_data.main(["--input", str(raw), "--output", str(root / "prepared"), "--min_ratings", "3",
                       "--valid_negative", "20"])  # fmt: skip
    return root / "prepared"


def _train(prepared: Path, tmp: Path, *flags: str) -> dict:
    return train.main(["--data", str(prepared), "--log_path", str(tmp / "log.json"),
                       "--checkpoint_dir", str(tmp / "ck"), *TINY, "--batch_size", "512", *flags])  # fmt: skip


def test_resume_refuses_changed_flags_or_data_and_appends_to_the_log(
    small, movielens, tmp_path, capsys
) -> None:
    first = _train(small, tmp_path, "--seed", "3", "--epochs", "1")
    last = tmp_path / "ck" / "last.pt"
    saved = checkpoint.load(last, recipe="ncf")
    data = ncf_data.load(small)
    assert saved["recipe"] == "ncf" and first["epochs"] == 1
    assert saved["dataset"] == {"num_users": 40, "num_items": data.num_items,
                                "train_rows": data.train_users.numel(), "test_series": 40}  # fmt: skip
    assert checkpoint.load(tmp_path / "ck" / "best.pt")["dataset"] == saved["dataset"]
    finished = _tree(tmp_path)

    # the finished run with other flags: refused (it used to train nothing and report the old metrics)
    changed = ["--seed", "4", "--learning_rate", "0.01", "--batch_size", "256", "--negative_samples", "2"]
    err = _exit(_train, [small, tmp_path, *changed, "--epochs", "1"], capsys)
    for line in ("--seed: 3 in the checkpoint, 4 now", "--learning_rate: 0.005 in the checkpoint, 0.01 now",
                 "--batch_size: 512 in the checkpoint, 256 now", "--negative_samples: 4 in the checkpoint, 2 now",
                 "--no-resume", "--checkpoint_dir"):  # fmt: skip
        assert line in err, err
    assert "--epochs" not in err.split("change the result")[1].split("Rerun")[0]
    # another dataset: refused too
    other = movielens[1]
    err = _exit(_train, [other, tmp_path, "--epochs", "2"], capsys)
    assert f"{last} was trained on another dataset: 40 users in the checkpoint, 400 in {other}" in err, err
    assert "--no-resume" in err and _tree(tmp_path) == finished  # checkpoints and log untouched

    # the same flags, one more epoch (no --seed: the checkpoint's): resumes and appends to the log
    resumed = _train(small, tmp_path, "--epochs", "2")
    assert resumed["epochs"] == 2
    logs = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG"]
    assert [r["step"] for r in logs] == ["PARAMETER", [0], [], "PARAMETER", [1], []]
    # a fresh start with --no-resume is always possible
    assert _train(small, tmp_path, *changed, "--epochs", "1", "--no-resume")["epochs"] == 1


def test_a_checkpoint_from_before_train_state_resumes_to_the_same_metrics(small, tmp_path) -> None:
    """last.pt of the ncf.train before TrainState kept progress = {epoch, history, best, elapsed}: it
    resumes to the metrics of an uninterrupted run, its optimizer step count is what its epochs took."""
    full = _train(small, tmp_path / "full", "--seed", "3", "--epochs", "2")
    _train(small, tmp_path / "old", "--seed", "3", "--epochs", "1")
    last = tmp_path / "old" / "ck" / "last.pt"
    payload = torch.load(last, weights_only=True)
    assert payload["progress"]["global_step"] > 0  # as written now
    payload["progress"] = {key: payload["progress"][key] for key in ("epoch", "history", "best", "elapsed")}
    del payload["checksum"]
    payload["checksum"] = checkpoint.checksum(payload)
    torch.save(payload, last)
    resumed = _train(small, tmp_path / "old", "--epochs", "2")
    keys = ("hr@10", "ndcg@10", "best_epoch", "train_loss", "validation_loss", "epochs")
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}
    progress = [checkpoint.load(tmp_path / run / "ck" / "last.pt")["progress"] for run in ("old", "full")]
    assert progress[0]["global_step"] == progress[1]["global_step"] and progress[0]["epoch"] == 2


def test_load_checkpoint_path_must_be_an_ncf_model_that_fits(small, tmp_path, capsys) -> None:
    _train(small, tmp_path, "--seed", "3", "--epochs", "1")
    best = tmp_path / "ck" / "best.pt"
    dlrm = checkpoint.save(tmp_path / "dlrm.pt", model=torch.nn.Linear(2, 1), hyperparams={}, recipe="dlrm")
    base = [
        "--data",
        str(small),
        "--log_path",
        str(tmp_path / "l.json"),
        *TINY,
        "--batch_size",
        "512",
        "--epochs",
        "1",
    ]
    err = _exit(train.main, [*base, "--load_checkpoint_path", str(dlrm)], capsys)
    assert f"{dlrm} is a dlrm checkpoint; ncf needs one written by ncf.train" in err
    err = _exit(train.main, [*base, "--load_checkpoint_path", str(best), "--factors", "4"], capsys)
    assert "does not fit the model to train: mf_dim 8 in the checkpoint, 4 now" in err, err
    err = _exit(ncf_evaluate.main, ["--data", str(small), "--checkpoint", str(dlrm)], capsys)
    assert "is a dlrm checkpoint" in err
    train.main([*base, "--load_checkpoint_path", str(best)])  # a fitting one loads


def test_non_finite_loss_stops_with_one_error_and_no_checkpoint(small, tmp_path, capsys) -> None:
    flags = ["--seed", "3", "--epochs", "2", "--learning_rate", "1e30", "--batch_size", "128"]
    err = _exit(_train, [small, tmp_path, *flags], capsys, status=1)
    assert "training loss is nan in epoch 0" in err or "training loss is inf in epoch 0" in err, err
    assert "--learning_rate" in err and not list((tmp_path / "ck").glob("*.pt"))


def test_full_disk_while_saving_a_checkpoint_is_one_line(small, tmp_path, capsys, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    err = _exit(_train, [small, tmp_path, "--seed", "3", "--epochs", "1"], capsys, status=1)
    assert f"no space left on device while writing {tmp_path / 'ck' / 'best.pt'}" in err, err
    assert not [p for p in (tmp_path / "ck").iterdir()]  # no temp file left either
