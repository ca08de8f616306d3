"""Dataclass config -> command line, with optional YAML presets.

One frozen dataclass per recipe is the single source of truth for its knobs. The command line is generated
from it, `--config preset.yaml` supplies defaults, and flags given on the command line win. Values are
type-checked and validated, never rewritten: a bad value is an error that names the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or preset key is wrong; the message names the field."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    """Check (and losslessly convert) one value against its field type; raise ConfigError otherwise."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: '{name}' must not be null")
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise ConfigError(f"{source}: '{name}' must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(base) or (Any,)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{name}' must be a list, got {value!r}")
        items = [_coerce(f"{name}[{i}]", v, item_type, source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: '{name}' must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: '{name}' must be an integer, got {value!r}")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: '{name}' must be a number, got {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: '{name}' must be a string, got {value!r}")
    if base is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{source}: '{name}' must be a path, got {value!r}")
    return value


def _argparse_type(tp: Any) -> dict[str, Any]:
    base, _ = _unwrap_optional(tp)
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        choices = typing.get_args(base)
        return {"type": type(choices[0]), "choices": choices}
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(base) or (str,)
        return {"type": item_type, "nargs": "+"}
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if base in (int, float, str, Path):
        return {"type": base}
    raise TypeError(f"unsupported config field type {tp!r}")


def _fmt_default(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def build_parser(
    cls: type, *, prog: str | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """One `--flag` per dataclass field; help text from `metadata['help']` plus the default."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML preset of defaults; flags on the command line win (default: None)",
    )
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if not help_text:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text")
        kwargs = _argparse_type(hints[f.name])
        flags = [f"--{f.name}", *f.metadata.get("aliases", ())]
        parser.add_argument(
            *flags,
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {_fmt_default(default)})",
            **kwargs,
        )
    return parser


def load_preset(cls: type, path: Path) -> dict[str, Any]:
    """Read a YAML preset; keys that are not fields are errors (a typo must not be silently ignored)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config preset {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config preset {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config preset {path} must be a mapping of field: value, got {type(data).__name__}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"config preset {path}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    hints = _field_types(cls)
    return {k: _coerce(k, v, hints[k], f"config preset {path}") for k, v in data.items()}


def parse(
    cls: type[T], argv: list[str] | None = None, *, prog: str | None = None, description: str | None = None
) -> T:
    """Defaults from the dataclass, then the preset, then the command line; then `cls.validate()`.

    Errors (unknown preset key, wrong type, failed validation) exit like argparse does: usage + message.
    """
    parser = build_parser(cls, prog=prog, description=description)
    args = vars(parser.parse_args(argv))
    preset = args.pop("config")
    values: dict[str, Any] = {}
    hints = _field_types(cls)
    try:
        if preset is not None:
            values.update(load_preset(cls, preset))
        values.update({k: _coerce(k, v, hints[k], "command line") for k, v in args.items()})
        cfg = cls(**values)
        validate = getattr(cfg, "validate", None)
        if validate is not None:
            validate()
    except (ConfigError, ValueError) as e:
        parser.error(str(e))
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON/YAML-friendly view of a config (paths as strings), for logs and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
