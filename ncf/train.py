"""Train NeuMF on a prepared dataset (ncf.prepare_data output; MovieLens-20M by default settings).

  1 GPU / CPU : python -m ncf.train --data /data/cache/ml-20m --checkpoint_dir runs/ncf
  8 GPUs      : torchrun --nproc_per_node=8 -m ncf.train --data /data/cache/ml-20m --amp
  CPU smoke   : python -m ncf.train --config ncf/configs/tiny.yaml --data /tmp/tiny

A run with --checkpoint_dir writes last.pt every epoch and best.pt at the best HR@K; started again with the
same flags it resumes from last.pt and ends with the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common import amp as amp_lib
from common import checkpoint, cli, config, distributed, entry, throughput
from common.distributed import DistEnv
from common.errors import RunError, UsageError
from common.logging import JsonLogger
from common.output_dir import no_space_message
from common.seeding import derived_seed
from common.train_state import TrainState
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data
from ncf import resume, seed_modes
from ncf.config import NcfConfig
from ncf.model import NeuMF, NeuMFSizes
from ncf.ranking import evaluate
from ncf.steps import build_optimizers, train_one_epoch

METRICS = {  # DLE NCF's DLLogger names, plus ndcg@K which it computed but never logged
    "train_throughput": {"unit": "samples/s", "format": ":.3e"},
    "eval_throughput": {"unit": "samples/s", "format": ":.3e"},
    "best_train_throughput": {"unit": "samples/s"},
    "best_eval_throughput": {"unit": "samples/s"},
    "mean_train_throughput": {"unit": "samples/s"},
    "mean_eval_throughput": {"unit": "samples/s"},
    "train_epoch_time": {"unit": "s", "format": ":.3f"},
    "validation_epoch_time": {"unit": "s", "format": ":.3f"},
    "time_to_target": {"unit": "s"},
    "time_to_best_model": {"unit": "s"},
    "hr@10": {"format": ":.5f"},
    "ndcg@10": {"format": ":.5f"},
    "validation_loss": {"format": ":.5f"},
    "train_loss": {"format": ":.5f"},
}


@dataclass(frozen=True)
class EpochPlan:
    """What every epoch does, read from the config once in _setup: the loop never sees the config."""

    negatives: int  # random negatives per training positive, resampled every epoch
    batch_size: int  # global: each rank takes batch_size / world_size
    accumulate: int  # micro-batches per optimizer step
    steps: int  # micro-batches per epoch
    topk: int  # K of HR@K / NDCG@K
    valid_batch_size: int  # evaluation rows per forward
    learning_rate: float  # named when the run diverges
    show_progress: bool


@dataclass(frozen=True)
class Checkpoints:
    """Where checkpoints go and what they record besides the weights and the TrainState."""

    directory: Path | None  # None: no checkpoints
    writes: bool  # rank 0 writes; the other ranks hold the same weights
    hyperparams: dict[str, Any]  # NeuMFSizes: what ncf.evaluate rebuilds the model from
    dataset: dict[str, int]  # facts of the training data, checked on resume and evaluation
    config: dict[str, Any]  # the run's flags and seed, checked on resume

    @property
    def last(self) -> Path | None:
        return self.directory / "last.pt" if self.directory else None


@dataclass
class Run:
    """A run ready to train: built and checked by _setup before any file is written."""

    data: ncf_data.NcfData
    model: NeuMF  # the weights that are evaluated and saved
    train_model: torch.nn.Module  # the model as trained: compiled and/or DDP-wrapped
    optimizers: list[torch.optim.Optimizer]
    amp: amp_lib.Amp
    seed: int
    checkpoints: Checkpoints
    resumed: bool = False
    state: TrainState = field(default_factory=TrainState)


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(NcfConfig, argv, prog="python -m ncf.train", description=__doc__.split("\n\n")[0])
    if cfg.data is None:
        raise UsageError("--data is required (a directory written by python -m ncf.prepare_data)")
    if cfg.mode == "test":  # the seed's evaluation-only mode
        return seed_modes.run_test(cfg)
    env = entry.start(cfg)
    run, plan = _setup(cfg, env)
    # opened once the run is known to start: a refused run leaves the log as it was; a resumed one appends
    log = entry.open_log(cfg, env, METRICS, append=run.resumed, seed=run.seed)
    total_time = train_epochs(run, plan, env, log, cfg.epochs, cfg.threshold)
    return entry.finish(env, log, _summary(run.state, plan.topk, total_time))


def train_epochs(
    run: Run, plan: EpochPlan, env: DistEnv, log: JsonLogger, epochs: int, threshold: float
) -> float:
    """Train from run.state.epoch until `epochs` or HR@K >= threshold, logging and saving every epoch;
    returns the run's wall seconds (over all its sessions)."""
    k, clock = plan.topk, throughput.Clock(env.device)
    clock0 = time.time() - run.state.elapsed  # elapsed time continues across resumes
    state = run.state
    for epoch in range(state.epoch, epochs):
        if state.best.get(f"hr@{k}", -1.0) >= threshold:
            break
        record = run_epoch(run, plan, env, epoch, clock)
        log.log([epoch], record)
        state.history.append(record)
        state.epoch, state.elapsed = epoch + 1, time.time() - clock0
        state.global_step += plan.steps // plan.accumulate
        if record[f"hr@{k}"] > state.best.get(f"hr@{k}", -1.0):
            state.best = {**record, "epoch": epoch, "time": state.elapsed}
            save(run, "best.pt", with_optimizer=False)
        save(run, "last.pt", with_optimizer=True)
    return time.time() - clock0


def run_epoch(
    run: Run, plan: EpochPlan, env: DistEnv, epoch: int, clock: throughput.Clock
) -> dict[str, float]:
    """Train one epoch on freshly drawn negatives, then evaluate: the epoch's log record."""
    gen = torch.Generator(device=env.device).manual_seed(derived_seed(run.seed, epoch, 0))
    torch.manual_seed(derived_seed(run.seed, epoch, 1 + env.rank))  # dropout masks differ per rank
    clock.start()
    batches = ncf_data.epoch_batches(run.data, plan.negatives, plan.batch_size, env.rank, env.world_size, gen)
    show = plan.show_progress and env.is_main
    loss = train_one_epoch(
        run.train_model, batches, run.optimizers, run.amp, plan.accumulate, plan.steps, show
    )
    loss = float(distributed.all_reduce_sum(loss, env)) / env.world_size
    if not math.isfinite(loss):  # the same on every rank (all-reduced): all stop, nothing is saved
        last, done = run.checkpoints.last, run.state.epoch
        kept = f"; {last} still holds the run after {done} epoch(s)" if last and done else ""
        raise RunError(f"training loss is {loss} in epoch {epoch}: the run diverged; lower --learning_rate "
                       f"(now {plan.learning_rate}). Nothing was saved for this epoch{kept}")  # fmt: skip
    train_time = clock.lap()
    result = evaluate(run.model, run.data, env, plan.topk, plan.valid_batch_size)
    eval_time = clock.lap()
    k = plan.topk
    return {
        "train_throughput": run.data.train_users.numel() * (1 + plan.negatives) / train_time,
        f"hr@{k}": result[f"hr@{k}"],
        f"ndcg@{k}": result[f"ndcg@{k}"],
        "train_epoch_time": train_time,
        "validation_epoch_time": eval_time,
        "eval_throughput": run.data.test_items.numel() / eval_time,
        "validation_loss": result["validation_loss"],
        "train_loss": loss,
    }


def save(run: Run, name: str, with_optimizer: bool) -> None:
    """Rank 0 writes; optimizer states go in last.pt (resume), best.pt holds the weights to deploy.
    Non-finite weights or a full disk end the run (RunError); the previous file stays as it was."""
    where = run.checkpoints
    if where.directory is None or not where.writes:
        return
    extra = {"optimizer": run.optimizers, "scaler": run.amp.scaler} if with_optimizer else {}
    path = where.directory / name
    try:
        checkpoint.save(path, model=run.model, hyperparams=where.hyperparams, recipe="ncf", dataset=where.dataset,
                        config=where.config, progress=run.state.as_dict(), **extra)  # fmt: skip
    except FloatingPointError as e:
        raise RunError(f"the run diverged: {e}; lower --learning_rate") from None
    except OSError as e:
        raise RunError(no_space_message(e, path) or f"could not write {path}: {e}") from None


def _setup(cfg: NcfConfig, env: DistEnv) -> tuple[Run, EpochPlan]:
    """The run to train and its plan, checked before anything is written: flags against the world size,
    the checkpoint to resume (against flags and data), data, model (+ --load_checkpoint_path's weights),
    optimizers and the restored progress. Raises UsageError/InputError naming the problem."""
    if cfg.batch_size % env.world_size:
        raise UsageError(
            f"--batch_size {cfg.batch_size} is global and must be divisible by {env.world_size} ranks"
        )
    if cfg.optimizer == "sparse_adam" and env.distributed:
        raise UsageError("--optimizer sparse_adam is single-process only (DDP all-reduces dense gradients)")
    last_path = cfg.checkpoint_dir / "last.pt" if cfg.checkpoint_dir else None
    resume_from, seed = resume.resume_point(cfg, last_path, env)
    data = ncf_data.load(cfg.data, cfg.feature_spec_file, env.device)
    if resume_from is not None:
        resume.check_data(last_path, resume_from, data, cfg.data, resume.fresh_hint(cfg.checkpoint_dir))
    steps = ncf_data.steps_per_epoch(data.train_users.numel(), cfg.negative_samples, cfg.batch_size)
    if steps < cfg.grads_accumulated:
        raise UsageError(
            f"{steps} steps per epoch < --grads_accumulated {cfg.grads_accumulated}; lower --batch_size"
        )
    plan = EpochPlan(cfg.negative_samples, cfg.batch_size, cfg.grads_accumulated, steps, cfg.topk,
                     cfg.valid_batch_size, cfg.learning_rate, cfg.progress)  # fmt: skip
    torch.manual_seed(seed)
    sizes = NeuMFSizes(data.num_users, data.num_items, cfg.factors, tuple(cfg.layers), cfg.dropout)
    model = NeuMF(sizes, sparse=cfg.optimizer == "sparse_adam", byte_dropout=env.device.type == "cpu")
    model = model.to(env.device)
    if cfg.load_checkpoint_path is not None:
        weights = ncf_checkpoints.load_weights(cfg.load_checkpoint_path, sizes, data, cfg.data)
        checkpoint.restore(weights, model, restore_rng=False)
    try:
        amp = amp_lib.setup(cfg.amp, env.device, cfg.amp_dtype, tf32=cfg.tf32)
    except ValueError as e:
        raise UsageError(str(e)) from None
    where = Checkpoints(cfg.checkpoint_dir, env.is_main, sizes.as_dict(), ncf_checkpoints.dataset_facts(data),
                        {**config.to_dict(cfg), "seed": seed})  # fmt: skip
    train_model = distributed.wrap_ddp(torch.compile(model) if cfg.compile else model, env)
    run = Run(data, model, train_model, build_optimizers(model, cfg, env.device), amp, seed, where)
    if resume_from is not None:
        progress = checkpoint.restore(resume_from, model, run.optimizers, amp.scaler, restore_rng=False)
        run.state, run.resumed = resume.restored_state(progress, steps // cfg.grads_accumulated), True
        if env.is_main:
            print(f"resuming from {last_path} after epoch {run.state.epoch}", file=sys.stderr)
    return run, plan


def _summary(state: TrainState, k: int, total_time: float) -> dict[str, float]:
    history, best = state.history, state.best
    if not history:
        return {}
    mean = lambda key: sum(h[key] for h in history) / len(history)  # noqa: E731
    return {
        "best_train_throughput": max(h["train_throughput"] for h in history),
        "best_eval_throughput": max(h["eval_throughput"] for h in history),
        "mean_train_throughput": mean("train_throughput"),
        "mean_eval_throughput": mean("eval_throughput"),
        "best_accuracy": best[f"hr@{k}"],
        f"hr@{k}": best[f"hr@{k}"],
        f"ndcg@{k}": best[f"ndcg@{k}"],
        "best_epoch": best["epoch"],
        "time_to_target": total_time,
        "time_to_best_model": best["time"],
        "validation_loss": history[-1]["validation_loss"],
        "train_loss": history[-1]["train_loss"],
        "epochs": len(history),
    }


if __name__ == "__main__":
    cli.run(main)
