"""Shared test setup: small thread count and fixed seeds so the CPU suite is fast and repeatable."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
