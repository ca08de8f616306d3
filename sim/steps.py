"""The steps sim.train and sim.benchmark share: the optimizers, one training step, the inference loop,
and the log units. A library module, so neither entry point imports the other."""

from __future__ import annotations

import torch

from common import amp as amp_lib
from common.distributed import DistEnv
from common.logging import JsonLogger
from common.throughput import StepTimer, peak_memory_gib
from sim.config import SimConfig
from sim.losses import Losses, training_losses

METRICS = {  # DLE-SIM's DLLogger unit metadata, plus formats
    "test_auc": {"format": ":.5f"}, "train_auc": {"format": ":.5f"},
    "test_loss": {"format": ":.5f"}, "train_loss": {"format": ":.5f"},
    "classification_loss": {"format": ":.5f"}, "dien_aux_loss": {"format": ":.5f"},
    "total_loss": {"format": ":.5f"}, "samples/s": {"unit": "samples/s", "format": ":.1f"},
    "throughput": {"unit": "samples/s", "format": ":.1f"}, "time": {"unit": "s", "format": ":.3f"},
    "time_to_train": {"unit": "s", "format": ":.3f"}, "latency_mean": {"unit": "ms", "format": ":.3f"},
    "latency_p90": {"unit": "ms", "format": ":.3f"}, "latency_p95": {"unit": "ms", "format": ":.3f"},
    "latency_p99": {"unit": "ms", "format": ":.3f"}, "peak_memory_gib": {"unit": "GiB", "format": ":.3f"},
    "cpu_time_per_step": {"unit": "ms", "format": ":.1f"},
}  # fmt: skip


def build_optimizers(model: torch.nn.Module, cfg: SimConfig) -> list[torch.optim.Optimizer]:
    """The reference's optimizers (tfa AdamW / LazyAdam / SGDW, eps 1e-7 as TF).

    tfa's decoupled decay subtracts wd * w per step, torch's AdamW lr * wd * w: passing wd / lr makes them
    equal at the (constant) learning rate. Plain SGD's L2 term does the same for SGDW without momentum.
    """
    decay = cfg.weight_decay / cfg.lr
    if cfg.optimizer == "adam":
        return [torch.optim.AdamW(model.parameters(), lr=cfg.lr, eps=1e-7, weight_decay=decay, fused=True)]
    if cfg.optimizer == "sgd":
        return [torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=decay)]
    tables = [model.user_embedding.weight, model.item_embedding.weight]
    dense = [p for p in model.parameters() if all(p is not t for t in tables)]
    return [
        torch.optim.SparseAdam(tables, lr=cfg.lr, eps=1e-7),
        torch.optim.Adam(dense, lr=cfg.lr, eps=1e-7, fused=True),
    ]


def train_step(train_model, batch, optimizers, amp: amp_lib.Amp) -> Losses:
    """One optimizer step on one local batch; returns the detached loss parts (no host sync)."""
    with amp.autocast():
        out = train_model(batch)
    losses = training_losses(out, batch.label)
    amp.backward(losses.total)
    amp.step(*optimizers)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return Losses(losses.classification.detach(), losses.aux.detach(), losses.total.detach())


@torch.no_grad()
def run_inference(
    model,
    data,
    local_batch: int,
    amp,
    env: DistEnv,
    log: JsonLogger,
    *,
    warmup: int,
    steps: int | None,
    log_every: int,
) -> dict[str, float]:
    """The reference's inference mode: eval-mode forward + sigmoid, per-step samples/s; `steps` batches
    after `warmup` (cycling over the data), or one pass over it when steps is None."""
    model.eval()
    timer = StepTimer(env.device, warmup)
    batches = max(1, -(-len(data) // local_batch))
    total = warmup + steps if steps else batches
    for i in range(total):
        lo = (i % batches) * local_batch
        batch = data.batch(slice(lo, lo + local_batch))
        timer.start()
        with amp.autocast():
            torch.sigmoid(model(batch).logits)
        latency = timer.stop(batch.label.shape[0] * env.world_size)
        if (i + 1) % log_every == 0 or i + 1 == total:
            log.log([0, i], {"samples/s": batch.label.shape[0] * env.world_size / latency})
    return {**timer.results(), "peak_memory_gib": peak_memory_gib(env.device)}
