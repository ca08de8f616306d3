"""The command-line side of common.config: a config dataclass's fields -> an argparse parser.

One `--flag` per field (help text + default), bools as --x/--no-x, lists in NVIDIA's comma form as well as
spaces, optional values unset by `none`, a field marked `positional` as a bare argument, and the seed's
flags that are not fields (`SEED_FLAGS`). common.config.parse turns the parsed values into the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


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
    base, optional = unwrap_optional(tp)
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
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        _add_field(parser, f, hints[f.name], cls.__name__)
    for flag, meaning in getattr(cls, "SEED_FLAGS", {}).items():
        what = meaning if isinstance(meaning, str) else ", ".join(f"--{k} {v}" for k, v in meaning.items())
        parser.add_argument(flag, action=_SeedFlag, meaning=meaning, help=f"NVIDIA's flag: {what}")
    return parser


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any, owner: str) -> None:
    """`--name` (and its aliases) for one field; a `positional` list field is a bare `name ...` argument."""
    help_text = f.metadata.get("help", "")
    if not help_text:
        raise TypeError(f"{owner}.{f.name} has no help text")
    if f.metadata.get("positional"):  # common.plot's log files: one or more, always given
        (item_type,) = typing.get_args(unwrap_optional(tp)[0])[:1] or (str,)
        parser.add_argument(f.name, nargs="+", type=item_type, help=f"{help_text} (one or more; required)")
        return
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    kwargs = _argparse_type(tp)
    if "choices" in kwargs and f.metadata.get("seed_values"):  # e.g. the seed's cuda_dot -> dot
        kwargs["choices"] = (*kwargs["choices"], *f.metadata["seed_values"])
    parser.add_argument(
        f"--{f.name}",
        *f.metadata.get("aliases", ()),
        dest=f.name,
        default=argparse.SUPPRESS,
        help=f"{help_text} (default: {_fmt_default(default)})",
        **kwargs,
    )
