"""The typed progress of a training run: what a checkpoint's `progress` holds and a resume starts from.

Every train.py keeps one of these (a recipe adds its own fields in a subclass) instead of a dict of
strings, so a misspelt key is an AttributeError at the line that made it, not a silent fresh counter.
Checkpoints store `as_dict()`; `from_progress` reads any earlier checkpoint: a field it predates gets its
default and a key this version no longer has is ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

S = TypeVar("S", bound="TrainState")


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs (the next one to run)
    global_step: int = 0  # optimizer steps taken over the whole run
    elapsed: float = 0.0  # wall seconds over all sessions of the run (continues across resumes)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per evaluation
    best: dict[str, Any] = field(default_factory=dict)  # the best evaluation's record

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_progress(cls: type[S], progress: dict[str, Any] | None, **renamed: str) -> S:
        """The state saved as `progress` (None or {} = a fresh run). renamed maps field -> the key an older
        checkpoint used for it, e.g. from_progress(p, history="evals")."""
        progress = dict(progress or {})
        for name, old in renamed.items():
            if name not in progress and old in progress:
                progress[name] = progress[old]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in progress.items() if key in known})
