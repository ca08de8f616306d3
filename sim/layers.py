"""Building blocks shared by DIN, DIEN and SIM: grouped embedding tables, the PReLU/sigmoid MLP head and
masked target attention (dot product, or DIN's activation unit), as DLE-SIM's. Notation: see sim/models/__init__.py.

The lookup and the attention have hand-written backwards (`_Gather`, `_DotAttention`); under
`--kernels reference` (common.kernels) they run as plain autograd ops instead, with the same results.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.kernels import fast
from common.linear import Linear, linear


class FeatureEmbedding(nn.Module):
    """K categorical features, one table each, stored as ONE [sum(rows), D] weight with row offsets.

    One gather (and one backward scatter) per lookup instead of K: measurably cheaper on CPU for the
    [B, T, F] histories. Table k has cardinality_k + 1 rows (ids 1..card, 0 = padding) initialised
    uniform(+-sqrt(1/rows)) like the reference; row 0 is a normal trainable row, and padding is
    neutralised by masks downstream.

    Args:
        cardinalities: K table sizes (may be empty: then the output is [..., 0]).
        dim: D.
        sparse: sparse gradients (for torch.optim.SparseAdam).
    Input [..., K] int ids -> [..., K*D] (features concatenated in order).
    """

    def __init__(self, cardinalities: tuple[int, ...], dim: int, sparse: bool = False) -> None:
        super().__init__()
        rows = [c + 1 for c in cardinalities]
        self.dim, self.count, self.sparse = dim, len(rows), sparse
        self.weight = nn.Parameter(torch.empty(sum(rows), dim))
        starts = [0, *torch.tensor(rows).cumsum(0).tolist()[:-1]] if rows else []
        self.register_buffer("offsets", torch.tensor(starts, dtype=torch.int32), persistent=False)
        with torch.no_grad():
            for start, n in zip(starts, rows):
                self.weight[start : start + n].uniform_(-math.sqrt(1 / n), math.sqrt(1 / n))

    def forward(self, *ids: Tensor) -> Tensor | tuple[Tensor, ...]:
        """One or more id tensors [..., K] -> as many [..., K*D] (a tuple when several).

        Several lookups of one table in one call share one dense gradient buffer in backward (instead
        of one full-table gradient per lookup, summed)."""
        if self.count == 0:
            outs = [self.weight.new_zeros((*i.shape[:-1], 0)) for i in ids]
        else:
            rows = [i + self.offsets.to(i.dtype) for i in ids]
            if self.sparse or not fast():  # the reference: one embedding backward per lookup, summed
                outs = [F.embedding(r, self.weight, sparse=self.sparse) for r in rows]
            else:
                outs = _Gather.apply(self.weight, *rows)
            outs = [o.flatten(-2) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)


class _Gather(torch.autograd.Function):
    """weight[ids_i] for several id tensors; backward builds ONE dense gradient (zeros + scatter_add_).

    Measured on 2 CPU cores (torch 2.13, 2026-11) for 819,200 ids into 1.2M x 16 rows: scatter_add_ with
    int64 ids 62 ms, index_add_ 81 ms (167 ms with int32 ids), aten::embedding_dense_backward 105 ms;
    and one buffer for all lookups of a table saves a full-table zero-fill and add per extra lookup.
    On CUDA all of them are atomic scatter-adds.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, *ids: Tensor) -> tuple[Tensor, ...]:
        ctx.save_for_backward(*ids)
        ctx.rows = weight.shape[0]
        return tuple(F.embedding(i, weight) for i in ids)

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        out = None
        for ids, grad in zip(ctx.saved_tensors, grads):
            if grad is None:
                continue
            if out is None:
                out = grad.new_zeros(ctx.rows, grad.shape[-1])
            index = ids.reshape(-1, 1).long().expand(-1, grad.shape[-1])
            out.scatter_add_(0, index, grad.reshape(-1, grad.shape[-1]))
        return (out, *([None] * len(ctx.saved_tensors)))


class MLP(nn.Module):
    """Dense + activation per hidden size, optional dropout before the output layer, Dense(1) -> logit.

    activation "prelu": per-unit PReLU with alpha 0.1 (Keras PReLU, the classification heads);
    "sigmoid": the DIEN auxiliary net. Kernels glorot-uniform, biases zero (Keras defaults).
    The output layer is a multiply + sum in fp32, so the logit stays fp32 under autocast (the reference
    forces its output layer to float32) without any AMP code here.
    Input [..., in_dim] -> [...] fp32.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], activation: str = "prelu", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden:
            layers.append(glorot_linear(in_dim, size))
            layers.append(nn.PReLU(size, init=0.1) if activation == "prelu" else nn.Sigmoid())
            in_dim = size
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.hidden = nn.Sequential(*layers)
        self.out = glorot_linear(in_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return output_logit(self.hidden(x), self.out)


def output_logit(h: Tensor, out: nn.Linear) -> Tensor:
    """Dense(1) as fp32 multiply-sum (not an autocast op): [..., n] -> [...] fp32."""
    return (h.float() * out.weight[0]).sum(-1) + out.bias[0]


def glorot_linear(n_in: int, n_out: int) -> nn.Linear:
    """Keras Dense init; `common.linear.Linear` (an nn.Linear whose fp32 CPU GEMMs run on oneDNN)."""
    layer = Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def history_mask(history: Tensor) -> Tensor:
    """[B, T, F] ids -> [B, T] bool: a position is real when its first feature (the item id) is > 0."""
    return history[..., 0] > 0


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over T in fp32 with masked positions excluded: [B, T] scores, [B, T] bool -> [B, T] fp32.

    Weights are exactly 0 at masked positions, and a row with no valid position gets all-zero weights
    (the reference gives it a uniform softmax over padding and relies on zeroed embeddings instead).
    Extra padding therefore never changes the result.
    """
    scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.softmax(scores, dim=-1) * mask


def dot_attention(query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The reference's DIN block with the dot interaction: parameter-free target attention.

    query [B, E], keys [B, T, E], mask [B, T] bool -> (pooled [B, E] = sum_t softmax_t(<q, k_t>) k_t,
    raw scores [B, T] fp32 with -inf at masked positions; not differentiable, for top-k selection).
    Keys at masked positions get weight exactly 0, so they need not be zeroed, and their gradient is 0.
    """
    if fast():
        return _DotAttention.apply(query, keys, mask)
    return dot_attention_reference(query, keys, mask)


def dot_attention_reference(query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """`dot_attention` with autograd's backward (`--kernels reference`; the parity tests' yardstick)."""
    _, scores, _, pooled = _attend(query, keys, mask)
    return pooled, _raw_scores(scores.detach(), mask)


def _attend(query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The forward in the keys' dtype, autocast off: (query, scores [B, T], weights [B, T], pooled [B, E])."""
    with torch.autocast(keys.device.type, enabled=False):
        query = query.to(keys.dtype)
        scores = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # [B, T]
        weights = masked_softmax(scores, mask).to(keys.dtype)
        pooled = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # [B, E]
    return query, scores, weights, pooled


class ActivationUnitAttention(nn.Module):
    """The DIN paper's attention as DLE-SIM defines it (`DINActivationUnit`): a learnt score per position.

    score_t = MLP([q, k_t, q - k_t, q * k_t]) with sigmoid hidden layers (80, 40 in DLE-SIM) and a linear
    Dense(1); then the same masked softmax over T and weighted sum as `dot_attention`, so padded keys get
    weight exactly 0 and extra padding changes nothing. Costs an MLP pass over all B*T positions that
    the dot form does not have.

    The first layer is linear, so W [q, k, q-k, q*k] = (W_q + W_d) q + [W_k - W_d, W_p] [k, q*k]: the q term
    is computed once per row instead of once per position, and no [B, T, 4E] concat is built (under
    `--kernels reference` the literal concat form runs instead; a parity test compares the two).
    query [B, E], keys [B, T, E], mask [B, T] bool -> pooled [B, E] = sum_t softmax_t(score_t) k_t.
    """

    def __init__(self, item_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.unit = MLP(4 * item_dim, hidden, "sigmoid")

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        query = query.to(keys.dtype)
        if fast():
            first, rest = self.unit.hidden[0], self.unit.hidden[1:]
            w_q, w_k, w_d, w_p = first.weight.chunk(4, dim=1)
            per_row = linear(query, w_q + w_d, first.bias).unsqueeze(1)  # [B, 1, 80]
            per_key = linear(torch.cat([keys, query.unsqueeze(1) * keys], -1), torch.cat([w_k - w_d, w_p], 1))
            scores = output_logit(rest(per_key + per_row), self.unit.out)  # [B, T] fp32
        else:
            q = query.unsqueeze(1).expand_as(keys)
            scores = self.unit(torch.cat([q, keys, q - keys, q * keys], -1))  # [B, T] fp32
        weights = masked_softmax(scores, mask).to(keys.dtype)
        with torch.autocast(keys.device.type, enabled=False):  # as _attend: the pooling stays in fp32
            return torch.bmm(weights.unsqueeze(1), keys).squeeze(1)


def _raw_scores(scores: Tensor, mask: Tensor) -> Tensor:
    return scores.float().masked_fill(~mask, float("-inf"))


class _DotAttention(torch.autograd.Function):
    """dot_attention with a hand-written backward: 3 batched mat-vecs instead of autograd's 4 plus an add.

    The step is memory-bound on [B, T, E] (DIN, B 4096, T 100: 52 MB per pass), so passes are what count:
    d_keys = w (x) d_pooled + d_scores (x) q is ONE bmm with an inner size of 2. Runs in the keys' dtype
    (fp32 embeddings) even under autocast: bf16 would add a cast pass to a memory-bound op.
    Measured (DIN training step, 2 cores): 28.3k -> 35.8k samples/s.
    """

    @staticmethod
    def forward(ctx, query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        query, scores, weights, pooled = _attend(query, keys, mask)
        ctx.save_for_backward(query, keys, weights)
        raw = _raw_scores(scores, mask)
        ctx.mark_non_differentiable(raw)
        return pooled, raw

    @staticmethod
    def backward(ctx, d_pooled: Tensor, _d_raw: Tensor | None) -> tuple[Tensor | None, ...]:
        query, keys, weights = ctx.saved_tensors
        d_pooled = d_pooled.to(keys.dtype)
        with torch.autocast(keys.device.type, enabled=False):  # a backward() inside autocast: stay fp32
            d_weights = torch.bmm(keys, d_pooled.unsqueeze(-1)).squeeze(-1)  # [B, T]
            d_scores = weights * (d_weights - (weights * d_weights).sum(-1, keepdim=True))  # softmax bwd
            d_keys = torch.bmm(torch.stack([weights, d_scores], -1), torch.stack([d_pooled, query], 1))
            d_query = torch.bmm(d_scores.unsqueeze(1), keys).squeeze(1)
        return d_query, d_keys, None
