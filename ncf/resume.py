"""Where an ncf.train run starts: the last.pt it resumes (checked against the flags and the data) and its seed.

Resuming is refused when a flag that changes the result differs from the checkpoint's, or when the data
differs: a finished run would otherwise "resume" into its old metrics, reported under the new flags.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import torch

from common import checkpoint, config, distributed
from common.distributed import DistEnv
from common.train_state import TrainState
from ncf import checkpoints as ncf_checkpoints
from ncf.config import NcfConfig
from ncf.data import NcfData


def fresh_hint(checkpoint_dir: Path | None) -> str:
    """What to do instead when a resume is refused (named at the end of every refusal)."""
    return (f"pass --no-resume to start over in {checkpoint_dir} (replacing its checkpoints), or give "
            "another --checkpoint_dir")  # fmt: skip


def resume_point(cfg: NcfConfig, last_path: Path | None, env: DistEnv) -> tuple[dict | None, int]:
    """(last.pt to resume or None, the run's seed); raises CheckpointError when the flags differ."""
    resume_from = None
    if last_path and cfg.resume and last_path.is_file():
        resume_from = checkpoint.load(last_path, recipe="ncf")
    seed = pick_seed(cfg.seed, resume_from, env)
    if resume_from is not None:
        current = {**config.to_dict(cfg), "seed": seed}
        checkpoint.check_resumable(
            last_path,
            resume_from,
            current,
            ncf_checkpoints.RESUME_IGNORE,
            fresh_hint(cfg.checkpoint_dir),
            defaults=config.default_dict(type(cfg)),
        )
    return resume_from, seed


def check_data(last_path: Path, resume_from: dict, data: NcfData, where: Path, hint: str) -> None:
    """Refuse to continue a run on other data (every fact the checkpoint recorded; old files: table sizes)."""
    facts = tuple(resume_from.get("dataset") or ncf_checkpoints.TABLE_FACTS)
    ncf_checkpoints.check_dataset(last_path, resume_from, data, where, facts, hint)


def pick_seed(requested: int | None, resume_from: dict | None, env: DistEnv) -> int:
    """The flag, else the resumed run's seed, else a fresh random one; identical on every rank. (A flag
    that differs from the resumed run's seed is refused with the other flags by check_resumable.)"""
    saved = resume_from["config"].get("seed") if resume_from is not None else None
    seed = requested if requested is not None else saved if saved is not None else secrets.randbelow(2**31)
    return int(distributed.broadcast_(torch.tensor(seed, device=env.device), env))


def restored_state(progress: dict[str, Any], optimizer_steps_per_epoch: int) -> TrainState:
    """The TrainState of a checkpoint's `progress`. Checkpoints from before TrainState hold epoch, history,
    best and elapsed only: their optimizer step count is what those epochs took (the flags that set it
    are checked equal on resume)."""
    state = TrainState.from_progress(progress)
    if "global_step" not in progress:
        state.global_step = state.epoch * optimizer_steps_per_epoch
    return state
