"""Every DLRM command's --help documents each flag of its config dataclass with that flag's default."""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest

COMMANDS = {
    "dlrm.train": "dlrm.config:DlrmConfig",
    "dlrm.evaluate": "dlrm.evaluate:EvaluateConfig",
    "dlrm.export": "dlrm.export:ExportConfig",
    "dlrm.prepare_data": "dlrm.prepare_data:PrepareConfig",
    "dlrm.convert_bin": "dlrm.convert_bin:ConvertConfig",
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
