"""Kernel policy: whether the hand-written fast paths run, or only their pure-PyTorch references.

The fast paths (`common.linear` on oneDNN, the custom gather / attention backwards in sim.layers) compute
the same functions as plain PyTorch ops, only faster on CPU; each checks `fast()` at call time and takes
its reference when it is False. Entry points set the policy from their `--kernels` flag (logged with the
rest of the config), so model files never see a config object (tests/test_layering.py enforces this); tests
compare both with `use("reference")`. A process-wide value: every entry point sets it, and the test
suite resets it after each test.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

POLICIES = ("auto", "reference")
HELP = (
    "auto: hand-written fast paths where they apply (oneDNN fp32 linear on AMD CPUs, fused gather/attention "
    "backwards); reference: plain PyTorch ops only (same results within fp32 rounding; for parity checks)"
)

_policy = "auto"


def set_policy(policy: str) -> None:
    """Select the kernels for this process: "auto" (fast paths where they apply) or "reference"."""
    global _policy
    if policy not in POLICIES:
        raise ValueError(f"kernels must be one of {list(POLICIES)}, got {policy!r}")
    _policy = policy


def policy() -> str:
    return _policy


def fast() -> bool:
    """Whether fast paths may run (each still checks that it applies to its inputs)."""
    return _policy == "auto"


@contextmanager
def use(policy_name: str) -> Iterator[None]:
    """Run a block under `policy_name`, then restore the previous policy."""
    previous = _policy
    set_policy(policy_name)
    try:
        yield
    finally:
        set_policy(previous)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """`--kernels auto|reference` for the argparse entry points (config dataclasses use `HELP` directly)."""
    parser.add_argument("--kernels", choices=POLICIES, default="auto", help=f"{HELP} (default: auto)")
