"""Each NCF command run as `python -m ...` ends a refused or failed run the one way common.cli.run does: exactly
one `error: ...` line on stderr naming the problem, no traceback, exit status 2 for bad input or flags and
1 for a run that failed (diverged). The in-process tests call main and catch the typed error instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncf import prepare_data
from ncf.synthetic import write_movielens
from tests.ncf.conftest import TINY

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.getcwd()}


def _cli(module: str, *argv: str) -> tuple[int, list[str], str]:
    """(exit status, the stderr lines that start with `error: `, stderr) of python -m module argv."""
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=120,
                          env=ENV)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    return proc.returncode, errors, proc.stderr


@pytest.mark.parametrize(
    ("module", "argv", "named"),
    [
        ("ncf.train", ["--data", "{tmp}"], "{tmp}/feature_spec.yaml"),
        ("ncf.evaluate", ["--data", "{tmp}", "--baseline", "popularity"], "{tmp}/feature_spec.yaml"),
        ("ncf.quantize", ["--data", "{tmp}", "--checkpoint", "{tmp}/best.pt"], "checkpoint {tmp}/best.pt does not exist"),
        ("ncf.prepare_data", ["--input", "{tmp}/ratings.csv", "--output", "{tmp}/out"], "{tmp}/ratings.csv: input does not exist"),
        ("ncf.transcode", ["--input_spec", "{tmp}/spec.yaml", "--output", "{tmp}/out"], "{tmp}/spec.yaml"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line_and_exit_2(
    tmp_path: Path, module: str, argv: list[str], named: str
) -> None:
    code, errors, err = _cli(module, *(a.format(tmp=tmp_path) for a in argv))
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert named.format(tmp=tmp_path) in errors[0], err
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_diverged_run_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    raw = write_movielens(tmp_path / "raw", num_users=40, num_items=30, ratings_per_user=(8, 25), seed=3).path
    prepare_data.main(["--input", str(raw), "--output", str(tmp_path / "data"), "--min_ratings", "3",
                       "--valid_negative", "20"])  # fmt: skip
    code, errors, err = _cli("ncf.train", "--data", str(tmp_path / "data"), "--seed", "3", "--epochs", "1",
                             "--checkpoint_dir", str(tmp_path / "ck"), "--log_path", str(tmp_path / "log.json"),
                             *TINY, "--learning_rate", "1e30", "--batch_size", "128", "--device", "cpu")  # fmt: skip
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert "the run diverged; lower --learning_rate" in errors[0], err
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").iterdir())
