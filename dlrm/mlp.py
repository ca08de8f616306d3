"""The bottom and top MLPs of DLRM: Linear + ReLU stacks with the reference's normal initialisation.

Notation: B = batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from common.linear import linear


class Mlp(nn.Sequential):
    """Args:
        in_features: input width.
        sizes: output width of each Linear layer, in order.
        relu_last: ReLU after the last layer too. The bottom MLP has it (its output is an embedding-like
            vector, as NVIDIA's DLRM does); the top MLP does not (its last layer emits the logit).

    forward(x [B, in_features]) -> [B, sizes[-1]].

    An nn.Sequential (Linear, ReLU, Linear, ...) in its state dict and in TorchScript/ONNX exports (where
    `common.linear` is plain F.linear + ReLU); the reference's apex fused MLP computes the same function.
    """

    def __init__(self, in_features: int, sizes: Sequence[int], relu_last: bool) -> None:
        if not sizes or min(sizes) <= 0 or in_features <= 0:
            raise ValueError(
                f"MLP sizes must be positive, got in_features={in_features}, sizes={list(sizes)}"
            )
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip([in_features, *sizes[:-1]], sizes)):
            layers.append(nn.Linear(a, b))
            if relu_last or i < len(sizes) - 1:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        self.reset_parameters()

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def reset_parameters(self) -> None:
        """Reference init (DLE `TorchMlp._initialize_weights`, FB `create_mlp`): weight ~ N(0, sqrt(2 / (fan_in
        + fan_out))), bias ~ N(0, sqrt(1 / fan_out)), for every layer including the logit layer (as in the
        2020 recipe whose hyperparameters are our defaults; the newest DLE leaves the 256->1 layer at
        PyTorch's default init, as NVIDIA's DLRM does)."""
        with torch.no_grad():
            for layer in self.linears:
                fan_out, fan_in = layer.weight.shape
                layer.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
                layer.bias.normal_(0.0, math.sqrt(1.0 / fan_out))

    def forward(self, x: Tensor) -> Tensor:
        """Sequential semantics; each Linear + ReLU pair is one `common.linear.linear` call (fused on CPU)."""
        layers = [*self, None]
        for layer, after in zip(layers, layers[1:]):
            if isinstance(layer, nn.Linear):
                x = linear(x, layer.weight, layer.bias, relu=isinstance(after, nn.ReLU))
        return x
