"""Shared test setup: small thread count and fixed seeds so the CPU suite is fast and repeatable."""

from __future__ import annotations

import pytest
import torch

from common import kernels
from common import linear as linear_mod

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _kernel_policy() -> None:
    """Entry points set the process-wide kernel policy from --kernels; one test's choice must not leak."""
    yield
    kernels.set_policy("auto")


@pytest.fixture(autouse=True)
def _onednn_on_any_cpu(monkeypatch) -> None:
    """`--kernels auto` takes the oneDNN linear on AMD CPUs only (common.linear.onednn_pays_off); the tests
    (and the processes they start) run it wherever torch has oneDNN, so the fast path and its parity are checked on every CI machine."""
    monkeypatch.setattr(linear_mod, "onednn_pays_off", linear_mod.onednn_available)
    monkeypatch.setenv(linear_mod.FORCE_ENV, "1")  # the same choice in the processes tests start


@pytest.fixture
def spy(monkeypatch):
    """spy(owner, name) -> {"n": calls}: counts the calls of owner.name (which still runs), e.g. a fast
    path's autograd.Function.apply, to check that `--kernels reference` keeps it out."""

    def install(owner, name: str) -> dict:
        calls, real = {"n": 0}, getattr(owner, name)

        def counting(*args, **kwargs):
            calls["n"] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)
        return calls

    return install
