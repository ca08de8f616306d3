"""DIEN as DLE-SIM builds it (dien_model.py), with padding-safe recurrences and the paper's AUGRU.

Interest extractor (GRU) -> target attention (DIEN attention unit) -> interest evolution (AUGRU) over the
SHORT history (the newest T - long_seq_length positions), plus the auxiliary next-behaviour loss over
positive/negative histories. Notation: see sim/models/__init__.py.

Deviations from DLE-SIM (all documented in sim/README.md):
* Padded steps never touch a recurrent state. The reference runs its GRU and AUGRU over the left padding,
  so the state after the padding depends on how much padding there is.
* AUGRU default = DIEN paper eq. (4): u~ = a_t * u, h = (1 - u~) h + u~ h~ (attention 0 keeps the state);
  `augru_variant="nvidia_tf1"` is the reference cell: u' = (1 - a_t) u, h = u' h + (1 - u') c.
* Auxiliary loss = mean over pairs whose h_t AND e_t+1 are real behaviours (paper eq. (5)), as
  BCE-with-logits; the reference averages over all B x (S-1) cells, padded ones included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.linear import linear
from sim.layers import MLP, glorot_linear, history_mask, masked_softmax, output_logit
from sim.models import SimBatch, SimOutput, SimSizes, embedding_tables

RNN_SIZE_FACTOR = 6  # H = 6 * D: DLE-SIM's DIEN_ITEM_SEQ_INTERACTION_SIZE, "taken from TF1 original code"
ATTENTION_DIMS = (80, 40)  # DIEN attention unit layers (reference constants)


def roll_rows(x: Tensor, shift: Tensor) -> Tensor:
    """y[b, t] = x[b, (t + shift[b]) mod T]: [B, T, ...], shift [B] -> [B, T, ...] (one gather)."""
    steps = x.shape[1]
    index = (torch.arange(steps, device=x.device) + shift.unsqueeze(1)) % steps  # [B, T]
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class InterestExtractor(nn.Module):
    """nn.GRU (fused cuDNN / oneDNN kernel) over the real behaviours only.

    Left-padded rows are rotated so their behaviours start at step 0 (the padding moves behind them),
    the GRU runs from a zero state, and the outputs are rotated back: h_t is exactly the GRU state after
    the real behaviours up to t, whatever the padding. Needs contiguous histories (padding only on the
    left; sim.data checks this). Input [B, S, E], mask [B, S] -> states [B, S, H], 0 at padding.
    """

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, batch_first=True)
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)  # Keras GRU: glorot kernel, orthogonal recurrent
        nn.init.orthogonal_(self.gru.weight_hh_l0)
        nn.init.zeros_(self.gru.bias_ih_l0)
        nn.init.zeros_(self.gru.bias_hh_l0)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        padding = mask.shape[1] - mask.sum(1)  # [B]
        out, _ = self.gru(roll_rows(x, padding))
        return roll_rows(out, -padding) * mask.unsqueeze(-1)


class AUGRU(nn.Module):
    """GRU with attentional update gate, DIEN paper eq. (4) over the reset-after GRU of eq. (1)-(3):
    r, u = sigmoid(W x + b + U h + c); h~ = tanh(W_h x + b_h + r * (U_h h + c_h));
    u~ = a_t * u; h = (1 - u~) * h + u~ * h~. Masked steps carry the state unchanged.

    x [B, S, H_in], attention [B, S], mask [B, S] bool -> final state [B, H] fp32.
    """

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden))
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)

    def forward(self, x: Tensor, attention: Tensor, mask: Tensor) -> Tensor:
        gates_x = linear(x, self.weight_ih, self.bias_ih)  # [B, S, 3H]: all input projections at once
        state = x.new_zeros(x.shape[0], self.weight_hh.shape[1], dtype=torch.float32)
        # unbind, not gates_x[:, t]: each slice's backward would zero-fill a full [B, S, 3H] gradient
        steps = zip(gates_x.unbind(1), attention.unsqueeze(-1).unbind(1), mask.unsqueeze(-1).unbind(1))
        for gx, a, m in steps:  # a loop over time steps, vectorised over the batch
            xr, xu, xn = gx.chunk(3, -1)
            hr, hu, hn = linear(state, self.weight_hh, self.bias_hh).chunk(3, -1)
            reset, update = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
            candidate = torch.tanh(xn + reset * hn)
            new = state + (a * update) * (candidate - state)  # (1 - u~) h + u~ h~, u~ = a * u
            state = torch.where(m, new, state)
        return state


class VecAttGRU(nn.Module):
    """The reference's AUGRU cell (DLE-SIM VecAttGRUCell = original TF1 code), reset-before form:
    r, u = sigmoid(W_g [x || h] + b_g) (b_g = 1.0); c = tanh(W_c [x || r * h] + b_c);
    u' = (1 - a_t) * u; h = u' * h + (1 - u') * c. Masked steps carry the state (the reference steps).
    Same shapes as AUGRU.
    """

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.gate = glorot_linear(input_size + hidden, 2 * hidden)
        self.candidate = glorot_linear(input_size + hidden, hidden)
        nn.init.ones_(self.gate.bias)

    def forward(self, x: Tensor, attention: Tensor, mask: Tensor) -> Tensor:
        n = self.input_size
        gates_x = linear(x, self.gate.weight[:, :n], self.gate.bias)  # [B, S, 2H]
        cand_x = linear(x, self.candidate.weight[:, :n], self.candidate.bias)  # [B, S, H]
        gate_h, cand_h = self.gate.weight[:, n:], self.candidate.weight[:, n:]
        state = x.new_zeros(x.shape[0], self.candidate.weight.shape[0], dtype=torch.float32)
        steps = zip(
            gates_x.unbind(1),
            cand_x.unbind(1),
            attention.unsqueeze(-1).unbind(1),
            mask.unsqueeze(-1).unbind(1),
        )
        for gx, cx, a, m in steps:
            reset, keep = torch.sigmoid(gx + linear(state, gate_h)).chunk(2, -1)
            candidate = torch.tanh(cx + linear(reset * state, cand_h))
            keep = (1 - a) * keep
            new = keep * state + (1 - keep) * candidate
            state = torch.where(m, new, state)
        return state


class DienAttention(nn.Module):
    """DIEN attention unit: q' = PReLU(Dense_H(q)); score_t = MLP_80,40(sigmoid)([q', h, q'-h, q'*h]).

    The first Dense over the concatenation is evaluated as q'(Wq+Wd) + h(Wh-Wd) + (q'*h)Wp: the query
    part once per row instead of once per step (same parameters, same result, ~half the FLOPs).
    query [B, E], states [B, S, H] -> scores [B, S] fp32.
    """

    def __init__(self, query_size: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.query = nn.Sequential(glorot_linear(query_size, hidden), nn.PReLU(hidden, init=0.1))
        self.fc1 = glorot_linear(4 * hidden, ATTENTION_DIMS[0])
        self.fc2 = glorot_linear(*ATTENTION_DIMS)
        self.out = glorot_linear(ATTENTION_DIMS[1], 1)

    def forward(self, query: Tensor, states: Tensor) -> Tensor:
        q = self.query(query)  # [B, H]
        wq, wh, wd, wp = self.fc1.weight.split(self.hidden, dim=1)
        per_row = linear(q, wq + wd, self.fc1.bias).unsqueeze(1)  # [B, 1, 80]
        per_step = linear(torch.cat([states, q.unsqueeze(1) * states], -1), torch.cat([wh - wd, wp], 1))
        x = torch.sigmoid(self.fc2(torch.sigmoid(per_step + per_row)))
        return output_logit(x, self.out)


class AuxiliaryNet(nn.Module):
    """p(e | h_t) for the next behaviour e: MLP(aux_mlp_dims, sigmoid)([h_t || e]) -> logit.

    The loss is BCE over (h_t, e_t+1) positives and (h_t, e^_t+1) sampled negatives, summed per pair and
    averaged over pairs where both positions are real. The first Dense is split into its h and e parts so
    the h part is computed once for positives and negatives.
    """

    def __init__(self, hidden: int, item_size: int, dims: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.hidden = hidden
        self.mlp = MLP(hidden + item_size, dims, "sigmoid", dropout)

    def loss(self, states: Tensor, positive: Tensor, negative: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """states [B, S, H], positive/negative [B, S, E], mask [B, S] -> (mean loss, number of pairs)."""
        first = self.mlp.hidden[0]
        w_h, w_e = first.weight.split([self.hidden, first.weight.shape[1] - self.hidden], dim=1)
        h_part = linear(states[:, :-1], w_h, first.bias)  # [B, S-1, d1]
        items = torch.stack([positive[:, 1:], negative[:, 1:]])  # [2, B, S-1, E]
        logits = output_logit(self.mlp.hidden[1:](h_part + linear(items, w_e)), self.mlp.out)
        cells = F.softplus(-logits[0]) + F.softplus(logits[1])  # -log p(pos) - log(1 - p(neg)), stable
        pairs = mask[:, :-1] & mask[:, 1:]
        count = pairs.sum()
        return (cells * pairs).sum() / count.clamp_min(1), count


class ShortInterest(nn.Module):
    """DLE-SIM's DIENItemSequenceInteractionBlock + auxiliary net: the DIEN part of DIEN and SIM.

    target [B, E]; short [B, S, E] and its ids [B, S, F] (padding: item id 0); negatives [B, S, E] or
    None -> (final interest [B, H] fp32, aux loss or None, aux pair count or None).
    """

    def __init__(self, sizes: SimSizes) -> None:
        super().__init__()
        item_size, self.hidden = sizes.item_width, RNN_SIZE_FACTOR * sizes.embedding_dim
        self.extractor = InterestExtractor(item_size, self.hidden)
        self.attention = DienAttention(item_size, self.hidden)
        self.evolution = (AUGRU if sizes.augru_variant == "paper" else VecAttGRU)(self.hidden, self.hidden)
        self.auxiliary = AuxiliaryNet(self.hidden, item_size, sizes.aux_mlp_dims, sizes.dropout_rate)

    def forward(self, target: Tensor, short: Tensor, short_ids: Tensor, negatives: Tensor | None):
        mask = history_mask(short_ids)  # [B, S]
        short = short * mask.unsqueeze(-1)  # padded positions are zero (the auxiliary loss reads them)
        states = self.extractor(short, mask)  # [B, S, H]
        attention = masked_softmax(self.attention(target, states), mask)  # [B, S], 0 at padding
        final = self.evolution(states, attention, mask)
        if negatives is None:
            return final, None, None
        aux, pairs = self.auxiliary.loss(states, short, negatives * mask.unsqueeze(-1), mask)
        return final, aux, pairs


def split_history(batch: SimBatch, long_length: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """(long ids [B, T-S, F], short ids [B, S, F], short negative ids [B, S, F] or None)."""
    steps = batch.history.shape[1]
    if steps <= long_length:
        raise ValueError(
            f"history of {steps} positions has no short part after long_seq_length={long_length}"
        )
    short = steps - long_length
    negatives = batch.neg_history
    if negatives is not None:
        if negatives.shape[1] < short:
            raise ValueError(
                f"negative history holds {negatives.shape[1]} positions, the short part needs {short}"
            )
        negatives = negatives[:, negatives.shape[1] - short :]
    return batch.history[:, :long_length], batch.history[:, long_length:], negatives


class DIEN(nn.Module):
    """[target E || interest s_T H || user U*D] -> MLP(stage_two_mlp_dims) -> logit, + auxiliary loss.

    Only the short history (the newest T - long_seq_length positions) is used, as in the reference.
    """

    def __init__(self, sizes: SimSizes, sparse_embeddings: bool = False) -> None:
        super().__init__()
        self.sizes = sizes
        self.user_embedding, self.item_embedding = embedding_tables(sizes, sparse_embeddings)
        self.interest = ShortInterest(sizes)
        width = sizes.item_width + self.interest.hidden + sizes.user_width
        self.classifier = MLP(width, sizes.stage_two_mlp_dims, "prelu", sizes.dropout_rate)

    def forward(self, batch: SimBatch) -> SimOutput:
        user = self.user_embedding(batch.user)
        _, short_ids, negative_ids = split_history(batch, self.sizes.long_seq_length)
        ids = (batch.target, short_ids) if negative_ids is None else (batch.target, short_ids, negative_ids)
        target, short, *negatives = self.item_embedding(*ids)  # one gradient buffer for all lookups
        final, aux, pairs = self.interest(target, short, short_ids, negatives[0] if negatives else None)
        logits = self.classifier(torch.cat([target, final, user], -1))
        return SimOutput(logits=logits, aux_loss=aux, aux_pairs=pairs)
