from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from common import config


@dataclass(frozen=True)
class Cfg:
    data: Path | None = field(default=None, metadata={"help": "dataset dir"})
    batch_size: int = field(default=8, metadata={"help": "global batch", "aliases": ("-b",)})
    learning_rate: float = field(default=0.01, metadata={"help": "step size"})
    layers: list[int] = field(default_factory=lambda: [16, 8], metadata={"help": "MLP sizes"})
    amp: bool = field(default=False, metadata={"help": "mixed precision"})
    mode: Literal["train", "test"] = field(default="train", metadata={"help": "what to run"})
    name: str = field(default="run", metadata={"help": "run name"})

    def validate(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def test_defaults_and_flags() -> None:
    assert config.parse(Cfg, []) == Cfg()
    cfg = config.parse(
        Cfg, ["-b", "32", "--learning_rate", "1e-3", "--layers", "4", "2", "--amp", "--mode", "test"]
    )
    assert (cfg.batch_size, cfg.learning_rate, cfg.layers, cfg.amp, cfg.mode) == (
        32,
        1e-3,
        [4, 2],
        True,
        "test",
    )
    assert config.parse(Cfg, ["--amp", "--no-amp"]).amp is False
    assert config.parse(Cfg, ["--data", "x/y"]).data == Path("x/y")


def test_preset_then_command_line_wins(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("batch_size: 64\nlayers: [32, 16]\namp: true\nlearning_rate: 1\n")
    cfg = config.parse(Cfg, ["--config", str(preset), "--batch_size", "4"])
    assert cfg.batch_size == 4  # command line wins
    assert cfg.layers == [32, 16] and cfg.amp is True
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("batch_sise: 3\n", "unknown key.*batch_sise"),
        ("batch_size: 3.5\n", "'batch_size' must be an integer"),
        ("amp: 1\n", "'amp' must be true or false"),
        ("layers: 5\n", "'layers' must be a list"),
        ("mode: eval\n", "'mode' must be one of"),
        ("- a\n- b\n", "must be a mapping"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_bad_preset_is_an_error_naming_the_key(tmp_path: Path, text: str, message: str, capsys) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(text)
    with pytest.raises(SystemExit):
        config.parse(Cfg, ["--config", str(preset)])
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_validate_runs_and_values_are_not_rewritten(capsys) -> None:
    with pytest.raises(SystemExit):
        config.parse(Cfg, ["--batch_size", "0"])
    assert "batch_size must be positive, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config.parse(Cfg, ["--config", "/nonexistent/p.yaml"])
    assert "cannot read config preset" in capsys.readouterr().err


def test_help_documents_every_flag_with_default(capsys) -> None:
    with pytest.raises(SystemExit):
        config.parse(Cfg, ["--help"])
    out = capsys.readouterr().out
    for flag, default in [
        ("--batch_size", "8"),
        ("--layers", "16 8"),
        ("--amp", "False"),
        ("--mode", "'train'"),
    ]:
        assert flag in out
        assert f"(default: {default})" in out


def test_to_dict_is_plain() -> None:
    d = config.to_dict(Cfg(data=Path("/d")))
    assert d["data"] == "/d" and d["layers"] == [16, 8]
