"""Dataclass config -> command line, with optional YAML presets.

One frozen dataclass per recipe is the single source of truth for its knobs. The command line is generated
from it, `--config preset.yaml` supplies defaults, and flags given on the command line win. Values are
type-checked and validated, never rewritten: a bad value is an error that names the field. Every field is
declared with `flag(default, help, *aliases, seed_values=...)`; the parser itself is in common.config_parser.

Seed compatibility (NVIDIA DeepLearningExamples command lines work as written), declared on the dataclass:
- flag `aliases` (field metadata): the seed's other spellings of a flag (`-b1`, `--xla`);
- flag `seed_values`: the seed's sentinel values and ours ({-1: None}: "--seed -1 = unseeded"),
  applied to command-line and preset values before type checks (for choices too: cuda_dot -> dot);
- class attribute `SEED_FLAGS`: a seed flag that is not a field, mapped to the field values it sets
  ({"--fp16": {"amp": True, "amp_dtype": "float16"}}), to `Ignored(why)` (accepted with a one-line note:
  a tuning knob of the seed's framework) or to a one-line message saying what to use instead (exit 2);
- list fields take NVIDIA's comma form (`--bottom_mlp_sizes 512,256,128`) as well as spaces, optional
  fields take `none` or '' (unset), and `--local_rank/--local-rank N` (torch.distributed.launch without
  --use-env) is accepted and checked against LOCAL_RANK.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common.config_parser import Ignored, build_parser, unwrap_optional
from common.errors import UsageError

__all__ = ["ConfigError", "Ignored", "build_parser", "default_dict", "flag", "load_preset", "parse"]
__all__ += ["parse_known", "to_dict"]

T = TypeVar("T")


class ConfigError(UsageError):
    """A config value or preset key is wrong; the message names the field."""


def flag(
    default: Any,
    help: str,  # noqa: A002 - reads like the flag table it declares
    *aliases: str,
    seed_values: dict | None = None,
    positional: bool = False,
) -> Any:
    """One config field and its command-line flag: the --help text (parse appends the default), the seed's
    other spellings (`aliases`, e.g. "-b1") and sentinel values mapped to ours (`seed_values`, {-1: None}).
    A list default is copied per instance. `positional`: a list field given as bare arguments (file names)."""
    meta = {"help": help, "aliases": aliases, "seed_values": seed_values or {}, "positional": positional}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    """Check (and losslessly convert) one value against its field type; raise ConfigError otherwise."""
    base, optional = unwrap_optional(tp)
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


def _seed_value(cls: type, name: str, value: Any) -> Any:
    """The seed's sentinel values (field metadata `seed_values`, e.g. {-1: None}) mapped to ours."""
    mapping = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("seed_values", {})
    try:
        return mapping.get(value, value)
    except TypeError:  # unhashable (a list)
        return value


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
    return {k: _coerce(k, _seed_value(cls, k, v), hints[k], f"config preset {path}") for k, v in data.items()}


def parse(
    cls: type[T], argv: list[str] | None = None, *, prog: str | None = None, description: str | None = None
) -> T:
    """Defaults from the dataclass, then the preset, then the command line; then `cls.validate()`.

    Errors (unknown preset key, wrong type, failed validation) exit like argparse does: usage + message.
    """
    return _parse(cls, argv, prog, description, known=False)[0]


def parse_known(
    cls: type[T], argv: list[str] | None = None, *, prog: str | None = None, description: str | None = None
) -> tuple[T, list[str]]:
    """parse, but arguments that are not this config's are returned for another command (ncf.demo passes
    them on to ncf.train) instead of being an error."""
    return _parse(cls, argv, prog, description, known=True)


def _parse(
    cls: type[T], argv: list[str] | None, prog: str | None, description: str | None, known: bool
) -> tuple[T, list[str]]:
    parser = build_parser(cls, prog=prog, description=description)
    namespace, rest = parser.parse_known_args(argv) if known else (parser.parse_args(argv), [])
    args = vars(namespace)
    preset = args.pop("config")
    args.pop("local_rank", None)
    seed_sets = args.pop("_seed_sets")
    values: dict[str, Any] = {}
    hints = _field_types(cls)
    try:
        if preset is not None:
            values.update(load_preset(cls, preset))
        for _, fields in seed_sets:  # a seed flag's values; this recipe's own flags still win
            values.update(fields)
        values.update(
            {k: _coerce(k, _seed_value(cls, k, v), hints[k], "command line") for k, v in args.items()}
        )
        cfg = cls(**values)
        validate = getattr(cfg, "validate", None)
        if validate is not None:
            validate()
    except (ConfigError, ValueError) as e:
        parser.error(str(e))
    return cfg, rest


def default_dict(cls: type) -> dict[str, Any]:
    """to_dict of the dataclass's field defaults (what a run had before a newer flag existed)."""
    return {
        f.name: _plain(f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        for f in dataclasses.fields(cls)
    }


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON/YAML-friendly view of a config (paths as strings), for logs and checkpoints."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
