"""Every shipped YAML preset loads into its recipe's config dataclass and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import config

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(ROOT.glob("*/configs/*.yaml"))


def _config_class(recipe: str) -> type:
    module = __import__(f"{recipe}.config", fromlist=["*"])
    return next(v for k, v in vars(module).items() if k.endswith("Config") and isinstance(v, type))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.relative_to(ROOT).as_posix() for p in PRESETS])
def test_preset_loads(preset: Path) -> None:
    cls = _config_class(preset.parts[-3])
    cfg = config.parse(cls, ["--config", str(preset)])
    for key, value in config.load_preset(cls, preset).items():
        assert config.to_dict(cfg)[key] == (str(value) if isinstance(value, Path) else value)


def test_there_are_presets() -> None:
    assert PRESETS
