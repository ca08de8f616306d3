"""TrainState: the typed progress stored in checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from common.train_state import TrainState


@dataclass
class _State(TrainState):
    loss_sum: float = 0.0


def test_round_trip_is_exact() -> None:
    state = _State(
        epoch=2, global_step=40, elapsed=1.5, history=[{"auc": 0.7}], best={"auc": 0.7}, loss_sum=3.0
    )
    assert _State.from_progress(state.as_dict()) == state


def test_older_checkpoints_load_with_defaults_and_renamed_keys() -> None:
    old = {"epoch": 1, "evals": [{"auc": 0.6}], "removed_field": 5}
    state = _State.from_progress(old, history="evals")
    assert state == _State(epoch=1, history=[{"auc": 0.6}])
    assert _State.from_progress(None) == _State()
