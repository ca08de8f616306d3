"""Dataclass config -> command line, with optional YAML presets.

One frozen dataclass per recipe is the single source of truth for its knobs. The command line is generated
from it, `--config preset.yaml` supplies defaults, and flags given on the command line win. Values are
type-checked and validated, never rewritten: a bad value is an error that names the field.

Seed compatibility (NVIDIA DeepLearningExamples command lines work as written), declared on the dataclass:
- field metadata `aliases`: the seed's other spellings of a flag (`-b1`, `--xla`);
- field metadata `seed_values`: the seed's sentinel values and ours ({-1: None}: "--seed -1 = unseeded"),
  applied to command-line and preset values before type checks (for choices too: cuda_dot -> dot);
- class attribute `SEED_FLAGS`: a seed flag that is not a field, mapped to the field values it sets
  ({"--fp16": {"amp": True, "amp_dtype": "float16"}}), to `Ignored(why)` (accepted with a one-line note:
  a tuning knob of the seed's framework) or to a one-line message saying what to use instead (exit 2);
- list fields take NVIDIA's comma form (`--bottom_mlp_sizes 512,256,128`) as well as spaces, optional
  fields take `none` or '' (unset), and `--local_rank/--local-rank N` (torch.distributed.launch without
  --use-env) is accepted and checked against LOCAL_RANK.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common.errors import UsageError

T = TypeVar("T")


class ConfigError(UsageError):
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


class _ExtendItems(argparse.Action):
    """`--sizes 512,256 128` -> [512, 256, 128]: each word may hold a comma list (NVIDIA's form)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [item for word in values for item in word])


def _comma_list(item_type: Any) -> Any:
    def convert(text: str) -> list:
        return [item_type(part) for part in text.split(",") if part.strip()]

    convert.__name__ = getattr(item_type, "__name__", "value")  # argparse names it in "invalid int value"
    return convert


def _or_none(convert: Any) -> Any:
    """Optional fields: `none`, `null` or '' on the command line = unset (the seed's `--checkpoint_dir ''`)."""

    def parse_value(text: str) -> Any:
        return None if text.strip().lower() in ("", "none", "null") else convert(text)

    parse_value.__name__ = getattr(convert, "__name__", "value")
    return parse_value


def _argparse_type(tp: Any) -> dict[str, Any]:
    base, optional = _unwrap_optional(tp)
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        choices = typing.get_args(base)
        return {"type": type(choices[0]), "choices": choices}
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(base) or (str,)
        return {"type": _comma_list(item_type), "nargs": "+", "action": _ExtendItems}
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if base in (int, float, str, Path):
        return {"type": _or_none(base) if optional else base}
    raise TypeError(f"unsupported config field type {tp!r}")


class Ignored(str):
    """A SEED_FLAGS message for a seed flag that is accepted and changes nothing here (a tuning knob of the
    seed's framework): the run goes on after printing the line once (rank 0)."""


class _SeedFlag(argparse.Action):
    """A seed flag that is not a field: sets fixed field values, is ignored with a note (`Ignored`), or
    exits with one line saying what to use instead."""

    def __init__(self, option_strings, dest, meaning: dict[str, Any] | str, **kwargs) -> None:
        self.meaning = meaning
        nargs = 0 if isinstance(meaning, dict) else "?"  # a dropped flag may carry a value: swallow it
        super().__init__(option_strings, dest, nargs=nargs, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if isinstance(self.meaning, Ignored):
            ranks = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "HOROVOD_RANK")  # before the group exists
            if all(os.environ.get(name, "0") == "0" for name in ranks):
                print(f"note: {option_string} (NVIDIA's flag) is ignored: {self.meaning}", file=sys.stderr)
            return
        if isinstance(self.meaning, str):
            parser.exit(2, f"{parser.prog}: error: {option_string} (NVIDIA's flag): {self.meaning}\n")
        namespace._seed_sets = [*getattr(namespace, "_seed_sets", []), (option_string, self.meaning)]


class _LocalRank(argparse.Action):
    """torch.distributed.launch without --use-env appends --local-rank=N (older torch: --local_rank)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        env = os.environ.get("LOCAL_RANK")
        if env is not None and int(env) != values:
            parser.error(f"{option_string} {values} disagrees with LOCAL_RANK={env} from the launcher")
        os.environ.setdefault("LOCAL_RANK", str(values))


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
    parser.add_argument("--local_rank", "--local-rank", type=int, action=_LocalRank, help=argparse.SUPPRESS)
    parser.set_defaults(_seed_sets=())
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if not help_text:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text")
        kwargs = _argparse_type(hints[f.name])
        if "choices" in kwargs and f.metadata.get("seed_values"):  # e.g. the seed's cuda_dot -> dot
            kwargs["choices"] = (*kwargs["choices"], *f.metadata["seed_values"])
        flags = [f"--{f.name}", *f.metadata.get("aliases", ())]
        parser.add_argument(
            *flags,
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {_fmt_default(default)})",
            **kwargs,
        )
    for flag, meaning in getattr(cls, "SEED_FLAGS", {}).items():
        what = meaning if isinstance(meaning, str) else ", ".join(f"--{k} {v}" for k, v in meaning.items())
        parser.add_argument(flag, action=_SeedFlag, meaning=meaning, help=f"NVIDIA's flag: {what}")
    return parser


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
    parser = build_parser(cls, prog=prog, description=description)
    args = vars(parser.parse_args(argv))
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
    return cfg


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
