"""What dlrm.train builds before its first step: the data source, the model and its optimizer step, the
schedule of the loop and the point a resume starts from.

The config stops here: `setup` reads it once and hands the loop plain values (`Plan`, `CheckpointTarget`),
so the loop cannot depend on a flag it was not given. Every check raises a typed error (common.errors)
before anything is written: a refused run leaves the old log and checkpoint untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common import amp as amp_lib
from common import checkpoint, config
from common.distributed import DistEnv
from common.errors import InputError, RecipeError, UsageError
from dlrm import data as dlrm_data
from dlrm.config import DlrmConfig
from dlrm.lr_schedule import LrSchedule
from dlrm.model import DLRM, DlrmSizes
from dlrm.parallel import ShardedDLRM, build_model_parallel
from dlrm.scoring import check_compatible, dataset_facts
from dlrm.steps import ReplicatedStep, ShardedStep
from dlrm.train_state import DlrmState

Source = dlrm_data.DiskSource | dlrm_data.SyntheticSource

# Flags that cannot change a run's result, so a resume may change them: where logs and checkpoints go,
# progress bars, read-ahead, the evaluation batch (AUC is exact over the whole split whatever the batch),
# the device and --kernels (same math up to float rounding), and --epochs/--max_steps, which legitimately
# extend a finished run. Every other flag must match the checkpoint's (checkpoint.check_resumable), or a
# resumed run would report the old run's metrics under the new flags.
RESUME_MAY_CHANGE = ("dataset", "feature_spec", "prefetch_batches", "test_batch_size", "device", "epochs",
                     "max_steps", "save_checkpoint_path", "load_checkpoint_path", "resume", "log_path",
                     "progress", "mode", "output_dir", "tf32", "benchmark_warmup_steps",
                     "inference_benchmark_batch_sizes", "inference_benchmark_steps", "kernels")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """When the loop steps, logs, evaluates and stops: the config's values, read once in `setup`."""

    batch_size: int  # global
    steps_per_epoch: int
    total_steps: int  # min(--max_steps, epochs x steps_per_epoch)
    epochs: int
    shuffle_seed: int | None  # None: batches in file order; else the seed of each epoch's batch order
    print_freq: int
    test_freq: int | None  # None: evaluate at epoch ends
    test_after: float  # epochs before the first evaluation
    untimed_steps: int  # --benchmark_warmup_steps: left out of the throughput
    auc_threshold: float | None
    test_batch_size: int
    progress: bool  # tqdm bars (rank 0)

    def batch_order(self, epoch: int) -> list[int]:
        shuffle = self.shuffle_seed is not None
        return dlrm_data.batch_order(self.steps_per_epoch, shuffle, self.shuffle_seed or 0, epoch)


@dataclass(frozen=True)
class CheckpointTarget:
    """Where and with what records the loop writes its checkpoint (--save_checkpoint_path)."""

    path: Path
    config: dict[str, Any]
    hyperparams: dict[str, Any]
    dataset: dict[str, Any]


@dataclass
class TrainRun:
    """What `setup` hands the loop; no config object."""

    env: DistEnv
    source: Source
    step_fn: ReplicatedStep | ShardedStep
    eval_model: nn.Module
    amp: amp_lib.Amp
    plan: Plan
    target: CheckpointTarget | None
    state: DlrmState
    resumed_from: Path | None


def setup(cfg: DlrmConfig, env: DistEnv) -> TrainRun:
    """Data, model, optimizer step and resume point; a typed error for anything the user can fix."""
    if cfg.dataset is None and not cfg.synthetic_dataset:
        raise UsageError(
            "--dataset is required (a directory written by python -m dlrm.prepare_data), or --synthetic_dataset"
        )
    if cfg.batch_size % env.world_size:
        raise UsageError(
            f"--batch_size {cfg.batch_size} is global and must be divisible by {env.world_size} ranks"
        )
    save_path = cfg.resolve(cfg.save_checkpoint_path)
    resume_path = save_path if cfg.resume and save_path and save_path.is_file() else None
    try:
        source = build_source(cfg, env)
        plan = make_plan(cfg, source)
        resume_from = load_resumable(resume_path, cfg, source) if resume_path is not None else None
        weights_from = (
            checkpoint.load(cfg.load_checkpoint_path, recipe="dlrm") if cfg.load_checkpoint_path else None
        )
    except RecipeError:
        raise
    except (FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from None
    sizes = model_sizes(cfg, source.table_sizes, source.num_numerical)
    model = build_model(cfg, sizes, env)
    try:
        amp = amp_lib.setup(cfg.amp, env.device, cfg.amp_dtype, tf32=cfg.tf32, loss_scale=cfg.loss_scale)
    except ValueError as e:
        raise UsageError(str(e)) from None
    schedule = LrSchedule(cfg.lr, cfg.warmup_steps, cfg.warmup_factor, cfg.decay_start_step, cfg.decay_steps,
                          cfg.decay_power, cfg.decay_end_lr)  # fmt: skip
    step_fn = (ReplicatedStep if cfg.embedding_sharding == "replicated" else ShardedStep)(
        model, env, amp, schedule, cfg.embedding_lr_scale
    )
    state = DlrmState()
    if resume_from is not None:
        load_weights(model, step_fn, source, resume_path, resume_from, "resume from")
        state = DlrmState.resume(resume_from.get("progress"))
        restore_optimizer(step_fn, amp, resume_from)
    elif weights_from is not None:  # the seed's --load_checkpoint_path: weights only
        load_weights(model, step_fn, source, cfg.load_checkpoint_path, weights_from, "load weights from")
    target = None
    if save_path is not None:
        target = CheckpointTarget(save_path, config.to_dict(cfg), sizes.as_dict(), dataset_facts(source))
    return TrainRun(env, source, step_fn, model, amp, plan, target, state, resume_path)


def build_source(cfg: DlrmConfig, env: DistEnv) -> Source:
    if cfg.synthetic_dataset:
        synthetic = dlrm_data.SyntheticCriteo(tuple(cfg.synthetic_dataset_table_sizes), seed=cfg.seed)
        return dlrm_data.SyntheticSource(synthetic, cfg.synthetic_dataset_num_entries,
                                         cfg.synthetic_dataset_test_entries, env.rank, env.world_size, env.device)  # fmt: skip
    dataset = dlrm_data.open_dataset(cfg.dataset, cfg.feature_spec)
    return dlrm_data.DiskSource(dataset, env.rank, env.world_size, env.device, cfg.prefetch_batches)


def steps_per_epoch(cfg: DlrmConfig, source: Source) -> int:
    """Full batches per epoch; --dataset_subset keeps the first fraction of them."""
    steps = source.rows("train") // cfg.batch_size
    return max(int(steps * cfg.dataset_subset), 1) if cfg.dataset_subset is not None and steps else steps


def make_plan(cfg: DlrmConfig, source: Source) -> Plan:
    steps = steps_per_epoch(cfg, source)
    if steps == 0:
        raise InputError(
            f"{source.rows('train')} training rows make no full batch of --batch_size {cfg.batch_size}"
        )
    total = steps * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps * cfg.epochs)
    return Plan(
        batch_size=cfg.batch_size, steps_per_epoch=steps, total_steps=total, epochs=cfg.epochs,
        shuffle_seed=cfg.seed if cfg.shuffle_batch_order else None, print_freq=cfg.print_freq,
        test_freq=cfg.test_freq, test_after=cfg.test_after, untimed_steps=cfg.benchmark_warmup_steps,
        auc_threshold=cfg.auc_threshold, test_batch_size=cfg.test_batch_size, progress=cfg.progress,
    )  # fmt: skip


def model_sizes(cfg: DlrmConfig, table_sizes: tuple[int, ...], num_numerical: int) -> DlrmSizes:
    cap = cfg.max_table_size
    return DlrmSizes(
        num_numerical=num_numerical,
        table_sizes=tuple(min(n, cap) if cap else n for n in table_sizes),
        embedding_dim=cfg.embedding_dim,
        bottom_mlp_sizes=tuple(cfg.bottom_mlp_sizes),
        top_mlp_sizes=tuple(cfg.top_mlp_sizes),
        interaction_op=cfg.interaction_op,
        self_interaction=cfg.self_interaction,
        hash_indices=cfg.hash_indices,
    )


def build_model(cfg: DlrmConfig, sizes: DlrmSizes, env: DistEnv) -> DLRM | ShardedDLRM:
    """The model from --seed, the same initial weights on every rank: replicated, the whole DLRM on every
    rank; table-sharded, each rank builds only the tables it owns (dlrm.parallel), the same values."""
    torch.manual_seed(cfg.seed)
    if cfg.embedding_sharding == "table":
        return build_model_parallel(sizes, env, sparse=True, seed=cfg.seed)
    return DLRM(sizes, sparse=False).to(env.device)


def load_resumable(path: Path, cfg: DlrmConfig, source: Source) -> dict:
    """The checkpoint to resume from, if it is a DLRM run with the same result-changing flags."""
    ckpt = checkpoint.load(path, recipe="dlrm")
    fresh = (
        "pass --no-resume to start a fresh run (it replaces that checkpoint) or choose another "
        "--save_checkpoint_path"
    )
    checkpoint.check_resumable(
        path, ckpt, config.to_dict(cfg), RESUME_MAY_CHANGE, fresh, defaults=config.default_dict(type(cfg))
    )
    saved, now = ckpt.get("dataset") or {}, dataset_facts(source)
    if diffs := [
        f"{k}: {saved[k]} in the checkpoint, {now[k]} now" for k in now if saved.get(k, now[k]) != now[k]
    ]:
        raise checkpoint.CheckpointError(
            f"cannot resume from {path}: it was trained on other data:\n  "
            + "\n  ".join(diffs)
            + f"\nGive the checkpoint's data to continue it, or {fresh}"
        )
    return ckpt


def load_weights(
    model: nn.Module,
    step_fn: ReplicatedStep | ShardedStep,
    source: Source,
    path: Path,
    ckpt: dict,
    action: str,
) -> None:
    """The checkpoint's weights, after checking they fit this data; `action` words the error."""
    try:
        check_compatible(model, source, str(path), ckpt)
        step_fn.load_weights(ckpt["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise InputError(f"cannot {action} {path}: {e}") from None


def restore_optimizer(step_fn: ReplicatedStep | ShardedStep, amp: amp_lib.Amp, ckpt: dict) -> None:
    """Plain SGD keeps no state and the LR comes from the schedule, so only the replicated optimizer's own
    state is reloaded (in table mode each rank's optimizer holds a different parameter list)."""
    if isinstance(step_fn, ReplicatedStep) and "optimizer" in ckpt:
        step_fn.optimizer.load_state_dict(ckpt["optimizer"])
        if amp.scaler.is_enabled() and ckpt.get("scaler"):
            amp.scaler.load_state_dict(ckpt["scaler"])
