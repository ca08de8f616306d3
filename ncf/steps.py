"""The NeuMF training steps ncf.train and ncf.benchmark share: the optimizers and one epoch of steps.
A library module, so the benchmark times the recipe's own step without importing the train command."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ncf.config import NcfConfig
from ncf.model import NeuMF


def build_optimizers(model: NeuMF, cfg: NcfConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """Dense Adam (fused: the reference's apex FusedAdam on CUDA; torch's fused CPU kernel is faster than
    foreach too), or lazy row-wise Adam on the tables (SparseAdam) + Adam on the MLP."""
    kw = {"lr": cfg.learning_rate, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if cfg.optimizer == "adam":
        return [torch.optim.Adam(model.parameters(), fused=True, **kw)]
    tables = [model.user_embedding.weight, model.item_embedding.weight]
    dense = [p for p in model.parameters() if all(p is not t for t in tables)]
    return [torch.optim.SparseAdam(tables, **kw), torch.optim.Adam(dense, fused=True, **kw)]


def train_one_epoch(
    train_model, batches, optimizers, amp, accumulate: int, steps: int, show: bool
) -> torch.Tensor:
    """Mean training loss of the epoch (a device tensor: no host sync per step).

    Each micro-batch loss is a mean and gradients of `accumulate` micro-batches are summed (reference
    semantics); leftover micro-batches that cannot fill an optimizer step are skipped.
    """
    total = torch.zeros((), dtype=torch.float64, device=next(train_model.parameters()).device)
    used = (steps // accumulate) * accumulate
    for step, batch in enumerate(tqdm(batches, total=steps, disable=not show, leave=False, desc="train")):
        if step >= used:
            break
        last = (step + 1) % accumulate == 0
        sync = (
            contextlib.nullcontext() if last or not hasattr(train_model, "no_sync") else train_model.no_sync()
        )
        with sync:
            with amp.autocast():
                logits = train_model(batch.users, batch.items)
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch.labels)
            amp.backward(loss)
        total += loss.detach()
        if last:
            amp.step(*optimizers)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
    return total / max(used, 1)
