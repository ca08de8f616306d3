"""DIN: target attention over the whole history, with the DIN paper's activation unit (the default) or
DLE-SIM din_model.py's dot product.

Notation: see sim/models/__init__.py.
"""

from __future__ import annotations

import torch
from torch import nn

from sim.layers import MLP, ActivationUnitAttention, dot_attention, history_mask
from sim.models import SimBatch, SimOutput, SimSizes, embedding_tables

ACTIVATION_UNIT_DIMS = (80, 40)  # DLE-SIM's DINActivationUnit hidden sizes


class DIN(nn.Module):
    """[target E || attention over all T history items E || user U*D] -> MLP(stage_two_mlp_dims) -> logit.

    sizes.din_attention "mlp": the DIN paper's activation unit as DLE-SIM defines it (DINActivationUnit,
    which DLE-SIM's own din_model.py leaves unused); "dot": the parameter-free dot interaction that
    din_model.py does use. Both with a masked softmax over T and no negatives.
    """

    def __init__(self, sizes: SimSizes, sparse_embeddings: bool = False) -> None:
        super().__init__()
        self.sizes = sizes
        self.user_embedding, self.item_embedding = embedding_tables(sizes, sparse_embeddings)
        e, u = sizes.item_width, sizes.user_width
        self.attention = (
            ActivationUnitAttention(e, ACTIVATION_UNIT_DIMS) if sizes.din_attention == "mlp" else None
        )
        self.classifier = MLP(2 * e + u, sizes.stage_two_mlp_dims, "prelu", sizes.dropout_rate)

    def forward(self, batch: SimBatch) -> SimOutput:
        user = self.user_embedding(batch.user)  # [B, U*D]
        target, history = self.item_embedding(batch.target, batch.history)  # [B, E], [B, T, E]
        mask = history_mask(batch.history)  # [B, T]
        if self.attention is None:
            pooled, _ = dot_attention(target, history, mask)  # padded keys get weight 0: no zeroing pass
        else:
            pooled = self.attention(target, history, mask)
        return SimOutput(logits=self.classifier(torch.cat([target, pooled, user], -1)))
