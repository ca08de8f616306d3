from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Literal

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


@dataclass(frozen=True)
class SeedCfg:
    """A config with the seed-compatibility declarations (NVIDIA flags that are not fields)."""

    sizes: list[int] = field(default_factory=lambda: [512, 256], metadata={"help": "MLP sizes"})
    seed: int | None = field(default=None, metadata={"help": "seed", "seed_values": {-1: None}})
    dropout: float = field(default=0.0, metadata={"help": "dropout", "seed_values": {-1: 0.0}})
    out: Path | None = field(default=Path("o"), metadata={"help": "output"})
    compile: bool = field(default=False, metadata={"help": "compile", "aliases": ("--xla",)})
    amp: bool = field(default=False, metadata={"help": "amp"})
    amp_dtype: str = field(default="auto", metadata={"help": "dtype"})

    SEED_FLAGS: ClassVar[dict] = {
        "--fp16": {"amp": True, "amp_dtype": "float16"},
        "--cuda_graphs": config.Ignored("not captured here"),
        "--embedding_type": "use --sharding instead",
    }


def test_comma_lists_as_nvidia_writes_them() -> None:
    assert config.parse(SeedCfg, ["--sizes", "512,256,128"]).sizes == [512, 256, 128]
    assert config.parse(SeedCfg, ["--sizes", "4", "2,1"]).sizes == [4, 2, 1]
    assert config.parse(SeedCfg, ["--sizes", "200"]).sizes == [200]
    assert config.parse(SeedCfg, ["--sizes", "200,"]).sizes == [200]
    with pytest.raises(SystemExit):
        config.parse(SeedCfg, ["--sizes", "4,x"])


def test_seed_sentinels_aliases_and_unset_optionals() -> None:
    cfg = config.parse(SeedCfg, ["--seed", "-1", "--dropout", "-1", "--out", "", "--xla"])
    assert (cfg.seed, cfg.dropout, cfg.out, cfg.compile) == (None, 0.0, None, True)
    cfg = config.parse(SeedCfg, ["--seed", "7", "--dropout", "0.2", "--out", "none", "--no-xla"])
    assert (cfg.seed, cfg.dropout, cfg.out, cfg.compile) == (7, 0.2, None, False)


def test_seed_flags_set_values_note_or_refuse_in_one_line(capsys) -> None:
    cfg = config.parse(SeedCfg, ["--fp16"])
    assert (cfg.amp, cfg.amp_dtype) == (True, "float16")
    assert config.parse(SeedCfg, ["--fp16", "--amp_dtype", "bfloat16"]).amp_dtype == "bfloat16"  # ours win
    assert config.parse(SeedCfg, ["--cuda_graphs"]) == SeedCfg()
    assert "--cuda_graphs (NVIDIA's flag) is ignored: not captured here" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        config.parse(SeedCfg, ["--embedding_type", "custom_cuda"], prog="x")
    assert e.value.code == 2
    assert capsys.readouterr().err == "x: error: --embedding_type (NVIDIA's flag): use --sharding instead\n"


@pytest.mark.parametrize("flag", ["--local-rank=1", "--local_rank=1"])
def test_local_rank_of_torch_distributed_launch_is_accepted(flag: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert config.parse(Cfg, [flag, "-b", "4"]).batch_size == 4
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SystemExit):
        config.parse(Cfg, [flag])
    assert "disagrees with LOCAL_RANK=0" in capsys.readouterr().err
    monkeypatch.delenv("LOCAL_RANK")
    config.parse(Cfg, [flag])
    assert os.environ["LOCAL_RANK"] == "1"


@dataclass(frozen=True)
class FlagCfg:
    """Fields declared with config.flag, as every recipe's config is."""

    files: list[Path] = config.flag([], "input files", positional=True)
    sizes: list[int] = config.flag([4, 2], "sizes", "-s")
    seed: int | None = config.flag(None, "seed", seed_values={-1: None})
    name: str = config.flag("run", "run name")


def test_flag_declares_help_aliases_seed_values_and_copies_list_defaults(capsys) -> None:
    meta = {f.name: f.metadata for f in fields(FlagCfg)}
    assert meta["sizes"]["help"] == "sizes" and meta["sizes"]["aliases"] == ("-s",)
    assert meta["seed"]["seed_values"] == {-1: None} and meta["name"]["seed_values"] == {}
    one, two = FlagCfg(), FlagCfg()
    one.sizes.append(1)
    assert two.sizes == [4, 2]  # each instance gets its own copy of a list default
    cfg = config.parse(FlagCfg, ["a.json", "b.json", "-s", "8,4", "--seed", "-1"])
    assert (cfg.files, cfg.sizes, cfg.seed) == ([Path("a.json"), Path("b.json")], [8, 4], None)
    with pytest.raises(SystemExit):
        config.parse(FlagCfg, ["--name", "x"])  # a positional field is required
    assert "required: files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config.parse(FlagCfg, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "files input files (one or more; required)" in out and "--sizes SIZES [SIZES ...], -s SIZES" in out
    assert "sizes (default: 4 2)" in out and "run name (default: 'run')" in out


def test_parse_known_returns_the_other_commands_arguments(capsys) -> None:
    cfg, rest = config.parse_known(Cfg, ["--epochs", "3", "-b", "4", "--factors", "8"])
    assert cfg.batch_size == 4 and rest == ["--epochs", "3", "--factors", "8"]
    with pytest.raises(SystemExit):
        config.parse(Cfg, ["--epochs", "3"])
    assert "unrecognized arguments: --epochs 3" in capsys.readouterr().err
