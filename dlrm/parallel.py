"""Hybrid-parallel DLRM: whole embedding tables placed on ranks (model parallel), MLPs data parallel.

  model = parallel.build_model_parallel(sizes, env, seed=0)     # each rank allocates only its own tables
  logits = model(numerical_local, categorical_local)            # [b] for this rank's b samples

Every rank feeds its own local batch (the same size b on every rank; global batch B = W * b, rank-major).
One forward is (NVIDIA's hybrid parallel, but with the bottom MLP data parallel too and both exchanges on
`all_to_all_single`, which gloo supports while the list form `all_to_all` does not):

  1. ids:        each rank sends the id columns of table t (its b rows) to t's owner: all_to_all_single of
                 [F, b] int64, split by owner. Each rank receives only its n_r columns for all B samples:
                 b * F * (W - 1) / W ids leave a rank, W times less than all_gather of the whole [b, F].
  2. lookup:     the owner looks its n_r tables up for the global batch: [W, n_r, b, D].
  3. embeddings: all_to_all_single back, so every rank gets [b, F, D] for its own samples, put back in
                 feature order. Backward is the reverse all_to_all_single (`_Exchange`), so each table's
                 gradient lands only on its owner, summed over the global batch.
  4. dense:      bottom MLP, interaction and top MLP on the local batch, under DDP.

Loss scaling: with each rank's loss the mean over its b samples, DDP averages the MLP gradients over ranks,
i.e. takes the gradient of the global mean. The embedding rows receive the SUM over ranks of the per-rank
gradients, so `_Exchange` multiplies them by 1 / W in its backward: every parameter then gets exactly the
gradient of the single-process model's mean loss over the global batch, and one learning rate fits all
(the reference instead divides the embedding LR by W).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from common.checkpoint import clean_state_dict
from common.distributed import DistEnv, all_reduce_max, wrap_ddp
from dlrm.model import DenseArch, DlrmSizes, init_parts, upgrade_state_dict

# torch 2.13 renamed DDP's broadcast_buffers (now deprecated, with a warning) to forward_sync_buffers.
_SYNC_FLAG = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters else None
_NO_BUFFER_SYNC = {_SYNC_FLAG or "broadcast_buffers": False}


def wrap_dense(dense: DenseArch, env: DistEnv) -> nn.Module:
    """The DenseArch under DDP (itself on one process), as both training runtimes run it: DDP broadcasts
    rank 0's MLP weights at construction and averages their gradients; no buffer needs syncing every step
    (the interaction's index buffers are constants)."""
    return wrap_ddp(dense, env, **_NO_BUFFER_SYNC)


def place_tables(table_sizes: Sequence[int], world_size: int) -> list[int]:
    """Owner rank of each table: largest table first, each to the rank holding the fewest rows so far
    (ties: the lower rank; equal sizes keep feature order). Greedy "longest processing time" balances
    memory within 4/3 of optimal; more ranks than tables leaves some ranks without tables (they still
    run the MLPs on their samples). Memory, not the table count, is balanced: rows are what limit a GPU.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    loads = [0] * world_size
    owners = [0] * len(table_sizes)
    for t in sorted(range(len(table_sizes)), key=lambda i: (-int(table_sizes[i]), i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        owners[t] = rank
        loads[rank] += int(table_sizes[t])
    return owners


def _all_to_all(x: Tensor, send_splits: list[int], recv_splits: list[int]) -> Tensor:
    """all_to_all_single along dim 0: send x[split s] to rank s, receive recv_splits[s] rows from rank s."""
    out = x.new_empty((sum(recv_splits), *x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv_splits, input_split_sizes=send_splits)
    return out


class _Exchange(torch.autograd.Function):
    """Differentiable all_to_all_single; backward sends the gradients back the way the values came,
    scaled by `grad_scale` (1 / W: see the module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, send_splits: list[int], recv_splits: list[int], grad_scale: float) -> Tensor:
        ctx.splits = (send_splits, recv_splits)
        ctx.grad_scale = grad_scale
        return _all_to_all(x, send_splits, recv_splits)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        send_splits, recv_splits = ctx.splits
        return _all_to_all(grad, recv_splits, send_splits).mul_(ctx.grad_scale), None, None, None


class ShardedDLRM(nn.Module):
    """DLRM with table t held only by rank owners[t]; forward(numerical [b, 13], categorical [b, F]) ->
    logits [b] for this rank's samples. Every rank must call forward (and backward) in lockstep with the
    same b: the exchanges are collectives. Parameters: this rank's tables (sparse or dense gradients, as
    built) plus the DDP-wrapped MLPs; `full_state_dict` / `load_full_state_dict` convert to and
    from the single-process DLRM's state dict.
    """

    def __init__(
        self,
        sizes: DlrmSizes,
        dense: DenseArch,
        tables: dict[int, nn.Embedding],
        owners: Sequence[int],
        env: DistEnv,
    ) -> None:
        super().__init__()
        num_features = len(sizes.table_sizes)
        if len(owners) != num_features or any(not 0 <= r < env.world_size for r in owners):
            raise ValueError(
                f"owners must give a rank in [0, {env.world_size}) per table, got {list(owners)}"
            )
        if sorted(tables) != [t for t in range(num_features) if owners[t] == env.rank]:
            raise ValueError(
                f"rank {env.rank} was given tables {sorted(tables)}, but owns others per {owners}"
            )
        self.sizes = sizes
        self.env = env
        self.owners = list(owners)
        self.local_features = sorted(tables)
        self.embeddings = nn.ModuleDict({str(t): tables[t].to(env.device) for t in self.local_features})
        self.dense = wrap_dense(dense.to(env.device), env)
        # Features in owner order: rank s's columns form one contiguous split of size counts[s].
        send_order = sorted(range(num_features), key=lambda t: (self.owners[t], t))
        self.counts = [self.owners.count(r) for r in range(env.world_size)]
        send = torch.tensor(send_order, dtype=torch.int64)
        restore = torch.empty_like(send)
        restore[send] = torch.arange(num_features)
        rows = torch.tensor(sizes.table_sizes, dtype=torch.int64)
        self.register_buffer("send_order", send.to(env.device), persistent=False)
        self.register_buffer("restore_order", restore.to(env.device), persistent=False)
        self.register_buffer("table_rows", rows.to(env.device), persistent=False)

    def row_ids(self, categorical: Tensor) -> Tensor:
        """[b, F] any int -> [b, F] int64, modulo the table rows with hash_indices (as DLRM.indices)."""
        ids = categorical.long()
        if self.sizes.hash_indices:
            ids = torch.remainder(ids, self.table_rows)
        return ids

    def embed(self, categorical: Tensor) -> Tensor:
        """[b, F] local ids -> [b, F, D] local embeddings, gathered from the tables' owners."""
        world, n_local, dim = self.env.world_size, len(self.local_features), self.sizes.embedding_dim
        ids = self.row_ids(categorical)
        b = ids.shape[0]
        send = ids.t().index_select(0, self.send_order)  # [F, b], owner-major
        if self.env.distributed:
            recv = _all_to_all(send, self.counts, [n_local] * world)  # [W * n_r, b]: (source rank, table)
        else:
            recv = send
        local_ids = recv.view(world, n_local, b).transpose(0, 1).reshape(n_local, world * b)  # [n_r, B]
        if n_local:
            looked = [
                self.embeddings[str(t)](local_ids[j]).view(world, b, dim)
                for j, t in enumerate(self.local_features)
            ]
            out = torch.stack(looked, dim=1).view(world * n_local, b, dim)  # [W, n_r, b, D]: per destination
        else:
            # A rank without tables must still enter the backward exchange, so its (empty) input needs grad.
            weight_dtype = next(self.dense.parameters()).dtype
            out = torch.zeros(
                (0, b, dim), dtype=weight_dtype, device=ids.device, requires_grad=torch.is_grad_enabled()
            )
        if self.env.distributed:
            out = _Exchange.apply(out, [n_local] * world, self.counts, 1.0 / world)  # [F, b, D], owner-major
        return out.index_select(0, self.restore_order).transpose(0, 1)  # [b, F, D], feature order

    def forward(self, numerical: Tensor, categorical: Tensor) -> Tensor:
        """In training mode every rank's b must be equal (no check: it would cost a host sync per step).
        In eval mode ranks may hold different b (the last evaluation batch): the batches are padded to
        the largest and the logits trimmed, one all_reduce per call."""
        b = numerical.shape[0]
        if self.training or not self.env.distributed:
            return self.dense(numerical, self.embed(categorical))
        padded = int(all_reduce_max(torch.tensor([b], device=numerical.device), self.env))
        if padded > b:  # id 0 is a valid row of every table; the padded logits are dropped
            numerical = torch.cat([numerical, numerical.new_zeros(padded - b, numerical.shape[1])])
            categorical = torch.cat([categorical, categorical.new_zeros(padded - b, categorical.shape[1])])
        return self.dense(numerical, self.embed(categorical))[:b]

    def dense_module(self) -> DenseArch:
        return self.dense.module if isinstance(self.dense, DDP) else self.dense


def build_model_parallel(
    sizes: DlrmSizes, env: DistEnv, sparse: bool = True, seed: int = 0, owners: Sequence[int] | None = None
) -> ShardedDLRM:
    """This rank's part of DLRM(sizes): the DenseArch and only the tables it owns (placement `place_tables`
    unless `owners` is given), each moved to env.device as soon as it is built, so a rank's memory is its
    own tables plus the MLPs and the whole model may exceed one device. The weights are those of
    `torch.manual_seed(seed); DLRM(sizes)` (both come from `init_parts`); the global RNG is left as it was.
    """
    owners = list(owners) if owners is not None else place_tables(sizes.table_sizes, env.world_size)
    mine = [t for t, r in enumerate(owners) if r == env.rank]
    with torch.random.fork_rng(devices=[]):  # everything is drawn on the CPU generator
        torch.manual_seed(seed)
        dense, built = init_parts(sizes, sparse, mine)
        tables = {t: table.to(env.device) for t, table in built}
    return ShardedDLRM(sizes, dense, tables, owners, env)


def _table_key(t: int) -> str:
    return f"embeddings.{t}.weight"


def full_state_dict(model: ShardedDLRM) -> dict[str, Tensor]:
    """The single-process DLRM's state dict (CPU tensors) on rank 0, {} on the other ranks: a checkpoint
    that loads into DLRM(sizes) or, through `load_full_state_dict`, into a sharded model on any number of
    ranks. Collective: every rank must call it. Rank 0 receives one table at a time (point to point from
    its owner), so its device holds at most one foreign table at once.
    """
    env = model.env
    is_main = env.rank == 0
    dense = model.dense_module().state_dict() if is_main else {}
    state = {f"dense.{k}": v.detach().cpu() for k, v in dense.items()}
    for t, owner in enumerate(model.owners):
        if owner == env.rank:
            weight = model.embeddings[str(t)].weight.detach()
            if is_main:
                state[_table_key(t)] = weight.cpu().clone()
            else:
                dist.send(weight.contiguous(), dst=0)
        elif is_main:
            buf = torch.empty(
                (model.sizes.table_sizes[t], model.sizes.embedding_dim),
                dtype=next(model.dense.parameters()).dtype,
                device=env.device,
            )
            dist.recv(buf, src=owner)
            state[_table_key(t)] = buf.cpu()
    return state


@torch.no_grad()
def load_full_state_dict(model: ShardedDLRM, state: dict[str, Tensor]) -> None:
    """Load a single-process DLRM state dict (e.g. checkpoint["model"]) into the sharded model: each rank
    copies its own tables and the MLPs. Every key must be known and every expected key present; keys from
    before the DenseArch are renamed (dlrm.model.upgrade_state_dict)."""
    state = upgrade_state_dict(clean_state_dict(state))
    dense = model.dense_module()
    tables = {_table_key(t) for t in range(len(model.sizes.table_sizes))}
    expected = {f"dense.{k}" for k in dense.state_dict()} | tables
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(
            f"state dict does not match the DLRM: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    dense.load_state_dict({k.removeprefix("dense."): v for k, v in state.items() if k not in tables})
    for t in model.local_features:
        weight = model.embeddings[str(t)].weight
        if tuple(state[_table_key(t)].shape) != tuple(weight.shape):
            raise ValueError(
                f"{_table_key(t)}: checkpoint shape {tuple(state[_table_key(t)].shape)}, model {tuple(weight.shape)}"
            )
        weight.copy_(state[_table_key(t)])
