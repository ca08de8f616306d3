"""Train SIM, DIN or DIEN on a FeatureSpec dataset (sim.prepare_data output, or your own Parquet).

  1 GPU / CPU : python -m sim.train --dataset_dir /data/sim --model_type sim --results_dir runs/sim
  8 GPUs      : torchrun --nproc_per_node=8 -m sim.train --dataset_dir /data/sim --model_type sim --amp
  resume      : python -m sim.train --dataset_dir /data/sim --save_checkpoint_path runs/sim/ckpt.pt \\
                    --load_checkpoint_path runs/sim/ckpt.pt      # continues after the last finished epoch
  benchmark   : python -m sim.train --dataset_dir /data/sim --benchmark [--amp]
  inference   : python -m sim.train --mode inference --dataset_dir /data/sim --benchmark [--load_checkpoint_path C]
  CPU smoke   : python -m sim.train --config sim/configs/tiny.yaml --dataset_dir /tmp/sim_tiny

Every epoch logs (DLLogger format, results_dir/log_filename) per-step classification_loss, dien_aux_loss,
total_loss and samples/s, then throughput, time, latency_mean/p90/p95/p99 and the exact train_auc,
train_loss, test_auc, test_loss; the summary holds time_to_train. A run killed mid-epoch and restarted
with --load_checkpoint_path on its own --save_checkpoint_path ends with the same metrics. An existing
--save_checkpoint_path is only replaced by the run resuming it (or with --overwrite_checkpoint), a resume
with other result-changing flags is refused (sim/checkpoint_rules.py), and a NaN/inf loss stops the run
with one error line before anything is evaluated or saved.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from common import amp as amp_lib
from common import checkpoint, cli, config, distributed, entry
from common.distributed import DistEnv
from common.errors import RunError, UsageError
from common.logging import JsonLogger
from common.output_dir import no_space_message
from common.seeding import derived_seed
from common.throughput import StepTimer, peak_memory_gib
from sim import checkpoint_rules
from sim import data as sim_data
from sim.checkpoint_rules import SimState
from sim.config import SimConfig
from sim.models import SimSizes, build_model
from sim.scoring import check_compatible, evaluate_splits
from sim.steps import METRICS, build_optimizers, run_inference, train_step


@dataclass
class Run:
    """What _setup checked and built before anything is written: the model (on the device) and its sizes,
    this rank's shards, where training starts and the checkpoint it resumes (None: a fresh run)."""

    model: torch.nn.Module
    sizes: SimSizes
    splits: dict[str, sim_data.SplitData]
    steps: list[slice]  # positions of each training step in an epoch's permutation
    state: SimState
    resume: dict | None
    facts: dict  # the dataset's facts a checkpoint records (checkpoint_rules.dataset_facts)


@dataclass
class EpochLoop:
    """What every training epoch reuses: the (compiled/DDP-wrapped) model and its optimizers, this rank's
    train shard cut into steps, the step timer, and where (and how often) step records go."""

    model: torch.nn.Module
    optimizers: list[torch.optim.Optimizer]
    amp: amp_lib.Amp
    data: sim_data.SplitData
    steps: list[slice]
    timer: StepTimer
    log: JsonLogger
    log_every: int
    show: bool


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(SimConfig, argv, prog="python -m sim.train", description=__doc__.split("\n\n")[0])
    env = entry.start(cfg)
    run = _setup(cfg, env)
    log = entry.open_log(cfg, env, METRICS, append=run.resume is not None, seed=run.state.seed,
                         shuffle="per-epoch permutation of each rank's shard")  # fmt: skip
    amp = amp_lib.setup(cfg.amp, env.device, cfg.amp_dtype, tf32=cfg.tf32)
    local_batch = cfg.global_batch_size // env.world_size
    show = cfg.progress and env.is_main
    if cfg.mode == "inference":
        steps = cfg.benchmark_steps if cfg.benchmark and cfg.benchmark_steps > 0 else None
        summary = run_inference(run.model, run.splits["train"], local_batch, amp, env, log,
                                warmup=cfg.benchmark_warmup_steps, steps=steps, log_every=cfg.log_every)  # fmt: skip
        return entry.finish(env, log, summary)
    optimizers = build_optimizers(run.model, cfg)
    if run.resume is not None:
        checkpoint.restore(run.resume, run.model, optimizers, amp.scaler, restore_rng=False)
    train_model = distributed.wrap_ddp(torch.compile(run.model) if cfg.compile else run.model, env)
    limit = cfg.benchmark_steps if cfg.benchmark else None
    timer = StepTimer(env.device, cfg.benchmark_warmup_steps, limit)
    loop = EpochLoop(
        train_model, optimizers, amp, run.splits["train"], run.steps, timer, log, cfg.log_every, show
    )
    with _fails_cleanly(cfg.save_checkpoint_path, cfg.results_dir, log):
        if cfg.benchmark:
            return entry.finish(env, log, _benchmark(loop, run.state, env, one_pass=cfg.benchmark_steps <= 0))
        splits = {
            name: run.splits[name] for name in ("train", "test") if cfg.evaluate_train or name == "test"
        }
        scores = partial(evaluate_splits, run.model, splits, env, local_batch, amp, show)
        save = _checkpointer(cfg, env, run, optimizers, amp.scaler)
        _fit(loop, run.state, cfg.epochs, env, scores, save)
    return entry.finish(env, log, _summary(run.state.history))


def _setup(cfg: SimConfig, env: DistEnv) -> Run:
    """Check the flags, the checkpoints and the data, and build the model: every refusal comes here, as a
    typed error, before the log or a checkpoint is touched."""
    if cfg.dataset_dir is None:
        raise UsageError("--dataset_dir is required (a directory written by python -m sim.prepare_data)")
    if cfg.global_batch_size % env.world_size:
        raise UsageError(
            f"--global_batch_size {cfg.global_batch_size} is global and must divide by {env.world_size} ranks"
        )
    if cfg.optimizer == "lazy_adam" and env.distributed:
        raise UsageError("--optimizer lazy_adam is single-process only (DDP all-reduces dense gradients)")
    resuming = cfg.mode == "train" and cfg.load_checkpoint_path is not None
    if cfg.mode == "train" and not cfg.benchmark:
        checkpoint_rules.check_save_path(cfg)
    ckpt = checkpoint_rules.load(cfg.load_checkpoint_path) if cfg.load_checkpoint_path else None
    spec, schema = sim_data.open_spec(cfg.dataset_dir, cfg.feature_spec)
    seed = _pick_seed(cfg.seed, ckpt if resuming else None, env)
    if resuming:
        checkpoint_rules.check_resume(cfg, ckpt, seed, schema)
    model, sizes = _model(cfg, schema, ckpt, seed)
    names = ("train",) if cfg.mode == "inference" or cfg.benchmark else ("train", "test")
    splits = sim_data.load_shards(spec, schema, names, sizes, env, negatives=cfg.mode == "train",
                                  show=cfg.progress and env.is_main)  # fmt: skip
    local_batch = cfg.global_batch_size // env.world_size
    steps = _epoch_steps(splits["train"], local_batch, cfg.drop_remainder, env) if cfg.mode == "train" else []
    resume = ckpt if resuming else None
    state = checkpoint_rules.resume_state(resume, seed)
    facts = checkpoint_rules.dataset_facts(schema)
    return Run(model.to(env.device), sizes, splits, steps, state, resume, facts)


def _epoch_steps(
    train: sim_data.SplitData, local_batch: int, drop_remainder: bool, env: DistEnv
) -> list[slice]:
    smallest = train.total_rows // env.world_size
    steps = sim_data.epoch_steps(len(train), smallest, local_batch, drop_remainder)
    if smallest == 0 or not steps:
        raise UsageError(f"the train split's {train.total_rows} rows give no full step of {local_batch} rows "
                         "per rank; lower --global_batch_size or drop --drop_remainder")  # fmt: skip
    return steps


def check_finite(bad: torch.Tensor, env: DistEnv, epoch: int, step: int) -> None:
    """Stop a diverged run: `bad` counts this rank's non-finite losses so far. Summed over ranks, so every
    rank stops at the same step (a rank stopping alone would leave the others waiting in a collective)."""
    if float(distributed.all_reduce_sum(bad.float(), env)) > 0:
        raise FloatingPointError(f"non-finite (NaN/inf) training loss in epoch {epoch} by step {step}")


def train_one_epoch(loop: EpochLoop, order: torch.Tensor, epoch: int, env: DistEnv) -> None:
    """One pass over this rank's shard in `order` (a device permutation), timing and logging every step.
    Non-finite losses are counted on the device (no sync) and checked at every log point."""
    bad = torch.zeros((), dtype=torch.int32, device=env.device)
    for i, cut in enumerate(tqdm(loop.steps, desc=f"epoch {epoch}", disable=not loop.show, leave=False)):
        batch = loop.data.batch(order[cut])
        loop.timer.start()
        losses = train_step(loop.model, batch, loop.optimizers, loop.amp)
        latency = loop.timer.stop(batch.label.shape[0] * env.world_size)
        bad += ~torch.isfinite(losses.total)
        if (i + 1) % loop.log_every == 0 or i + 1 == len(loop.steps) or loop.timer.done:
            check_finite(bad, env, epoch, i)
            loop.log.log([epoch, i], {"classification_loss": float(losses.classification),
                                      "dien_aux_loss": float(losses.aux), "total_loss": float(losses.total),
                                      "samples/s": batch.label.shape[0] * env.world_size / latency})  # fmt: skip
        if loop.timer.done:
            return


def _run_epoch(loop: EpochLoop, seed: int, epoch: int, env: DistEnv) -> dict[str, float]:
    """Train one epoch in its own order (derived from the seed and the epoch, so a resume replays it) and
    return its timing record."""
    gen = torch.Generator().manual_seed(derived_seed(seed, epoch, 1000 + env.rank))
    torch.manual_seed(derived_seed(seed, epoch, env.rank))  # dropout masks differ per rank
    order = torch.randperm(len(loop.data), generator=gen).to(env.device)
    loop.timer.new_epoch()
    train_one_epoch(loop, order, epoch, env)
    return loop.timer.results()


def _fit(
    loop: EpochLoop, state: SimState, epochs: int, env: DistEnv,
    scores: Callable[[], dict[str, float]], save: Callable[[SimState], None],
) -> None:  # fmt: skip
    """Epochs state.epoch..epochs-1: train, score, log the epoch record, checkpoint the state."""
    for epoch in range(state.epoch, epochs):
        started = time.perf_counter()
        record = _run_epoch(loop, state.seed, epoch, env) | scores()
        loop.log.log([epoch], record)
        state.history.append(record)
        if record["test_auc"] > state.best.get("test_auc", float("-inf")):
            state.best = {"epoch": epoch, **record}
        state.epoch, state.global_step = epoch + 1, state.global_step + len(loop.steps)
        state.elapsed += time.perf_counter() - started
        save(state)


def _benchmark(loop: EpochLoop, state: SimState, env: DistEnv, one_pass: bool) -> dict[str, float]:
    """--benchmark: epochs until the timer's step limit (or one pass with benchmark_steps <= 0)."""
    epoch = state.epoch
    while True:
        record = _run_epoch(loop, state.seed, epoch, env)
        if loop.timer.done or one_pass:
            return {**record, "peak_memory_gib": peak_memory_gib(env.device)}
        epoch += 1


@contextmanager
def _fails_cleanly(save_path: Path | None, results_dir: Path, log: JsonLogger) -> Iterator[None]:
    """A diverged run (NaN/inf loss or logits) or a full disk ends as a RunError (one error line, exit 1);
    the last good checkpoint stays (checkpoints are written atomically, never with NaN weights)."""
    try:
        yield
    except FloatingPointError as e:
        log.close()
        kept = (
            f"{save_path} is left as it was" if save_path and save_path.exists() else "no checkpoint written"
        )
        raise RunError(f"{e}; lower --lr ({kept})") from None
    except OSError as e:
        if (message := no_space_message(e, save_path or results_dir)) is None:
            raise
        log.close()
        raise RunError(message) from None


def _model(cfg: SimConfig, schema, ckpt: dict | None, seed: int) -> tuple[torch.nn.Module, SimSizes]:
    """Inference with a checkpoint: its model. Otherwise the flags' model (a resumed one must match them)."""
    if cfg.mode == "inference" and ckpt is not None:
        path = cfg.load_checkpoint_path
        model = checkpoint.model_from(ckpt, checkpoint_rules.model_builder(path), path, "a SIM model")
        check_compatible(model.sizes, schema, path)
        return model, model.sizes
    sizes = SimSizes(
        cfg.model_type, schema.user_cardinalities, schema.item_cardinalities, cfg.embedding_dim,
        cfg.long_seq_length, cfg.gsu_topk, tuple(cfg.stage_one_mlp_dims), tuple(cfg.stage_two_mlp_dims),
        tuple(cfg.aux_mlp_dims), cfg.dropout_rate, cfg.augru_variant, cfg.din_attention,
    )  # fmt: skip
    check_compatible(sizes, schema, "--long_seq_length")
    torch.manual_seed(seed)
    return build_model(sizes, sparse_embeddings=cfg.optimizer == "lazy_adam"), sizes


def _checkpointer(cfg: SimConfig, env: DistEnv, run: Run, optimizers, scaler) -> Callable[[SimState], None]:
    """How the loop saves its state after an epoch (rank 0, when --save_checkpoint_path is given)."""
    path = cfg.save_checkpoint_path
    if path is None or not env.is_main:
        return lambda state: None
    fixed = dict(model=run.model, hyperparams=run.sizes.as_dict(), optimizer=optimizers, scaler=scaler,
                 config={**config.to_dict(cfg), "seed": run.state.seed}, recipe=checkpoint_rules.RECIPE,
                 dataset=run.facts)  # fmt: skip
    return lambda state: checkpoint.save(path, progress=state.as_dict(), **fixed)


def _pick_seed(requested: int | None, resume: dict | None, env: DistEnv) -> int:
    """The flag, else the resumed run's seed, else a fresh random one; identical on every rank. A flag
    other than the resumed run's seed is refused by checkpoint_rules.check_resume, with the other flags."""
    saved = resume["config"].get("seed") if resume is not None else None
    seed = requested if requested is not None else saved if saved is not None else secrets.randbelow(2**31)
    return int(distributed.broadcast_(torch.tensor(seed, device=env.device), env))


def _summary(history: list[dict]) -> dict[str, float]:
    """The reference's summary: time_to_train (sum of epoch train times) + the last epoch's metrics."""
    if not history:
        return {}
    last = history[-1]
    keys = [k for k in ("train_auc", "train_loss", "test_auc", "test_loss", "throughput") if k in last]
    return {"time_to_train": sum(h["time"] for h in history), **{k: last[k] for k in keys},
            "epochs": len(history)}  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
