"""`flag`: one field of a DLRM entry point's config dataclass (default, --help text, the seed's spellings).

Its own module, free of torch, so that dlrm.prepare_data and dlrm.convert_bin start without loading torch
(tests/common/test_lazy_imports.py); common.config turns the dataclass into the command line.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def flag(default: Any, help: str, *aliases: str, seed_values: dict | None = None) -> Any:  # noqa: A002
    """A dataclass field with its --help text, the seed's other flag spellings (`aliases`) and the seed's
    sentinel values mapped to ours (`seed_values`); a list default is copied per instance."""
    meta = {"help": help, "aliases": aliases, "seed_values": seed_values or {}}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)
