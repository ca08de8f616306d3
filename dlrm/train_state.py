"""DlrmState: the typed progress of a DLRM training run, saved as a checkpoint's `progress`.

On top of common.train_state.TrainState (epoch, global_step, elapsed, history, best) DLRM keeps where it
is inside an epoch (a resume continues mid-epoch) and the open loss window, so a resumed run logs and ends
with the same numbers as an uninterrupted one. Its clock is `train_time` (training steps only, what the
throughput is computed from); the inherited wall-clock `elapsed` is not tracked and stays 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from common.train_state import TrainState


@dataclass
class DlrmState(TrainState):
    step_in_epoch: int = 0  # batches of the current epoch already trained
    train_time: float = 0.0  # seconds spent in training steps (not evaluation or saving)
    untimed_steps: int = 0  # --benchmark_warmup_steps left out of the throughput
    loss_sum: float = 0.0  # sum of the losses in the open logging window
    loss_count: int = 0  # steps in the open logging window
    training_loss: float = math.nan  # mean loss of the last closed window
    stopped: bool = False  # --auc_threshold was reached

    @classmethod
    def resume(cls, progress: dict[str, Any] | None) -> DlrmState:
        """The state of a checkpoint written by any version of dlrm.train (those before DlrmState called
        the evaluation records `evals`); a checkpoint without progress starts fresh."""
        return cls.from_progress(progress, history="evals")
