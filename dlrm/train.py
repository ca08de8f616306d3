"""Train DLRM on a prepared Criteo dataset (dlrm.prepare_data output) or on synthetic on-device data.

  1 GPU / CPU : python -m dlrm.train --dataset /data/dlrm --save_checkpoint_path runs/dlrm.pt
  8 GPUs      : torchrun --nproc_per_node=8 -m dlrm.train --dataset /data/dlrm --amp
  newest 64k  : python -m dlrm.train --config dlrm/configs/criteo_64k.yaml --dataset /data/dlrm --amp
  no data     : python -m dlrm.train --synthetic_dataset --synthetic_dataset_table_sizes 100000 100000 --max_steps 500
  CPU smoke   : python -m dlrm.train --config dlrm/configs/tiny.yaml --synthetic_dataset

A run with --save_checkpoint_path writes it at every evaluation; started again with the same flags it resumes
from it (model, optimizer, step, best AUC, loss window) and ends with the same metrics as an uninterrupted run;
with other result-changing flags or other data it refuses, listing them (--no-resume starts over).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from common import amp as amp_lib
from common import checkpoint, cli, config, distributed, throughput
from common.distributed import DistEnv
from common.feature_spec import FeatureSpecError
from common.kernels import set_policy as set_kernel_policy
from common.logging import JsonLogger
from common.output_dir import no_space_message
from dlrm import data as dlrm_data
from dlrm import seed_modes
from dlrm.config import DlrmConfig
from dlrm.lr_schedule import LrSchedule
from dlrm.model import DLRM, DlrmSizes
from dlrm.parallel import ShardedDLRM, build_model_parallel
from dlrm.scoring import check_compatible, dataset_facts, evaluate
from dlrm.steps import ReplicatedStep, ShardedStep

# Flags that cannot change a run's result, so a resume may change them: where logs and checkpoints go,
# progress bars, read-ahead, the evaluation batch (AUC is exact over the whole split whatever the batch),
# the device and --kernels (same math up to float rounding), and --epochs/--max_steps, which legitimately extend a finished run. Every other flag must
# match the checkpoint's (checkpoint.check_resumable), or a resumed run would report the old run's
# metrics under the new flags.
RESUME_MAY_CHANGE = ("dataset", "feature_spec", "prefetch_batches", "test_batch_size", "device", "epochs",
                     "max_steps", "save_checkpoint_path", "load_checkpoint_path", "resume", "log_path",
                     "progress", "mode", "output_dir", "tf32", "benchmark_warmup_steps",
                     "inference_benchmark_batch_sizes", "inference_benchmark_steps", "kernels")  # fmt: skip

METRICS = {  # NVIDIA's DLRM DLLogger names plus per-window training records
    "loss": {"format": ":.5f"},
    "lr": {"format": ":.4f"},
    "step_time": {"unit": "s", "format": ":.4f"},
    "train_throughput": {"unit": "samples/s", "format": ":.4e"},
    "auc": {"format": ":.6f"},
    "validation_loss": {"format": ":.6f"},
    "eval_time": {"unit": "s", "format": ":.3f"},
    "best_auc": {"format": ":.6f"},
    "best_validation_loss": {"format": ":.6f"},
    "training_loss": {"format": ":.5f"},
    "best_epoch": {"format": ":.3f"},
    "average_train_throughput": {"unit": "samples/s", "format": ":.4e"},
    "time_to_train": {"unit": "s", "format": ":.1f"},
}


def train_step(step_fn, batch: dlrm_data.DlrmBatch, step: int) -> torch.Tensor:
    """One optimizer step (a seam for tests that simulate a kill mid-run)."""
    return step_fn(batch, step)


def build_source(cfg: DlrmConfig, env: DistEnv) -> dlrm_data.DiskSource | dlrm_data.SyntheticSource:
    if cfg.synthetic_dataset:
        synthetic = dlrm_data.SyntheticCriteo(tuple(cfg.synthetic_dataset_table_sizes), seed=cfg.seed)
        return dlrm_data.SyntheticSource(synthetic, cfg.synthetic_dataset_num_entries,
                                         cfg.synthetic_dataset_test_entries, env.rank, env.world_size, env.device)  # fmt: skip
    dataset = dlrm_data.open_dataset(cfg.dataset, cfg.feature_spec)
    return dlrm_data.DiskSource(dataset, env.rank, env.world_size, env.device, cfg.prefetch_batches)


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


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(DlrmConfig, argv, prog="python -m dlrm.train", description=__doc__.split("\n\n")[0])
    set_kernel_policy(cfg.kernels)
    if cfg.mode != "train":  # the seed's --mode test / inference_benchmark
        return seed_modes.run(cfg)
    if cfg.dataset is None and not cfg.synthetic_dataset:
        _fail(
            "--dataset is required (a directory written by python -m dlrm.prepare_data), or --synthetic_dataset"
        )
    owns_group = not torch.distributed.is_initialized()  # a caller's process group is left to the caller
    env = distributed.init(cfg.device)
    if cfg.batch_size % env.world_size:
        _fail(f"--batch_size {cfg.batch_size} is global and must be divisible by {env.world_size} ranks")
    save_path = cfg.resolve(cfg.save_checkpoint_path)
    resume_path = save_path if cfg.resume and save_path and save_path.is_file() else None
    try:
        source = build_source(cfg, env)
        steps = steps_per_epoch(cfg, source)
        if steps == 0:
            raise ValueError(
                f"{source.rows('train')} training rows make no full batch of --batch_size {cfg.batch_size}"
            )
        resume_from = load_resumable(resume_path, cfg, source) if resume_path is not None else None
        weights_from = (
            checkpoint.load(cfg.load_checkpoint_path, recipe="dlrm") if cfg.load_checkpoint_path else None
        )
    except (FeatureSpecError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    sizes = model_sizes(cfg, source.table_sizes, source.num_numerical)
    model = build_model(cfg, sizes, env)
    try:
        amp = amp_lib.setup(cfg.amp, env.device, cfg.amp_dtype, tf32=cfg.tf32, loss_scale=cfg.loss_scale)
    except ValueError as e:
        _fail(str(e))
    schedule = LrSchedule(cfg.lr, cfg.warmup_steps, cfg.warmup_factor, cfg.decay_start_step, cfg.decay_steps,
                          cfg.decay_power, cfg.decay_end_lr)  # fmt: skip
    step_fn = (ReplicatedStep if cfg.embedding_sharding == "replicated" else ShardedStep)(
        model, env, amp, schedule, cfg.embedding_lr_scale
    )
    state = new_state()
    if weights_from is not None and resume_from is None:  # the seed's --load_checkpoint_path: weights only
        try:
            check_compatible(model, source, str(cfg.load_checkpoint_path), weights_from)
            step_fn.load_weights(weights_from["model"])
        except (RuntimeError, ValueError, KeyError) as e:
            _fail(f"cannot load weights from {cfg.load_checkpoint_path}: {e}")
    if resume_from is not None:
        try:
            check_compatible(model, source, str(resume_path), resume_from)
            step_fn.load_weights(resume_from["model"])
            state = dict(resume_from.get("progress") or {}) or state
        except (RuntimeError, ValueError, KeyError) as e:
            _fail(f"cannot resume from {resume_path}: {e}")
    # Plain SGD keeps no state and the LR comes from the schedule, so only the replicated optimizer's own
    # state is reloaded (in table mode each rank's optimizer holds a different parameter list).
    if resume_from is not None and "optimizer" in resume_from and cfg.embedding_sharding == "replicated":
        step_fn.optimizer.load_state_dict(resume_from["optimizer"])
        if amp.scaler.is_enabled() and resume_from.get("scaler"):
            amp.scaler.load_state_dict(resume_from["scaler"])
    log = JsonLogger(
        cfg.resolve(cfg.log_path), enabled=env.is_main, metadata=METRICS, append=resume_from is not None
    )
    log.parameters({**config.to_dict(cfg), "world_size": env.world_size, "device": str(env.device),
                    "table_sizes": list(sizes.table_sizes), "amp_mode": amp.describe(),
                    "resumed_from_step": state["global_step"]})  # fmt: skip
    if env.is_main and resume_from is not None:
        print(f"resuming from {resume_path} at step {state['global_step']}", file=sys.stderr)
    try:
        run(_Run(cfg, env, source, step_fn, model, sizes, amp, log, throughput.Clock(env.device)), state)
    except FloatingPointError as e:  # diverged (lr 24-28 does for some seeds): say so, no traceback
        print(
            f"error: {e}; lower --lr or raise --warmup_steps (the last checkpoint is kept)", file=sys.stderr
        )
        raise SystemExit(1) from None
    except OSError as e:  # a full disk while writing the checkpoint or the log
        if (message := no_space_message(e, cfg.save_checkpoint_path or cfg.log_path)) is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    summary = summarize(state, cfg.batch_size)  # without the --benchmark_warmup_steps
    log.summary(summary)
    log.close()
    if owns_group:
        distributed.shutdown(env)
    return summary


def build_model(cfg: DlrmConfig, sizes: DlrmSizes, env: DistEnv) -> DLRM | ShardedDLRM:
    """The model from --seed, the same initial weights on every rank: replicated, the whole DLRM on every
    rank; table-sharded, each rank builds only the tables it owns (dlrm.parallel), the same values."""
    torch.manual_seed(cfg.seed)
    if cfg.embedding_sharding == "table":
        return build_model_parallel(sizes, env, sparse=True, seed=cfg.seed)
    return DLRM(sizes, sparse=False).to(env.device)


def load_resumable(path, cfg: DlrmConfig, source) -> dict:
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


def new_state() -> dict:
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "train_time": 0.0, "loss_sum": 0.0,
            "loss_count": 0, "training_loss": math.nan, "best": {}, "evals": [], "stopped": False}  # fmt: skip


@dataclass
class _Run:
    """What the loop and its evaluations share (passed explicitly, never global)."""

    cfg: DlrmConfig
    env: DistEnv
    source: dlrm_data.DiskSource | dlrm_data.SyntheticSource
    step_fn: ReplicatedStep | ShardedStep
    eval_model: nn.Module
    sizes: DlrmSizes
    amp: amp_lib.Amp
    log: JsonLogger
    clock: throughput.Clock

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.cfg, self.source)


def steps_per_epoch(cfg: DlrmConfig, source) -> int:
    """Full batches per epoch; --dataset_subset keeps the first fraction of them."""
    steps = source.rows("train") // cfg.batch_size
    return max(int(steps * cfg.dataset_subset), 1) if cfg.dataset_subset is not None and steps else steps


def run(r: _Run, state: dict) -> None:
    """The epoch/step loop: steps, windowed loss logs with the NaN check, evaluations, checkpoints."""
    cfg, env, step_fn, steps = r.cfg, r.env, r.step_fn, r.steps_per_epoch
    total = steps * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps * cfg.epochs)
    bar = tqdm(total=total, initial=min(state["global_step"], total), disable=not (cfg.progress and env.is_main),
               desc="train", file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    window = torch.tensor(state["loss_sum"], dtype=torch.float64, device=env.device)
    while not state["stopped"] and state["epoch"] < cfg.epochs and state["global_step"] < total:
        order = dlrm_data.batch_order(steps, cfg.shuffle_batch_order, cfg.seed, state["epoch"])
        first = state["step_in_epoch"]  # resuming mid-epoch; never read batches past `total`
        batches = r.source.train_batches(cfg.batch_size, order[first : first + total - state["global_step"]])
        for batch in batches:  # a generator: closed below so an early stop ends the prefetch thread
            state["global_step"] += 1
            state["step_in_epoch"] += 1
            window += train_step(step_fn, batch, state["global_step"])
            state["loss_count"] += 1
            bar.update()
            gs = state["global_step"]
            if gs == cfg.benchmark_warmup_steps:  # throughput leaves the first steps out (the seed's flag)
                state["train_time"], state["untimed_steps"] = 0.0, gs
                r.clock.lap()
            if gs % cfg.print_freq == 0:
                _log_window(r, state, window)
            tested = gs >= cfg.test_after * steps  # --test_after: no evaluation before that many epochs
            if cfg.test_freq is not None and gs % cfg.test_freq == 0 and gs < total and tested:
                state["loss_sum"] = float(window)
                _evaluate_and_save(r, state)
                if state["stopped"]:
                    break
        batches.close()
        if state["step_in_epoch"] >= steps:
            state["epoch"] += 1
            state["step_in_epoch"] = 0
            if cfg.test_freq is None and state["global_step"] < total and state["epoch"] >= cfg.test_after:
                state["loss_sum"] = float(window)
                _evaluate_and_save(r, state)
    bar.close()
    evaluated = state["evals"] and state["evals"][-1]["step"] == state["global_step"]
    if not evaluated and state["global_step"] > 0:
        if state["loss_count"]:
            _log_window(r, state, window)
        state["loss_sum"] = float(window)
        _evaluate_and_save(r, state)


def _log_window(r: _Run, state: dict, window: torch.Tensor) -> None:
    """Log the mean loss of the last window over all ranks; abort on NaN on every rank alike (at lr ~28
    some seeds diverge)."""
    n, gs = state["loss_count"], state["global_step"]
    loss = float(distributed.all_reduce_sum(window, r.env)) / max(n * r.env.world_size, 1)
    if not math.isfinite(loss):
        raise FloatingPointError(f"NaN/inf training loss in the {n} steps up to step {state['global_step']}")
    elapsed = r.clock.lap()
    state["train_time"] += elapsed
    state["training_loss"] = loss
    r.log.log([state["epoch"], state["global_step"]], {"loss": loss, "lr": r.step_fn.schedule.lr(gs), "step_time": elapsed / max(n, 1),
            "train_throughput": n * r.cfg.batch_size / elapsed})  # fmt: skip
    window.zero_()
    state["loss_count"] = 0


def _evaluate_and_save(r: _Run, state: dict) -> None:
    """Evaluate on the test split, track the best AUC, honour --auc_threshold, write the checkpoint."""
    cfg, env = r.cfg, r.env
    state["train_time"] += r.clock.lap()
    t0 = time.perf_counter()
    result = evaluate(r.eval_model, r.source.eval_batches("test", cfg.test_batch_size), env, r.amp,
                      cfg.progress and env.is_main)  # fmt: skip
    record = {"auc": result["auc"], "validation_loss": result["loss"], "eval_time": time.perf_counter() - t0}
    r.log.log([state["epoch"], state["global_step"]], record)
    epoch_frac = state["global_step"] / r.steps_per_epoch
    state["evals"].append({"step": state["global_step"], "epoch": epoch_frac, **record})
    if record["auc"] > state["best"].get("auc", -1.0):
        state["best"] = {
            "auc": record["auc"],
            "validation_loss": record["validation_loss"],
            "epoch": epoch_frac,
        }
    if not math.isfinite(record["validation_loss"]):  # the same on every rank: all stop, nothing is saved
        raise FloatingPointError(
            f"non-finite validation loss at step {state['global_step']}: the weights diverged"
        )
    if cfg.auc_threshold is not None and record["auc"] >= cfg.auc_threshold:
        state["stopped"] = True
        if env.is_main:
            print(f"AUC {record['auc']:.6f} >= --auc_threshold {cfg.auc_threshold} at step "
                  f"{state['global_step']} after {state['train_time']:.1f} s of training", file=sys.stderr)  # fmt: skip
    weights = r.step_fn.weights() if cfg.save_checkpoint_path is not None else None  # collective when sharded
    if weights is not None and env.is_main:
        checkpoint.save(cfg.resolve(cfg.save_checkpoint_path), model=weights, hyperparams=r.sizes.as_dict(),
                        config=config.to_dict(cfg), optimizer=r.step_fn.optimizer, scaler=r.amp.scaler,
                        progress=dict(state), recipe="dlrm", dataset=dataset_facts(r.source))  # fmt: skip
    distributed.barrier(env)
    r.clock.lap()  # evaluation and saving are not training time


def summarize(state: dict, batch_size: int) -> dict[str, float]:
    best, train_time = state["best"], state["train_time"]
    return {
        "best_auc": best.get("auc", math.nan),
        "best_validation_loss": best.get("validation_loss", math.nan),
        "training_loss": state["training_loss"],
        "best_epoch": best.get("epoch", math.nan),
        "auc": state["evals"][-1]["auc"] if state["evals"] else math.nan,
        "steps": state["global_step"],
        "time_to_train": train_time,
        "average_train_throughput": (state["global_step"] - state.get("untimed_steps", 0))
        * batch_size
        / train_time
        if train_time
        else 0.0,
    }


if __name__ == "__main__":
    cli.run(main)
