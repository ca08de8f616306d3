"""The two DLRM optimizer steps: replicated tables (row-wise SGD outside autograd) and table-sharded
(dlrm.parallel, autograd). A library module, so dlrm.train and dlrm.benchmark time the same step without
one command importing the other."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common import amp as amp_lib
from common import checkpoint, distributed
from common.distributed import DistEnv
from dlrm import data as dlrm_data
from dlrm.embeddings import sgd_rows_
from dlrm.lr_schedule import LrSchedule
from dlrm.model import DLRM
from dlrm.parallel import ShardedDLRM, full_state_dict, load_full_state_dict, wrap_dense


class ReplicatedStep:
    """One SGD step with every table on every rank.

    The tables are outside autograd: the step takes d loss / d (looked-up rows) [B, F, D] and applies SGD to
    exactly the touched rows (index_add_), which is torch.optim.SGD on the sparse gradient without building,
    coalescing or zeroing COO tensors. With several ranks the (ids, row grads) pairs are all-gathered and
    every rank applies the same update, so tables stay identical; the MLPs go through DDP (gradient mean).
    Row grads are divided by world size: each rank's loss is a mean over its slice, and the gathered sum is
    W times the gradient of the global-batch mean (the MLPs get that mean from DDP).
    """

    def __init__(
        self,
        model: DLRM,
        env: DistEnv,
        amp: amp_lib.Amp,
        schedule: LrSchedule,
        embedding_lr_scale: float = 1.0,
    ) -> None:
        for table in model.embeddings.parameters():
            table.requires_grad_(False)
        self.model, self.env, self.amp, self.schedule = model, env, amp, schedule
        self.embedding_lr_scale = embedding_lr_scale
        self.dense = wrap_dense(model.dense, env)
        dense = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(dense, lr=schedule.base_lr)

    def __call__(self, batch: dlrm_data.DlrmBatch, step: int) -> torch.Tensor:
        idx = self.model.indices(batch.categorical)
        rows = self.model.embed_rows(idx).requires_grad_()
        with self.amp.autocast():
            logits = self.dense(batch.numerical, rows)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.label)
        self.amp.backward(loss)
        grad = rows.grad
        if self.env.distributed:
            idx = distributed.all_gather_cat(idx, self.env)
            grad = distributed.all_gather_cat(grad, self.env) / self.env.world_size
        lr = self.schedule.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        scaler = self.amp.scaler
        if scaler.is_enabled():  # fp16: skip BOTH updates on overflow, never grow the scale (reference)
            scale = scaler.get_scale()
            scaler.unscale_(self.optimizer)
            grad = grad / scale
            grads = [grad, *(p.grad for p in self.optimizer.param_groups[0]["params"] if p.grad is not None)]
            finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
            if finite:
                self.optimizer.step()
                sgd_rows_(self.model.embeddings, idx, grad, lr * self.embedding_lr_scale)
            scaler.update(scale if finite else scale / 2)
        else:
            self.optimizer.step()
            sgd_rows_(self.model.embeddings, idx, grad, lr * self.embedding_lr_scale)
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def weights(self) -> nn.Module:
        """What a checkpoint saves: the whole DLRM (every rank holds all of it)."""
        return self.model

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a checkpoint's model state (any DLRM checkpoint, whichever runtime wrote it)."""
        self.model.load_state_dict(checkpoint.clean_state_dict(state))


class ShardedStep:
    """One SGD step through dlrm.parallel's table-sharded model (whole tables on ranks, all-to-all).

    Gradients come from autograd (sparse for the tables), as the wrapper defines them for the global batch;
    torch.optim.SGD applies them to whatever parameters this rank holds.
    """

    def __init__(
        self,
        model: ShardedDLRM,
        env: DistEnv,
        amp: amp_lib.Amp,
        schedule: LrSchedule,
        embedding_lr_scale: float = 1.0,
    ) -> None:
        self.wrapped = model
        self.amp, self.schedule = amp, schedule
        tables = {id(p) for p in self.wrapped.embeddings.parameters()}
        params = [p for p in self.wrapped.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            [{"params": [p for p in params if id(p) not in tables], "lr_scale": 1.0},
             {"params": [p for p in params if id(p) in tables], "lr_scale": embedding_lr_scale}],
            lr=schedule.base_lr,
        )  # fmt: skip

    def __call__(self, batch: dlrm_data.DlrmBatch, step: int) -> torch.Tensor:
        with self.amp.autocast():
            logits = self.wrapped(batch.numerical, batch.categorical)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.label)
        self.amp.backward(loss)
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(step) * group["lr_scale"]
        self.amp.step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def weights(self) -> _FullState:
        """The single-process DLRM's state dict gathered on rank 0 (collective: every rank calls it)."""
        return _FullState(full_state_dict(self.wrapped))

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a checkpoint's (single-process DLRM) model state: each rank copies its tables and the MLPs."""
        load_full_state_dict(self.wrapped, state)


class _FullState:
    """Duck-types `state_dict()` for checkpoint.save, so sharded runs write the ordinary DLRM checkpoint."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state
