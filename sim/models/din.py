"""DIN as DLE-SIM builds it (din_model.py): dot-product target attention over the whole history.

Notation: see sim/models/__init__.py.
"""

from __future__ import annotations

import torch
from torch import nn

from sim.layers import MLP, FeatureEmbedding, dot_attention, history_mask
from sim.models import SimBatch, SimOutput, SimSizes


class DIN(nn.Module):
    """[target E || attention over all T history items E || user U*D] -> MLP(stage_two_mlp_dims) -> logit.

    The reference's DIN uses the parameter-free dot interaction with a masked softmax (not the DIN
    paper's MLP activation unit, which DLE-SIM defines but never uses) and no negatives.
    """

    def __init__(self, sizes: SimSizes, sparse_embeddings: bool = False) -> None:
        super().__init__()
        self.sizes = sizes
        d = sizes.embedding_dim
        self.user_embedding = FeatureEmbedding(sizes.user_cardinalities, d, sparse_embeddings)
        self.item_embedding = FeatureEmbedding(sizes.item_cardinalities, d, sparse_embeddings)
        e, u = d * len(sizes.item_cardinalities), d * len(sizes.user_cardinalities)
        self.classifier = MLP(2 * e + u, sizes.stage_two_mlp_dims, "prelu", sizes.dropout_rate)

    def forward(self, batch: SimBatch) -> SimOutput:
        user = self.user_embedding(batch.user)  # [B, U*D]
        target, history = self.item_embedding(batch.target, batch.history)  # [B, E], [B, T, E]
        mask = history_mask(batch.history)  # [B, T]
        pooled, _ = dot_attention(target, history, mask)  # padded keys get weight 0: no zeroing pass
        return SimOutput(logits=self.classifier(torch.cat([target, pooled, user], -1)))
