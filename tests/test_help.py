"""Every command's --help documents each flag of its config dataclass with that flag's default.

Commands are found, not listed: every module whose `__main__` block calls `cli.run(main)`. The config class
is the one its main hands to common.config (recorded by wrapping build_parser), so a new command or flag
is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from common import config

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for d in ("common", "ncf", "dlrm", "sim")
    for p in (ROOT / d).rglob("*.py")
    if "cli.run(main)" in p.read_text() and p.name != "cli.py"
)


def _shown(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def test_every_recipe_has_its_commands() -> None:
    for command in ("ncf.train", "ncf.evaluate", "ncf.quantize", "dlrm.train", "dlrm.export", "sim.train"):
        assert command in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_every_flag_with_its_default(command: str, capsys, monkeypatch) -> None:
    seen: list[type] = []
    real = config.build_parser

    def recording(cls, **kwargs):
        seen.append(cls)
        return real(cls, **kwargs)

    monkeypatch.setattr(config, "build_parser", recording)
    with pytest.raises(SystemExit) as e:
        importlib.import_module(command).main(["--help"])
    assert e.value.code == 0 and len(seen) == 1, f"{command} must parse one config dataclass"
    text = capsys.readouterr().out
    for f in dataclasses.fields(seen[0]):
        if f.metadata.get("positional"):
            assert re.search(rf"^  {f.name}\b", text, re.M), (command, f.name)
            continue
        entry = re.search(
            rf"^  --{f.name}[ ,\n](.*?)(?=^  -|\Z)", text, re.M | re.S
        )  # an entry, not a mention
        assert entry, (command, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f"(default: {_shown(default)})" in " ".join(entry.group(0).split()), (command, f.name)
