"""README: "every entry point writes DLLogger logs". Each recipe command (a module with main()) takes
--log_path, and the one-shot commands write the PARAMETER record and the [] summary there."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from common.logging import log_run, read_log
from ncf.synthetic import write_movielens

ROOT = Path(__file__).resolve().parent.parent


def test_every_recipe_command_takes_log_path(capsys) -> None:
    commands = [f"{recipe}.{p.stem}" for recipe in ("ncf", "dlrm", "sim") for p in (ROOT / recipe).glob("*.py")
                if re.search(r"^def main\(", p.read_text(), re.M)]  # fmt: skip
    assert len(commands) >= 20
    missing = []
    for name in commands:
        with pytest.raises(SystemExit):
            importlib.import_module(name).main(["--help"])
        text = capsys.readouterr().out
        if (
            "--log_path" not in text and "--log_filename" not in text
        ):  # sim.train: --results_dir/--log_filename
            missing.append(name)
    assert not missing, f"commands without --log_path: {missing}"


def test_log_run_writes_parameters_and_summary(tmp_path: Path) -> None:
    assert log_run(None, {"a": 1}, {"rows": 3}) == {"rows": 3}  # no path: nothing written
    log_run(tmp_path / "log.json", {"input": Path("/x"), "n": 2}, {"rows": 3})
    records = [r for r in read_log(tmp_path / "log.json") if r["type"] == "LOG"]
    assert [r["step"] for r in records] == ["PARAMETER", []]
    assert records[0]["data"] == {"input": "/x", "n": 2} and records[1]["data"] == {"rows": 3}


def test_preparation_writes_its_log(tmp_path: Path) -> None:
    from ncf import prepare_data

    syn = write_movielens(tmp_path / "raw", layout="ml-20m", num_users=30, num_items=60, seed=1)
    result = prepare_data.main(["--input", str(syn.path), "--output", str(tmp_path / "out"),
                                "--valid_negative", "5", "--log_path", str(tmp_path / "prep.json")])  # fmt: skip
    records = [r for r in read_log(tmp_path / "prep.json") if r["type"] == "LOG"]
    assert records[0]["data"]["valid_negative"] == 5
    assert records[-1]["step"] == [] and records[-1]["data"] == result
