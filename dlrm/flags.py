"""`flag` used to be defined here; it is common.config.flag now (one helper for every recipe's config)."""

from __future__ import annotations

from common.config import flag  # alias kept for in-flight branches

__all__ = ["flag"]
