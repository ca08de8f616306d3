"""Pieces of user-facing error messages shared by the recipes' readers."""

from __future__ import annotations

from typing import Any

LIMIT = 200


def shown(value: Any, limit: int = LIMIT) -> str:
    """repr(value), cut to about `limit` characters: a malformed 1 MB field must not flood the terminal."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"
