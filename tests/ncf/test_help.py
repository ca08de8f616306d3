"""Every NCF command's --help documents each flag of its config dataclass with that flag's default."""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest

COMMANDS = {
    "ncf.train": "ncf.config:NcfConfig",
    "ncf.evaluate": "ncf.config:EvaluateConfig",
    "ncf.quantize": "ncf.config:QuantizeConfig",
    "ncf.prepare_data": "ncf.prepare_data:PrepareConfig",
    "ncf.transcode": "ncf.transcode:TranscodeConfig",
    "ncf.demo": "ncf.demo:DemoConfig",
}


def _shown(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_every_flag_with_its_default(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        importlib.import_module(command).main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    module, name = COMMANDS[command].split(":")
    fields = dataclasses.fields(getattr(importlib.import_module(module), name))
    starts = [re.search(rf"^  --{f.name}[ ,\n]", text, re.M) for f in fields]  # an entry, not a mention
    assert all(starts), [f.name for f, m in zip(fields, starts) if m is None]
    positions = sorted(m.start() for m in starts) + [len(text)]
    for f, m in zip(fields, starts):
        entry = " ".join(text[m.start() : positions[positions.index(m.start()) + 1]].split())
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f"(default: {_shown(default)})" in entry, (command, f.name, entry)


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
