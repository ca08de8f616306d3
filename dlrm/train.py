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

import torch
from tqdm import tqdm

from common import checkpoint, cli, config, distributed, entry, throughput
from common.errors import RunError
from common.logging import JsonLogger
from common.output_dir import no_space_message
from dlrm import data as dlrm_data
from dlrm import seed_modes
from dlrm.config import DlrmConfig
from dlrm.scoring import evaluate
from dlrm.train_setup import TrainRun, setup
from dlrm.train_state import DlrmState

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


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(DlrmConfig, argv, prog="python -m dlrm.train", description=__doc__.split("\n\n")[0])
    if cfg.mode != "train":  # the seed's --mode test / inference_benchmark
        return seed_modes.run(cfg)
    env = entry.start(cfg)
    run = setup(cfg, env)
    state, sizes = run.state, run.eval_model.sizes
    log = entry.open_log(  # a relative --log_path is under --output_dir (the 2020 flag)
        cfg, env, METRICS, path=cfg.resolve(cfg.log_path),
        append=run.resumed_from is not None, table_sizes=list(sizes.table_sizes),
        amp_mode=run.amp.describe(), resumed_from_step=state.global_step,
    )  # fmt: skip
    if env.is_main and run.resumed_from is not None:
        print(f"resuming from {run.resumed_from} at step {state.global_step}", file=sys.stderr)
    try:
        train(run, log, throughput.Clock(env.device))
    except FloatingPointError as e:  # diverged (lr 24-28 does for some seeds): say so, no traceback
        raise RunError(f"{e}; lower --lr or raise --warmup_steps (the last checkpoint is kept)") from None
    except OSError as e:  # a full disk while writing the checkpoint or the log
        if (message := no_space_message(e, cfg.save_checkpoint_path or cfg.log_path)) is None:
            raise
        raise RunError(message) from None
    summary = summarize(state, run.plan.batch_size)  # without the --benchmark_warmup_steps
    return entry.finish(env, log, summary)


def train(run: TrainRun, log: JsonLogger, clock: throughput.Clock) -> None:
    """The epoch/step loop: steps, windowed loss logs with the NaN check, evaluations, checkpoints."""
    plan, state, total = run.plan, run.state, run.plan.total_steps
    bar = tqdm(total=total, initial=min(state.global_step, total), disable=not (plan.progress and run.env.is_main),
               desc="train", file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    window = torch.tensor(state.loss_sum, dtype=torch.float64, device=run.env.device)
    while not state.stopped and state.epoch < plan.epochs and state.global_step < total:
        order = plan.batch_order(state.epoch)
        first = state.step_in_epoch  # resuming mid-epoch; never read batches past `total`
        batches = run.source.train_batches(plan.batch_size, order[first : first + total - state.global_step])
        for batch in batches:  # a generator: closed below so an early stop ends the prefetch thread
            state.global_step += 1
            state.step_in_epoch += 1
            window += train_step(run.step_fn, batch, state.global_step)
            state.loss_count += 1
            bar.update()
            gs = state.global_step
            if gs == plan.untimed_steps:  # throughput leaves the first steps out (the seed's flag)
                state.train_time, state.untimed_steps = 0.0, gs
                clock.lap()
            if gs % plan.print_freq == 0:
                _log_window(run, log, clock, window)
            tested = (
                gs >= plan.test_after * plan.steps_per_epoch
            )  # --test_after: none before that many epochs
            if plan.test_freq is not None and gs % plan.test_freq == 0 and gs < total and tested:
                state.loss_sum = float(window)
                _evaluate_and_save(run, log, clock)
                if state.stopped:
                    break
        batches.close()
        if state.step_in_epoch >= plan.steps_per_epoch:
            state.epoch += 1
            state.step_in_epoch = 0
            if plan.test_freq is None and state.global_step < total and state.epoch >= plan.test_after:
                state.loss_sum = float(window)
                _evaluate_and_save(run, log, clock)
    bar.close()
    evaluated = state.history and state.history[-1]["step"] == state.global_step
    if not evaluated and state.global_step > 0:
        if state.loss_count:
            _log_window(run, log, clock, window)
        state.loss_sum = float(window)
        _evaluate_and_save(run, log, clock)


def _log_window(run: TrainRun, log: JsonLogger, clock: throughput.Clock, window: torch.Tensor) -> None:
    """Log the mean loss of the last window over all ranks; abort on NaN on every rank alike (at lr ~28
    some seeds diverge)."""
    state, env = run.state, run.env
    n, gs = state.loss_count, state.global_step
    loss = float(distributed.all_reduce_sum(window, env)) / max(n * env.world_size, 1)
    if not math.isfinite(loss):
        raise FloatingPointError(f"NaN/inf training loss in the {n} steps up to step {gs}")
    elapsed = clock.lap()
    state.train_time += elapsed
    state.training_loss = loss
    log.log([state.epoch, gs], {"loss": loss, "lr": run.step_fn.schedule.lr(gs), "step_time": elapsed / max(n, 1),
            "train_throughput": n * run.plan.batch_size / elapsed})  # fmt: skip
    window.zero_()
    state.loss_count = 0


def _evaluate_and_save(run: TrainRun, log: JsonLogger, clock: throughput.Clock) -> None:
    """Evaluate on the test split, track the best AUC, honour --auc_threshold, write the checkpoint."""
    plan, state, env = run.plan, run.state, run.env
    state.train_time += clock.lap()
    t0 = time.perf_counter()
    result = evaluate(run.eval_model, run.source.eval_batches("test", plan.test_batch_size), env, run.amp,
                      plan.progress and env.is_main)  # fmt: skip
    record = {"auc": result["auc"], "validation_loss": result["loss"], "eval_time": time.perf_counter() - t0}
    log.log([state.epoch, state.global_step], record)
    epoch_frac = state.global_step / plan.steps_per_epoch
    state.history.append({"step": state.global_step, "epoch": epoch_frac, **record})
    if record["auc"] > state.best.get("auc", -1.0):
        state.best = {"auc": record["auc"], "validation_loss": record["validation_loss"], "epoch": epoch_frac}
    if not math.isfinite(record["validation_loss"]):  # the same on every rank: all stop, nothing is saved
        raise FloatingPointError(
            f"non-finite validation loss at step {state.global_step}: the weights diverged"
        )
    if plan.auc_threshold is not None and record["auc"] >= plan.auc_threshold:
        state.stopped = True
        if env.is_main:
            print(f"AUC {record['auc']:.6f} >= --auc_threshold {plan.auc_threshold} at step "
                  f"{state.global_step} after {state.train_time:.1f} s of training", file=sys.stderr)  # fmt: skip
    if run.target is not None:
        save_checkpoint(run, state)
    distributed.barrier(env)
    clock.lap()  # evaluation and saving are not training time


def save_checkpoint(run: TrainRun, state: DlrmState) -> None:
    """The full state (resumable) at run.target; the sharded weights are gathered on every rank."""
    weights, target = run.step_fn.weights(), run.target  # a collective when sharded
    if run.env.is_main:
        checkpoint.save(target.path, model=weights, hyperparams=target.hyperparams, config=target.config,
                        optimizer=run.step_fn.optimizer, scaler=run.amp.scaler, progress=state.as_dict(),
                        recipe="dlrm", dataset=target.dataset)  # fmt: skip


def summarize(state: DlrmState, batch_size: int) -> dict[str, float]:
    best, train_time = state.best, state.train_time
    timed = (state.global_step - state.untimed_steps) * batch_size
    return {
        "best_auc": best.get("auc", math.nan),
        "best_validation_loss": best.get("validation_loss", math.nan),
        "training_loss": state.training_loss,
        "best_epoch": best.get("epoch", math.nan),
        "auc": state.history[-1]["auc"] if state.history else math.nan,
        "steps": state.global_step,
        "time_to_train": train_time,
        "average_train_throughput": timed / train_time if train_time else 0.0,
    }


if __name__ == "__main__":
    cli.run(main)
