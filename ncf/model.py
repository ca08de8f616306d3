"""NeuMF (He et al., WWW'17) exactly as the NVIDIA reference: GMF and MLP towers, one logit out.

Notation: B = batch, F = mf_dim (GMF factors), M = mlp_layers[0] // 2 (MLP embedding width).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from common.linear import Linear


@dataclass(frozen=True)
class NeuMFSizes:
    """Everything the constructor needs; stored in checkpoints so a model rebuilds from the file alone."""

    num_users: int
    num_items: int
    mf_dim: int = 64
    mlp_layers: tuple[int, ...] = (256, 256, 128, 64)
    dropout: float = 0.5

    def as_dict(self) -> dict:
        return {**asdict(self), "mlp_layers": list(self.mlp_layers)}

    @classmethod
    def from_dict(cls, d: dict) -> NeuMFSizes:
        return cls(**{**d, "mlp_layers": tuple(d["mlp_layers"])})


class NeuMF(nn.Module):
    """Args:
        sizes: table sizes and tower widths; mlp_layers[0] must be even (it is the concatenated
            user+item MLP embedding width).
        sparse: embedding gradients as sparse row updates (for optimizers that take them).
        byte_dropout: draw dropout masks from random bytes (8 per 64-bit draw) instead of one Bernoulli
            draw per element: about 3x cheaper on CPU, where mask generation was a quarter of the step
            time at ml-20m sizes (profiled 2026-11). The keep probability is rounded to a multiple of
            1/256 (exact for the reference's 0.5). Native dropout is already a fused kernel on CUDA.

    forward(user [B] int, item [B] int) -> logits [B] (float32, or the autocast dtype).

    The two user tables (GMF, MLP) are stored as ONE [num_users, F + M] table, and likewise for items:
    one gather per side instead of two. Both halves get the reference init N(0, 0.01), so this is the
    same model; `user_embedding_gmf`-style views are exposed for inspection and INT8 tooling.
    """

    def __init__(self, sizes: NeuMFSizes, sparse: bool = False, byte_dropout: bool = False) -> None:
        super().__init__()
        layers = list(sizes.mlp_layers)
        if len(layers) < 1 or layers[0] % 2:
            raise ValueError(f"mlp_layers[0] must be even (user and item halves), got {layers}")
        if not 0.0 <= sizes.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {sizes.dropout}")
        self.sizes = sizes
        self.mf_dim = sizes.mf_dim
        width = sizes.mf_dim + layers[0] // 2
        self.split_sizes = [sizes.mf_dim, layers[0] // 2]
        self.user_embedding = nn.Embedding(sizes.num_users, width, sparse=sparse)
        self.item_embedding = nn.Embedding(sizes.num_items, width, sparse=sparse)
        # common.linear.Linear: an nn.Linear (same state dict, hooks) whose fp32 CPU GEMMs run on oneDNN
        self.mlp = nn.ModuleList(Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
        self.dropout = sizes.dropout
        self.byte_dropout = byte_dropout
        self.final = nn.Linear(sizes.mf_dim + layers[-1], 1)  # input: concat(GMF vector, MLP vector)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init: embeddings N(0, 0.01); MLP weights Glorot uniform; final weight LeCun uniform
        U(+-sqrt(3/fan_in)); biases keep nn.Linear's default U(+-1/sqrt(fan_in))."""
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, 0.0, 0.01)
        for layer in self.mlp:
            nn.init.xavier_uniform_(layer.weight)
        bound = math.sqrt(3.0 / self.final.in_features)
        nn.init.uniform_(self.final.weight, -bound, bound)

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        # split (not two slices): its backward is one concatenation instead of two zero-filled [B, F + M] grads
        u_gmf, u_mlp = self.user_embedding(user).split(self.split_sizes, dim=1)  # [B, F], [B, M]
        i_gmf, i_mlp = self.item_embedding(item).split(self.split_sizes, dim=1)
        gmf = u_gmf * i_gmf  # [B, F]
        x = torch.cat([u_mlp, i_mlp], dim=1)  # [B, 2M], user half first
        for layer in self.mlp:
            x = torch.relu(layer(x))
            if self.dropout and self.training:
                x = (
                    _byte_dropout(x, self.dropout)
                    if self.byte_dropout
                    else nn.functional.dropout(x, self.dropout)
                )
        return self.final(torch.cat([gmf, x], dim=1)).squeeze(1)

    @property
    def user_embedding_gmf(self) -> Tensor:
        return self.user_embedding.weight[:, : self.mf_dim]

    @property
    def item_embedding_gmf(self) -> Tensor:
        return self.item_embedding.weight[:, : self.mf_dim]

    @property
    def user_embedding_mlp(self) -> Tensor:
        return self.user_embedding.weight[:, self.mf_dim :]

    @property
    def item_embedding_mlp(self) -> Tensor:
        return self.item_embedding.weight[:, self.mf_dim :]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _byte_dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout whose mask compares one random byte per element with round((1 - p) * 256)."""
    keep = max(1, min(256, round((1.0 - p) * 256)))
    if keep == 256:
        return x
    words = torch.empty((x.numel() + 7) // 8, dtype=torch.int64, device=x.device).random_()
    rand = words.view(torch.uint8)[: x.numel()].view_as(x)
    return x * (rand < keep) * (256.0 / keep)
