"""NCF commands refuse bad flags with argparse's usage error before anything runs (--help: tests/test_help.py)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("ncf.prepare_data", ["--output", "o"], "--input and --output are required"),
        ("ncf.prepare_data", ["--input", "i", "--output", "o", "--min_ratings", "0"], "--min_ratings >= 1"),
        ("ncf.prepare_data", ["--input", "i", "--output", "o", "--format", "tsv"], "invalid choice: 'tsv'"),
        ("ncf.transcode", ["--input_spec", "s.yaml"], "--input_spec and --output are required"),
        ("ncf.demo", ["--users", "0"], "--users and --items must be positive, got 0 and 1500"),
    ],
)
def test_bad_flags_are_a_usage_error_before_anything_runs(
    command: str, argv: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        importlib.import_module(command).main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
