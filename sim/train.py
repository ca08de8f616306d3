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
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm import tqdm

from common import amp as amp_lib
from common import checkpoint, cli, config, distributed
from common.feature_spec import FeatureSpecError
from common.kernels import set_policy as set_kernel_policy
from common.logging import JsonLogger
from common.output_dir import no_space_message
from common.seeding import derived_seed
from common.throughput import StepTimer, peak_memory_gib
from sim import checkpoint_rules
from sim import data as sim_data
from sim.config import SimConfig
from sim.models import SimSizes, build_model
from sim.scoring import check_compatible, evaluate
from sim.steps import METRICS, build_optimizers, run_inference, train_step


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_finite(bad: torch.Tensor, env, epoch: int, step: int) -> None:
    """Stop a diverged run: `bad` counts this rank's non-finite losses so far. Summed over ranks, so every
    rank stops at the same step (a rank stopping alone would leave the others waiting in a collective)."""
    if float(distributed.all_reduce_sum(bad.float(), env)) > 0:
        raise FloatingPointError(f"non-finite (NaN/inf) training loss in epoch {epoch} by step {step}")


def train_one_epoch(train_model, data, order, steps, optimizers, amp, timer, log, epoch, cfg, env) -> None:
    """One pass over this rank's shard in `order` (a device permutation), timing and logging every step.
    Non-finite losses are counted on the device (no sync) and checked at every log point."""
    show = cfg.progress and env.is_main
    bad = torch.zeros((), dtype=torch.int32, device=env.device)
    for i, cut in enumerate(tqdm(steps, desc=f"epoch {epoch}", disable=not show, leave=False)):
        batch = data.batch(order[cut])
        timer.start()
        losses = train_step(train_model, batch, optimizers, amp)
        latency = timer.stop(batch.label.shape[0] * env.world_size)
        bad += ~torch.isfinite(losses.total)
        if (i + 1) % cfg.log_every == 0 or i + 1 == len(steps) or timer.done:
            check_finite(bad, env, epoch, i)
            log.log([epoch, i], {"classification_loss": float(losses.classification),
                                 "dien_aux_loss": float(losses.aux), "total_loss": float(losses.total),
                                 "samples/s": batch.label.shape[0] * env.world_size / latency})  # fmt: skip
        if timer.done:
            return


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(SimConfig, argv, prog="python -m sim.train", description=__doc__.split("\n\n")[0])
    set_kernel_policy(cfg.kernels)
    if cfg.dataset_dir is None:
        fail("--dataset_dir is required (a directory written by python -m sim.prepare_data)")
    env = distributed.init(cfg.device)
    if cfg.global_batch_size % env.world_size:
        fail(
            f"--global_batch_size {cfg.global_batch_size} is global and must divide by {env.world_size} ranks"
        )
    if cfg.optimizer == "lazy_adam" and env.distributed:
        fail("--optimizer lazy_adam is single-process only (DDP all-reduces dense gradients)")
    local_batch = cfg.global_batch_size // env.world_size
    resuming = cfg.mode == "train" and cfg.load_checkpoint_path is not None
    try:
        if cfg.mode == "train" and not cfg.benchmark:
            checkpoint_rules.check_save_path(cfg)
        resume = checkpoint_rules.load(cfg.load_checkpoint_path) if cfg.load_checkpoint_path else None
        spec, schema = sim_data.open_spec(cfg.dataset_dir, cfg.feature_spec)
        seed = _pick_seed(cfg.seed, resume if resuming else None, env)
        if resuming:
            checkpoint_rules.check_resume(cfg, resume, seed, schema)
        model, sizes = _model(cfg, schema, resume, seed)
        splits = _load_splits(cfg, spec, schema, sizes, env)
    except (FeatureSpecError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    log = JsonLogger(
        cfg.results_dir / cfg.log_filename, enabled=env.is_main, metadata=METRICS, append=resuming
    )
    log.parameters({**config.to_dict(cfg), "seed": seed, "world_size": env.world_size,
                    "device": str(env.device), "shuffle": "per-epoch permutation of each rank's shard"})  # fmt: skip
    amp = amp_lib.setup(cfg.amp, env.device, cfg.amp_dtype, tf32=cfg.tf32)
    model = model.to(env.device)
    if cfg.mode == "inference":
        summary = run_inference(model, splits["train"], local_batch, amp, cfg, env, log)
        return _finish(log, env, summary)

    train_model = distributed.wrap_ddp(torch.compile(model) if cfg.compile else model, env)
    optimizers = build_optimizers(model, cfg)
    state = {"epoch": 0, "history": []}
    if resume is not None:
        progress = checkpoint.restore(resume, model, optimizers, amp.scaler, restore_rng=False)
        state = {"epoch": progress["epoch"], "history": progress["history"]}
    train = splits["train"]
    smallest = train.total_rows // env.world_size
    steps = sim_data.epoch_steps(len(train), smallest, local_batch, cfg.drop_remainder)
    if smallest == 0 or not steps:
        fail(f"the train split's {train.total_rows} rows give no full step of {local_batch} rows per rank; "
             "lower --global_batch_size or drop --drop_remainder")  # fmt: skip
    timer = StepTimer(env.device, cfg.benchmark_warmup_steps, cfg.benchmark_steps if cfg.benchmark else None)
    with _fails_cleanly(cfg, log):
        for epoch in range(state["epoch"], cfg.epochs if not cfg.benchmark else 10**9):
            gen = torch.Generator().manual_seed(derived_seed(seed, epoch, 1000 + env.rank))
            torch.manual_seed(derived_seed(seed, epoch, env.rank))  # dropout masks differ per rank
            order = torch.randperm(len(train), generator=gen).to(env.device)
            timer.new_epoch()
            train_one_epoch(train_model, train, order, steps, optimizers, amp, timer, log, epoch, cfg, env)
            record = timer.results()
            if cfg.benchmark:
                if timer.done or cfg.benchmark_steps <= 0:
                    return _finish(log, env, {**record, "peak_memory_gib": peak_memory_gib(env.device)})
                continue
            record |= _evaluate_all(model, splits, local_batch, amp, cfg, env)
            log.log([epoch], record)
            state["history"].append(record)
            state["epoch"] = epoch + 1
            _save(
                cfg, env, model, sizes, seed, state, optimizers, amp, checkpoint_rules.dataset_facts(schema)
            )
    return _finish(log, env, _summary(state["history"]))


@contextmanager
def _fails_cleanly(cfg: SimConfig, log: JsonLogger) -> Iterator[None]:
    """A diverged run (NaN/inf loss or logits) or a full disk ends with one error line and a non-zero
    exit; the last good checkpoint stays (checkpoints are written atomically, never with NaN weights)."""
    try:
        yield
    except FloatingPointError as e:
        log.close()
        path = cfg.save_checkpoint_path
        kept = f"{path} is left as it was" if path and path.exists() else "no checkpoint written"
        print(f"error: {e}; lower --lr ({kept})", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as e:
        if (message := no_space_message(e, cfg.save_checkpoint_path or cfg.results_dir)) is None:
            raise
        log.close()
        fail(message)


def _model(cfg: SimConfig, schema, resume: dict | None, seed: int) -> tuple[torch.nn.Module, SimSizes]:
    """Inference with a checkpoint: its model. Otherwise the flags' model (a resumed one must match them)."""
    if cfg.mode == "inference" and resume is not None:
        path = cfg.load_checkpoint_path
        model = checkpoint.model_from(resume, checkpoint_rules.model_builder(path), path, "a SIM model")
        check_compatible(model.sizes, schema, cfg.load_checkpoint_path)
        return model, model.sizes
    sizes = SimSizes(
        cfg.model_type, schema.user_cardinalities, schema.item_cardinalities, cfg.embedding_dim,
        cfg.long_seq_length, cfg.gsu_topk, tuple(cfg.stage_one_mlp_dims), tuple(cfg.stage_two_mlp_dims),
        tuple(cfg.aux_mlp_dims), cfg.dropout_rate, cfg.augru_variant, cfg.din_attention,
    )  # fmt: skip
    check_compatible(sizes, schema, "--long_seq_length")
    torch.manual_seed(seed)
    return build_model(sizes, sparse_embeddings=cfg.optimizer == "lazy_adam"), sizes


def _load_splits(cfg: SimConfig, spec, schema, sizes: SimSizes, env) -> dict[str, sim_data.SplitData]:
    """This rank's shards: train (+ test when training for real); negatives only where a loss reads them."""
    names = ("train",) if cfg.mode == "inference" or cfg.benchmark else ("train", "test")
    uses_negatives = sizes.uses_negatives and cfg.mode == "train"
    negatives = schema.history_length - sizes.long_seq_length if uses_negatives else 0
    return {
        name: sim_data.load_split(
            spec, schema, name, negative_length=negatives, device=env.device,
            shard=distributed.shard_range(sim_data.split_length(spec, name), env),
            show=cfg.progress and env.is_main,
        )
        for name in names
    }  # fmt: skip


def _evaluate_all(model, splits, local_batch, amp, cfg, env) -> dict[str, float]:
    record = {}
    for name in ("train", "test") if cfg.evaluate_train else ("test",):
        result = evaluate(model, splits[name], env, local_batch, amp, cfg.progress and env.is_main)
        record |= {f"{name}_auc": result["auc"], f"{name}_loss": result["loss"]}
    return record


def _save(cfg, env, model, sizes, seed, state, optimizers, amp, facts: dict) -> None:
    if cfg.save_checkpoint_path is None or not env.is_main:
        return
    checkpoint.save(cfg.save_checkpoint_path, model=model, hyperparams=sizes.as_dict(),
                    config={**config.to_dict(cfg), "seed": seed}, optimizer=optimizers,
                    scaler=amp.scaler, progress=state, recipe=checkpoint_rules.RECIPE, dataset=facts)  # fmt: skip


def _pick_seed(requested: int | None, resume: dict | None, env) -> int:
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


def _finish(log: JsonLogger, env, summary: dict[str, float]) -> dict[str, float]:
    log.summary(summary)
    log.close()
    distributed.shutdown(env)
    return summary


if __name__ == "__main__":
    cli.run(main)
