"""NVIDIA's DLRM learning-rate schedule: linear warmup, constant, polynomial decay (scripts/utils.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LrSchedule:
    """lr(step) for step = 1, 2, ... (1-indexed, evaluated BEFORE the optimizer step that uses it).

    W = warmup_steps, k = warmup_factor, S = decay_start_step, D = decay_steps, p = decay_power,
    e = decay_end_lr / base_lr:
        s <= W          factor = 1 - (W - s) / (W * 2**k)     (k = 0: s / W, a ramp from ~0)
        W < s <= S      factor = 1
        S < s <= S + D  factor = max(((S + D - s) / D) ** p, e)
        s > S + D       factor = e                            (default e = 0: the LR is exactly 0 after decay)
    D = 0 or S = None: no decay, the factor stays 1 after warmup (the seed's meaning of --decay_steps 0).
    """

    base_lr: float
    warmup_steps: int = 6400
    warmup_factor: int = 0
    decay_start_step: int | None = 64000  # None: no decay
    decay_steps: int = 80000
    decay_power: float = 2.0
    decay_end_lr: float = 0.0

    def __post_init__(self) -> None:
        start = self.warmup_steps if self.decay_start_step is None else self.decay_start_step
        if self.warmup_steps < 0 or self.decay_steps < 0 or start < self.warmup_steps:
            raise ValueError(
                "need warmup_steps >= 0, decay_steps >= 0 and decay_start_step >= warmup_steps, got "
                f"{self.warmup_steps}, {self.decay_steps}, {self.decay_start_step}"
            )

    def factor(self, step: int) -> float:
        if step < 1:
            raise ValueError(f"LR schedule steps are 1-indexed, got {step}")
        w, s0, d = self.warmup_steps, self.decay_start_step, self.decay_steps
        end = self.decay_end_lr / self.base_lr if self.base_lr else 0.0
        if step <= w:
            return 1.0 - (w - step) / (w * 2**self.warmup_factor)
        if s0 is None or d == 0 or step <= s0:
            return 1.0
        if step <= s0 + d:
            return max(((s0 + d - step) / d) ** self.decay_power, end)
        return end

    def lr(self, step: int) -> float:
        return self.base_lr * self.factor(step)
