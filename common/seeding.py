"""Seeds derived from a run's seed, one per (step or epoch, stream): what a resumed run needs to replay
exactly, whatever RNG use came before it, without saving any generator state."""

from __future__ import annotations


def derived_seed(seed: int, k: int, stream: int) -> int:
    """An independent, reproducible seed for index `k` (an epoch, a batch key) of RNG stream `stream`
    (e.g. shuffling vs dropout, or one per rank). Distinct (k, stream) pairs of one run never collide while
    stream < 7_919; the modulus keeps it a valid torch seed."""
    return (seed * 1_000_003 + k * 7_919 + stream) % (2**63 - 1)
