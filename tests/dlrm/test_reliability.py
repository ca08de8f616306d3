"""Issue 10 for DLRM: never delete the input, refuse resumes and evaluations that would give silent wrong
results, never save a diverged model, leave no orphan workers, one clear line for every bad input."""

from __future__ import annotations

import errno
import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common import checkpoint, cli
from common.errors import InputError, RunError
from common.logging import read_log
from dlrm import benchmark, export, prepare_data, prepare_pipeline, train
from dlrm import evaluate as dlrm_evaluate
from dlrm.model import DLRM, DlrmSizes
from dlrm.synthetic import write_criteo_days
from tests.dlrm.conftest import TABLES, TINY, synthetic_split, write_dataset

ROOT = Path(__file__).resolve().parents[2]
PREP = ["--days", "2", "--workers", "1", "--frequency_threshold", "2", "--no-progress"]


def _exit(fn, args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit status, stderr) of an entry point run the way `python -m` runs it (common.cli.run: a typed error
    becomes one `error: ...` line and its exit status)."""
    with pytest.raises(SystemExit) as e:
        cli.run(fn, args)
    return e.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def raw_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("criteo") / "raw"
    write_criteo_days(raw, days=2, lines_per_day=300, seed=1)
    return raw


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


# ---- prepare_data ------------------------------------------------------------------------------------


def test_overwrite_never_deletes_the_input(raw_days: Path, tmp_path: Path, capsys) -> None:
    """--output equal to or above --input used to be replaced, input and all, with --overwrite."""
    root = tmp_path / "data"
    raw = root / "criteo"
    raw.mkdir(parents=True)
    for day in ("day_0", "day_1"):
        (raw / day).write_bytes((raw_days / day).read_bytes())
    before = _snapshot(root)
    cases = [(raw, "the same path as"), (root, "a parent of"), (tmp_path, "a parent of")]
    for output, relation in cases:
        code, err = _exit(
            prepare_data.main, ["--input", str(raw), "--output", str(output), "--overwrite", *PREP], capsys
        )
        assert code == 2 and f"--output is {relation} the input" in err and "Traceback" not in err, err
        assert _snapshot(root) == before and sorted(os.listdir(tmp_path)) == ["data"]
    kaggle = raw / "day_0"  # a Kaggle-style file input: its directory is its parent
    code, err = _exit(
        prepare_data.main, ["--input", str(kaggle), "--output", str(raw), "--overwrite", *PREP], capsys
    )
    assert code == 2 and "a parent of the input" in err and _snapshot(root) == before


def test_gzip_input_says_to_decompress(raw_days: Path, tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "day_0").write_bytes(gzip.compress((raw_days / "day_0").read_bytes()))  # gzipped, name kept
    (raw / "day_1").write_bytes((raw_days / "day_1").read_bytes())
    out = tmp_path / "out"
    code, err = _exit(prepare_data.main, ["--input", str(raw), "--output", str(out), *PREP], capsys)
    assert code == 2 and f"error: {raw / 'day_0'}: gzip-compressed; decompress it first" in err, err
    packed = tmp_path / "train.txt.gz"  # a truncated one is refused the same way, by its first bytes
    packed.write_bytes(gzip.compress((raw_days / "day_0").read_bytes())[:100])
    code, err = _exit(prepare_data.main, ["--input", str(packed), "--output", str(out), *PREP], capsys)
    assert code == 2 and f"error: {packed}: gzip-compressed" in err
    kaggle_dir = tmp_path / "kaggle"
    kaggle_dir.mkdir()
    (kaggle_dir / "train.txt.gz").write_bytes(packed.read_bytes())
    code, err = _exit(prepare_data.main, ["--input", str(kaggle_dir), "--output", str(out), *PREP], capsys)
    assert code == 2 and "train.txt.gz must be decompressed first" in err
    assert not out.exists()


def test_error_never_echoes_a_huge_field(raw_days: Path, tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = (raw_days / "day_0").read_text().splitlines()
    fields = lines[5].split("\t")
    fields[20] = "z" * 100_000  # a categorical that is not 8 hex digits, 100 kB long
    lines[5] = "\t".join(fields)
    (raw / "day_0").write_text("\n".join(lines) + "\n")
    (raw / "day_1").write_bytes((raw_days / "day_1").read_bytes())
    code, err = _exit(
        prepare_data.main, ["--input", str(raw), "--output", str(tmp_path / "out"), *PREP], capsys
    )
    assert code == 2 and f"{raw / 'day_0'} line 6: categorical feature C7" in err
    assert "100002 characters" in err and len(err) < 600, err


def test_full_disk_is_named_with_the_path(raw_days: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_pipeline, "assemble", full)  # pass 3 writes the train files
    out = tmp_path / "out"
    code, err = _exit(prepare_data.main, ["--input", str(raw_days), "--output", str(out), *PREP], capsys)
    assert code == 1 and f"error: no space left on device while writing {out}" in err, err  # RunError
    assert "Traceback" not in err and os.listdir(tmp_path) == []  # temp dir removed, nothing published


def _children(pid: int) -> list[int]:
    """Live (not zombie) child processes of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigkilled_prep_leaves_no_workers_and_its_temp_dir_is_cleaned(raw_days: Path, tmp_path: Path) -> None:
    """kill -9 of the main process used to leave spawned workers blocked on the task queue forever."""
    out = tmp_path / "out"
    args = ["--input", str(raw_days), "--output", str(out), *PREP[:2], "--workers", "2", *PREP[4:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dlrm.prepare_data", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline, workers = time.monotonic() + 60, []
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = [p for p in _children(proc.pid) if b"spawn_main" in _cmdline(p)]
            time.sleep(0.01)
        assert len(workers) == 2, "the prep never had its 2 workers running"
        os.kill(proc.pid, signal.SIGSTOP)  # freeze it while the pool is up, so the kill lands mid-run
        left = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, left)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, left)), [p for p in left if _alive(p)]
    stale = list(tmp_path.glob(".out.tmp-*"))
    assert len(stale) == 1 and (stale[0] / "owner").read_text().split()[1] == str(proc.pid)
    prepare_data.main(args[:4] + PREP)  # the next run removes the dead run's temp dir
    assert sorted(os.listdir(tmp_path)) == ["out"]


# ---- train / evaluate / export -----------------------------------------------------------------------


def _train(dataset: Path, tmp: Path, *flags: str) -> dict:
    return train.main(
        [
            "--dataset",
            str(dataset),
            "--log_path",
            str(tmp / "log.json"),
            "--save_checkpoint_path",
            str(tmp / "ck.pt"),
            *TINY,
            "--max_steps",
            "32",
            *flags,
        ]
    )


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A finished run's directory (ck.pt, log.json) and its summary."""
    tmp = tmp_path_factory.mktemp("run")
    return tmp, _train(planted[0], tmp)


def test_resume_with_changed_flags_is_refused(planted, trained, tmp_path: Path, capsys) -> None:
    """A finished run restarted with another --lr/--batch_size/--seed used to train nothing and report
    the old run's metrics under the new flags."""
    tmp, result = trained
    before = (tmp / "ck.pt").read_bytes()
    with pytest.raises(InputError) as e:  # a CheckpointError: one `error:` line, exit 2 (common.cli)
        _train(planted[0], tmp, "--lr", "0.5", "--batch_size", "256", "--seed", "7")
    err = str(e.value)
    assert e.value.exit_code == 2
    assert f"cannot resume from {tmp / 'ck.pt'}" in err and "--no-resume" in err
    for line in ("--lr: 1.0 in the checkpoint, 0.5 now", "--batch_size: 512 in the checkpoint, 256 now",
                 "--seed: 12345 in the checkpoint, 7 now"):  # fmt: skip
        assert line in err, err
    assert "--max_steps" not in err and "--log_path" not in err  # flags that cannot change the result
    assert (tmp / "ck.pt").read_bytes() == before
    again = _train(planted[0], tmp, "--progress")  # same flags: resumes (nothing left to train)
    assert again["auc"] == result["auc"]
    fresh = _train(planted[0], tmp_path, "--lr", "0.5")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "ck.pt").write_bytes(before)
    assert _train(planted[0], tmp_path / "old", "--lr", "0.5", "--no-resume")["auc"] == fresh["auc"]


def test_resume_on_other_data_is_refused(planted, tmp_path: Path, capsys) -> None:
    other = _other_dataset(tmp_path / "other", TABLES)  # the same cardinalities, fewer train rows
    _train(planted[0], tmp_path)
    with pytest.raises(InputError) as e:
        _train(other, tmp_path)
    err = str(e.value)
    assert (
        e.value.exit_code == 2
        and "trained on other data" in err
        and "train_rows: 65536 in the checkpoint, 8192 now" in err
    )


def _other_dataset(directory: Path, tables: tuple[int, ...]) -> Path:
    from dlrm.data import SyntheticCriteo

    gen = SyntheticCriteo(tables, seed=4)
    splits = {
        s: synthetic_split(gen, 8192 if s == "train" else 2048, k)[0]
        for k, s in enumerate(("train", "test", "validation"))
    }
    return write_dataset(directory, splits, tables)


def test_diverged_run_writes_no_checkpoint(planted, tmp_path: Path, capsys) -> None:
    """Evaluations between loss windows used to save the NaN weights (the loss check ran later)."""
    flags = ["--lr", "1e30", "--warmup_steps", "0", "--print_freq", "1000", "--test_freq", "4"]
    with pytest.raises(SystemExit) as e:  # through common.cli: what the user sees
        cli.run(lambda argv: _train(planted[0], tmp_path, *argv), flags)
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert "non-finite" in err and "step 4" in err and not (tmp_path / "ck.pt").exists()


def test_diverged_weights_are_never_saved(planted, tmp_path: Path, capsys, monkeypatch) -> None:
    """Even with a finite loss: checkpoint.save refuses NaN weights and train reports it as one line."""
    real = dlrm_evaluate.evaluate

    def poisoned(model, *args, **kwargs):  # a weight no test row touches goes NaN
        result = real(model, *args, **kwargs)
        with torch.no_grad():
            model.embeddings.parameters().__next__()[-1].fill_(float("nan"))
        return result

    monkeypatch.setattr(train, "evaluate", poisoned)
    with pytest.raises(RunError, match="refusing to write") as e:
        _train(planted[0], tmp_path, "--test_freq", "16")
    assert e.value.exit_code == 1
    assert not (tmp_path / "ck.pt").exists()


def _foreign(path: Path, recipe: str) -> Path:
    """A checkpoint of another recipe: `recipe` recorded, "unnamed" saved without one, "old" an older
    file (format 1) with another recipe's hyperparams."""
    model = torch.nn.Linear(3, 1)
    hyper = {"num_users": 10, "num_items": 20, "factors": 8}
    if recipe == "old":
        torch.save({"model": model.state_dict(), "hyperparams": hyper, "config": {}}, path)
        return path
    return checkpoint.save(
        path, model=model, hyperparams=hyper, recipe=None if recipe == "unnamed" else recipe
    )


@pytest.mark.parametrize("recipe", ["sim", "ncf", "unnamed", "old"])
def test_other_recipes_checkpoint_is_one_clear_error(planted, tmp_path: Path, capsys, recipe) -> None:
    path = _foreign(tmp_path / "other.pt", recipe)
    named = recipe in ("sim", "ncf")
    want = f"{path} is a {recipe} checkpoint; dlrm needs one" if named else "does not hold a DLRM checkpoint"
    code, err = _exit(dlrm_evaluate.main, ["--checkpoint", str(path), "--dataset", str(planted[0])], capsys)
    assert code == 2 and want in err and "Traceback" not in err, err
    code, err = _exit(
        export.main,
        ["--checkpoint", str(path), "--output", str(tmp_path / "x"), "--format", "torchscript"],
        capsys,
    )
    assert code == 2 and want in err and not (tmp_path / "x").exists(), err
    bench = ["--mode", "inference", "--checkpoint", str(path), "--device", "cpu", "--batch_sizes", "2"]
    code, err = _exit(lambda a: cli.run(benchmark.main, a), bench, capsys)  # main raises; the CLI exits
    assert code == 2 and want in err, err


def test_checkpoint_records_recipe_and_data_and_evaluate_checks_them(
    planted, trained, tmp_path: Path, capsys
) -> None:
    tmp, _ = trained
    ckpt = checkpoint.load(tmp / "ck.pt", recipe="dlrm")
    assert ckpt["recipe"] == "dlrm"
    assert ckpt["dataset"] == {"cardinalities": list(TABLES), "num_numerical": 13, "train_rows": 65536}
    bigger = _other_dataset(tmp_path / "bigger", (*TABLES[:3], TABLES[3] + 5, *TABLES[4:]))
    code, err = _exit(
        dlrm_evaluate.main, ["--checkpoint", str(tmp / "ck.pt"), "--dataset", str(bigger)], capsys
    )
    assert code == 2 and f"cardinalities {list(TABLES)}" in err and "a different dataset" in err, err
    # A hashed model fits any ids, so the table sizes alone (an older checkpoint without recorded data)
    # decide: they must be what training builds from this data's cardinalities.
    hashed = tmp_path / "hashed"
    hashed.mkdir()
    _train(planted[0], hashed, "--hash_indices")
    payload = checkpoint.load(hashed / "ck.pt")
    payload.pop("dataset")
    payload["format"] = 1
    torch.save(payload, hashed / "old.pt")
    code, err = _exit(
        dlrm_evaluate.main, ["--checkpoint", str(hashed / "old.pt"), "--dataset", str(bigger)], capsys
    )
    assert code == 2 and "do not match this data's cardinalities" in err, err
    same = _other_dataset(tmp_path / "same", TABLES)  # other rows, same vocabulary: evaluates
    assert (
        0
        < dlrm_evaluate.main(
            ["--checkpoint", str(hashed / "old.pt"), "--dataset", str(same), "--no-progress"]
        )["auc"]
        < 1
    )


def test_export_never_replaces_the_checkpoint_directory(tmp_path: Path, capsys) -> None:
    sizes = DlrmSizes(
        num_numerical=13, table_sizes=(5, 7), embedding_dim=4, bottom_mlp_sizes=(4,), top_mlp_sizes=(4, 1)
    )
    path = checkpoint.save(
        tmp_path / "run" / "best.pt", model=DLRM(sizes), hyperparams=sizes.as_dict(), recipe="dlrm"
    )
    code, err = _exit(
        export.main,
        [
            "--checkpoint",
            str(path),
            "--output",
            str(tmp_path / "run"),
            "--overwrite",
            "--format",
            "torchscript",
        ],
        capsys,
    )
    assert code == 2 and "a parent of the input" in err and path.is_file(), err


def test_resumed_run_appends_to_its_log(planted, tmp_path: Path) -> None:
    _train(planted[0], tmp_path, "--max_steps", "16")
    _train(planted[0], tmp_path, "--max_steps", "32")  # resumes at 16
    records = read_log(tmp_path / "log.json")
    params = [r["data"]["resumed_from_step"] for r in records if r.get("step") == "PARAMETER"]
    steps = [r["step"][1] for r in records if r["type"] == "LOG" and "loss" in r.get("data", {})]
    assert params == [0, 16] and steps == [16, 32]
    assert np.isfinite([r["data"]["loss"] for r in records if "loss" in r.get("data", {})]).all()
