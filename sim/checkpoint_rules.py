"""What a SIM checkpoint must match before it is used, and when sim.train may write one.

A checkpoint is written with recipe "sim" and the dataset's facts (`dataset_facts`): evaluate refuses
another recipe's file and data whose tables differ from the ones the model was built for; a resumed run
also needs the same history length and every flag that changes the result unchanged (`RESUME_IGNORE`
lists the ones that do not). An existing checkpoint is only replaced by the run that resumes it, or when
--overwrite_checkpoint says so: a trained model is never lost to a rerun of the same command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common import checkpoint, config
from common.checkpoint import CheckpointError
from common.messages import shown
from common.train_state import TrainState
from sim.models import SimSizes, build_model
from sim.schema import SimSchema

RECIPE = "sim"
# Flags that cannot change the trained weights or metrics: where data/logs/checkpoints live, what is shown
# or timed, the device, compilation and --kernels (same math), and --epochs, which legitimately extends a run.
RESUME_IGNORE = frozenset({
    "mode", "dataset_dir", "feature_spec", "results_dir", "log_filename", "save_checkpoint_path",
    "load_checkpoint_path", "overwrite_checkpoint", "epochs", "evaluate_train", "device", "compile",
    "benchmark", "benchmark_warmup_steps", "benchmark_steps", "log_every", "progress", "tf32",
    "kernels",
})  # fmt: skip
CARDINALITIES = ("user_cardinalities", "item_cardinalities")


def dataset_facts(schema: SimSchema) -> dict[str, Any]:
    """What a checkpoint remembers of its training data (stored as plain lists/ints)."""
    return {
        "user_cardinalities": list(schema.user_cardinalities),
        "item_cardinalities": list(schema.item_cardinalities),
        "history_length": schema.history_length,
    }


@dataclass
class SimState(TrainState):
    """sim.train's progress (a checkpoint's `progress`): common's counters plus the run's seed, from which
    every epoch's shuffle and dropout masks derive, so a resumed epoch replays the same order."""

    seed: int = 0


def resume_state(ckpt: dict | None, seed: int) -> SimState:
    """Where a run starts: the checkpoint's progress (any earlier one: those held only epoch and history,
    the other fields start from their defaults) or a fresh run's; the seed is this run's (the same as
    the checkpoint's: check_resume refuses another)."""
    progress = (ckpt.get("progress") or {}) if ckpt is not None else {}
    return SimState.from_progress({**progress, "seed": seed})


def load(path: Path) -> dict:
    """The checkpoint; one CheckpointError for a missing, foreign, corrupt or other-recipe file."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    ckpt = checkpoint.load(path, recipe=RECIPE)
    sizes_of(ckpt["hyperparams"], path)
    return ckpt


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """(the checkpoint's model on CPU with its weights, the checkpoint dict), refused as `load` refuses."""
    ckpt = load(path)
    return checkpoint.model_from(ckpt, model_builder(path), path, "a SIM model"), ckpt


def model_builder(path: Path | str) -> Callable[[dict], torch.nn.Module]:
    """How common.checkpoint.load_model / model_from build the SIM model a checkpoint describes."""
    return lambda hyperparams: build_model(sizes_of(hyperparams, path))


def sizes_of(hyperparams: dict, path: Path | str) -> SimSizes:
    """The model sizes a checkpoint stores; an older file of another recipe (no recipe entry) has other
    hyperparameters, which is said in one line instead of a TypeError."""
    try:
        return SimSizes.from_dict(hyperparams)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a SIM checkpoint (written by sim.train): its hyperparameters "
            f"{shown(sorted(hyperparams))} do not describe a SIM/DIN/DIEN model ({err})"
        ) from None


def check_dataset(ckpt: dict, schema: SimSchema, path: Path | str, keys: tuple[str, ...]) -> None:
    """Refuse data whose facts (`keys` of dataset_facts) differ from the checkpoint's training data."""
    saved, now = ckpt.get("dataset") or {}, dataset_facts(schema)
    diffs = [f"{k}: {saved[k]} in the checkpoint, {now[k]} in the dataset" for k in keys if k in saved
             and list(_seq(saved[k])) != list(_seq(now[k]))]  # fmt: skip
    if diffs:
        raise CheckpointError(
            f"{path} was trained on a different dataset: "
            + "; ".join(diffs)
            + " (a model only fits data prepared with the same ids)"
        )


def check_save_path(cfg: Any) -> None:
    """Refuse to replace an existing --save_checkpoint_path that this run does not resume."""
    save, load_path = cfg.save_checkpoint_path, cfg.load_checkpoint_path
    if save is None or cfg.overwrite_checkpoint or not Path(save).exists():
        return
    if load_path is not None and Path(load_path).exists() and Path(save).samefile(load_path):
        return
    raise CheckpointError(
        f"--save_checkpoint_path {save} already exists and this run does not resume it; resume it with "
        f"--load_checkpoint_path {save}, pass --overwrite_checkpoint to start fresh and replace it, or "
        "choose another --save_checkpoint_path"
    )


def check_resume(cfg: Any, ckpt: dict, seed: int, schema: SimSchema) -> None:
    """A resumed run must train on the same data with the same result-changing flags (seed included)."""
    path = cfg.load_checkpoint_path
    check_dataset(ckpt, schema, path, (*CARDINALITIES, "history_length"))
    hint = (
        "drop --load_checkpoint_path to start a fresh run (with --overwrite_checkpoint to replace "
        f"{cfg.save_checkpoint_path}, or another --save_checkpoint_path)"
        if cfg.save_checkpoint_path is not None
        else "drop --load_checkpoint_path to start a fresh run"
    )
    checkpoint.check_resumable(
        path,
        ckpt,
        {**config.to_dict(cfg), "seed": seed},
        RESUME_IGNORE,
        hint,
        defaults={**config.default_dict(type(cfg)), "din_attention": _din_attention(ckpt, path, cfg)},
    )


def _din_attention(ckpt: dict, path: Path | str, cfg: Any) -> str:
    """The --din_attention a checkpoint was trained with: a DIN file from before the flag holds a dot-product
    DIN (sizes_of loads it as "dot"); for SIM and DIEN the flag changes nothing, so it never blocks them."""
    sizes = sizes_of(ckpt["hyperparams"], path)
    return sizes.din_attention if sizes.model_type == "din" else cfg.din_attention


def _seq(value: Any) -> Any:
    return value if isinstance(value, (list, tuple)) else [value]
