"""Train NeuMF on a prepared dataset (ncf.prepare_data output; MovieLens-20M by default settings).

  1 GPU / CPU : python -m ncf.train --data /data/cache/ml-20m --checkpoint_dir runs/ncf
  8 GPUs      : torchrun --nproc_per_node=8 -m ncf.train --data /data/cache/ml-20m --amp
  CPU smoke   : python -m ncf.train --config ncf/configs/tiny.yaml --data /tmp/tiny

A run with --checkpoint_dir writes last.pt every epoch and best.pt at the best HR@K; started again with the
same flags it resumes from last.pt and ends with the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import math
import secrets
import sys
import time

import torch

from common import amp as amp_lib
from common import checkpoint, cli, config, distributed, throughput
from common.checkpoint import CheckpointError
from common.feature_spec import FeatureSpecError
from common.kernels import set_policy as set_kernel_policy
from common.logging import JsonLogger
from common.output_dir import no_space_message
from common.seeding import derived_seed
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data
from ncf import seed_modes
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


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(NcfConfig, argv, prog="python -m ncf.train", description=__doc__.split("\n\n")[0])
    set_kernel_policy(cfg.kernels)
    if cfg.data is None:
        sys.exit("error: --data is required (a directory written by python -m ncf.prepare_data)")
    if cfg.mode == "test":  # the seed's evaluation-only mode
        return seed_modes.run_test(cfg)
    env = distributed.init(cfg.device)
    if cfg.batch_size % env.world_size:
        sys.exit(
            f"error: --batch_size {cfg.batch_size} is global and must be divisible by {env.world_size} ranks"
        )
    if cfg.optimizer == "sparse_adam" and env.distributed:
        sys.exit("error: --optimizer sparse_adam is single-process only (DDP all-reduces dense gradients)")
    last_path = cfg.checkpoint_dir / "last.pt" if cfg.checkpoint_dir else None
    try:
        resume_from, seed, data, sizes, model = _setup(cfg, last_path, env)
    except (FeatureSpecError, FileNotFoundError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    # opened once the run is known to start: a refused run leaves the log as it was; a resumed one appends
    log = JsonLogger(cfg.log_path, enabled=env.is_main, metadata=METRICS, append=resume_from is not None)
    log.parameters(
        {**config.to_dict(cfg), "seed": seed, "world_size": env.world_size, "device": str(env.device)}
    )
    train_model = distributed.wrap_ddp(torch.compile(model) if cfg.compile else model, env)
    optimizers = build_optimizers(model, cfg, env.device)
    amp = amp_lib.setup(cfg.amp, env.device, cfg.amp_dtype, tf32=cfg.tf32)

    state = {"epoch": 0, "history": [], "best": {}, "elapsed": 0.0}
    if resume_from is not None:
        progress = checkpoint.restore(resume_from, model, optimizers, amp.scaler, restore_rng=False)
        state = {key: progress[key] for key in state}
        if env.is_main:
            print(f"resuming from {last_path} after epoch {state['epoch']}", file=sys.stderr)
    clock0 = time.time() - state["elapsed"]  # elapsed time continues across resumes
    steps = ncf_data.steps_per_epoch(data.train_users.numel(), cfg.negative_samples, cfg.batch_size)
    if steps < cfg.grads_accumulated:
        sys.exit(
            f"error: {steps} steps per epoch < --grads_accumulated {cfg.grads_accumulated}; lower --batch_size"
        )
    k, clock = cfg.topk, throughput.Clock(env.device)
    for epoch in range(state["epoch"], cfg.epochs):
        if state["best"].get(f"hr@{k}", -1.0) >= cfg.threshold:
            break
        gen = torch.Generator(device=env.device).manual_seed(derived_seed(seed, epoch, 0))
        torch.manual_seed(derived_seed(seed, epoch, 1 + env.rank))  # dropout masks differ per rank
        clock.start()
        batches = ncf_data.epoch_batches(
            data, cfg.negative_samples, cfg.batch_size, env.rank, env.world_size, gen
        )
        loss = train_one_epoch(
            train_model, batches, optimizers, amp, cfg.grads_accumulated, steps, cfg.progress and env.is_main
        )
        loss = float(distributed.all_reduce_sum(loss, env)) / env.world_size
        if not math.isfinite(loss):  # the same on every rank (all-reduced): all stop, nothing is saved
            kept = (
                f"; {last_path} still holds the run after {state['epoch']} epoch(s)" if state["epoch"] else ""
            )
            sys.exit(f"error: training loss is {loss} in epoch {epoch}: the run diverged; lower --learning_rate "
                     f"(now {cfg.learning_rate}). Nothing was saved for this epoch{kept if last_path else ''}")  # fmt: skip
        train_time = clock.lap()
        result = evaluate(model, data, env, k, cfg.valid_batch_size)
        eval_time = clock.lap()
        record = {
            "train_throughput": data.train_users.numel() * (1 + cfg.negative_samples) / train_time,
            f"hr@{k}": result[f"hr@{k}"],
            f"ndcg@{k}": result[f"ndcg@{k}"],
            "train_epoch_time": train_time,
            "validation_epoch_time": eval_time,
            "eval_throughput": data.test_items.numel() / eval_time,
            "validation_loss": result["validation_loss"],
            "train_loss": loss,
        }
        log.log([epoch], record)
        state["history"].append(record)
        state["epoch"] = epoch + 1
        state["elapsed"] = time.time() - clock0
        if record[f"hr@{k}"] > state["best"].get(f"hr@{k}", -1.0):
            state["best"] = {**record, "epoch": epoch, "time": state["elapsed"]}
            _save(cfg, env, "best.pt", model, sizes, seed, state, data)
        _save(cfg, env, "last.pt", model, sizes, seed, state, data, optimizers, amp)
    summary = _summary(state, k, time.time() - clock0)
    log.summary(summary)
    log.close()
    distributed.shutdown(env)
    return summary


def _save(cfg, env, name, model, sizes, seed, state, data, optimizers=None, amp=None) -> None:
    """Rank 0 writes; optimizer states go in last.pt (resume), best.pt holds the weights to deploy.
    Non-finite weights or a full disk end the run with one line; the previous file stays as it was."""
    if cfg.checkpoint_dir is None or not env.is_main:
        return
    extra = {}
    if optimizers is not None:
        extra = {"optimizer": optimizers, "scaler": amp.scaler}
    progress = {
        "epoch": state["epoch"],
        "history": state["history"],
        "best": state["best"],
        "elapsed": state["elapsed"],
    }
    path = cfg.checkpoint_dir / name
    try:
        checkpoint.save(path, model=model, hyperparams=sizes.as_dict(), recipe="ncf",
                        dataset=ncf_checkpoints.dataset_facts(data), config={**config.to_dict(cfg), "seed": seed},
                        progress=progress, **extra)  # fmt: skip
    except FloatingPointError as e:
        sys.exit(f"error: the run diverged: {e}; lower --learning_rate")
    except OSError as e:
        sys.exit(f"error: {no_space_message(e, path) or f'could not write {path}: {e}'}")


def _setup(cfg: NcfConfig, last_path, env) -> tuple[dict | None, int, ncf_data.NcfData, NeuMFSizes, NeuMF]:
    """The checkpoint to resume (checked against flags and data), seed, data, sizes and the model, with
    --load_checkpoint_path's weights; raises with one clear message before anything is written."""
    resume_from, seed = _resume_point(cfg, last_path, env)
    data = ncf_data.load(cfg.data, cfg.feature_spec_file, env.device)
    if resume_from is not None:
        facts = tuple(resume_from.get("dataset") or ncf_checkpoints.TABLE_FACTS)
        ncf_checkpoints.check_dataset(last_path, resume_from, data, cfg.data, facts, _fresh_hint(cfg))
    torch.manual_seed(seed)
    sizes = NeuMFSizes(data.num_users, data.num_items, cfg.factors, tuple(cfg.layers), cfg.dropout)
    model = NeuMF(sizes, sparse=cfg.optimizer == "sparse_adam", byte_dropout=env.device.type == "cpu")
    model = model.to(env.device)
    if cfg.load_checkpoint_path is not None:
        weights = ncf_checkpoints.load_weights(cfg.load_checkpoint_path, sizes, data, cfg.data)
        checkpoint.restore(weights, model, restore_rng=False)
    return resume_from, seed, data, sizes, model


def _fresh_hint(cfg: NcfConfig) -> str:
    return (f"pass --no-resume to start over in {cfg.checkpoint_dir} (replacing its checkpoints), or give "
            "another --checkpoint_dir")  # fmt: skip


def _resume_point(cfg: NcfConfig, last_path, env) -> tuple[dict | None, int]:
    """(last.pt to resume or None, the run's seed). Resuming is refused when a flag that changes the result
    differs from the checkpoint's: a finished run would otherwise "resume" into its old metrics, reported
    under the new flags."""
    resume_from = None
    if last_path and cfg.resume and last_path.is_file():
        resume_from = checkpoint.load(last_path, recipe="ncf")
    seed = _pick_seed(cfg.seed, resume_from, env)
    if resume_from is not None:
        current = {**config.to_dict(cfg), "seed": seed}
        checkpoint.check_resumable(
            last_path,
            resume_from,
            current,
            ncf_checkpoints.RESUME_IGNORE,
            _fresh_hint(cfg),
            defaults=config.default_dict(type(cfg)),
        )
    return resume_from, seed


def _pick_seed(requested: int | None, resume_from: dict | None, env) -> int:
    """The flag, else the resumed run's seed, else a fresh random one; identical on every rank. (A flag
    that differs from the resumed run's seed is refused with the other flags by check_resumable.)"""
    saved = resume_from["config"].get("seed") if resume_from is not None else None
    seed = requested if requested is not None else saved if saved is not None else secrets.randbelow(2**31)
    return int(distributed.broadcast_(torch.tensor(seed, device=env.device), env))


def _summary(state: dict, k: int, total_time: float) -> dict[str, float]:
    history, best = state["history"], state["best"]
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
