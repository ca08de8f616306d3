"""SIM as DLE-SIM builds it (sim_model.py): a general search unit over the long history, top-k selection,
and an exact search unit over the selected items plus DIEN over the short history.

Notation: see sim/models/__init__.py.
"""

from __future__ import annotations

import torch
from torch import nn

from sim.layers import MLP, dot_attention, history_mask
from sim.models import SimBatch, SimOutput, SimSizes, embedding_tables
from sim.models.dien import ShortInterest, split_history


class SIM(nn.Module):
    """GSU: dot attention of the target over the long history (the first T - S positions) -> U_r;
    stage-one head MLP(stage_one_mlp_dims)([target || U_r || user]) -> auxiliary CTR logit ("soft search
    training", loss weight 0.5 as the reference).
    Top-k: the K long items with the highest GSU scores (padding never selected while real items remain;
    padding that is selected is masked).
    ESU: dot attention over the K items (E) || their masked mean with the reference's (count + 1)
    denominator (E) || target (E) || DIEN interest over the short history (H) || user (U*D) ->
    MLP(stage_two_mlp_dims) -> the prediction logit.
    """

    def __init__(self, sizes: SimSizes, sparse_embeddings: bool = False) -> None:
        super().__init__()
        self.sizes = sizes
        e, u = sizes.item_width, sizes.user_width
        self.user_embedding, self.item_embedding = embedding_tables(sizes, sparse_embeddings)
        self.stage_one = MLP(2 * e + u, sizes.stage_one_mlp_dims, "prelu", sizes.dropout_rate)
        self.interest = ShortInterest(sizes)
        width = 3 * e + self.interest.hidden + u
        self.stage_two = MLP(width, sizes.stage_two_mlp_dims, "prelu", sizes.dropout_rate)

    def forward(self, batch: SimBatch) -> SimOutput:
        user = self.user_embedding(batch.user)  # [B, U*D]
        long_ids, short_ids, negative_ids = split_history(batch, self.sizes.long_seq_length)
        ids = (batch.target, long_ids, short_ids) + (() if negative_ids is None else (negative_ids,))
        target, long, short, *negatives = self.item_embedding(*ids)  # [B, E], [B, T-S, E], [B, S, E], ...

        long_mask = history_mask(long_ids)  # [B, T-S]
        long = long * long_mask.unsqueeze(-1)
        interest_r, scores = dot_attention(target, long, long_mask)  # GSU
        stage_one_logits = self.stage_one(torch.cat([target, interest_r, user], -1))

        k = min(self.sizes.gsu_topk, long.shape[1])
        top = scores.topk(k, dim=1).indices  # [B, K]; selection is not differentiable, embeddings are
        top_mask = long_mask.gather(1, top)  # from the padding mask, not "softmax > 0" (fp16 underflow)
        top_items = long.gather(1, top.unsqueeze(-1).expand(-1, -1, long.shape[-1]))  # [B, K, E]
        attended, _ = dot_attention(target, top_items, top_mask)  # ESU
        mean = top_items.sum(1) / (top_mask.sum(1, keepdim=True) + 1)  # reference's off-by-one mean

        final, aux, pairs = self.interest(target, short, short_ids, negatives[0] if negatives else None)

        logits = self.stage_two(torch.cat([attended, mean, target, final, user], -1))
        return SimOutput(logits=logits, aux_loss=aux, aux_pairs=pairs, stage_one_logits=stage_one_logits)
