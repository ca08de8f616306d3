"""common.kernels: the policy switch, and common.linear's oneDNN path against its plain-PyTorch reference
on the layouts it special-cases (strided weights, broadcast gradients, 3-D inputs, fused ReLU)."""

from __future__ import annotations

import argparse

import pytest
import torch

from common import kernels
from common.linear import linear, linear_reference, onednn_available


def test_policy_switch_validates_and_restores() -> None:
    assert kernels.policy() == "auto" and kernels.fast()
    with kernels.use("reference"):
        assert not kernels.fast()
        with pytest.raises(ValueError, match="kernels must be one of"):
            kernels.set_policy("fast")
    assert kernels.policy() == "auto"
    parser = argparse.ArgumentParser()
    kernels.add_argument(parser)
    assert parser.parse_args([]).kernels == "auto"
    assert parser.parse_args(["--kernels", "reference"]).kernels == "reference"
    with pytest.raises(SystemExit):
        parser.parse_args(["--kernels", "onednn"])


def _run(x, w, b, relu, upstream):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]  # clone keeps x's strides
    y = linear(leaves[0], leaves[1][:, 2:], leaves[2], relu)
    (y.sum() if upstream is None else (y * upstream).sum()).backward()
    return y, [t.grad for t in leaves]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("layout", ["plain", "transposed_x", "broadcast_grad", "3d"])
def test_linear_auto_matches_reference(relu: bool, layout: str) -> None:
    """A weight column slice (padded row stride) everywhere; dY from `.sum()` is stride-0."""
    torch.manual_seed(0)
    shape = (4, 16, 24) if layout == "3d" else (64, 24)
    x = torch.randn(*shape) if layout != "transposed_x" else torch.randn(24, 64).t()
    w, b = torch.randn(40, 26), torch.randn(40)
    upstream = None if layout == "broadcast_grad" else torch.randn(*shape[:-1], 40)
    y_fast, g_fast = _run(x, w, b, relu, upstream)
    with kernels.use("reference"):
        y_ref, g_ref = _run(x, w, b, relu, upstream)
        assert "OneDnn" not in y_ref.grad_fn.name()
    if onednn_available():
        assert y_fast.grad_fn.name().startswith("_OneDnnLinear")
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(g_fast, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_linear_reference_is_f_linear() -> None:
    x, w, b = torch.randn(9, 5), torch.randn(3, 5), torch.randn(3)
    torch.testing.assert_close(linear_reference(x, w, b, relu=True), torch.relu(x @ w.t() + b))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_linear_on_cuda_is_the_reference() -> None:
    x, w, b = (torch.randn(*s, device="cuda") for s in ((64, 24), (40, 24), (40,)))
    torch.testing.assert_close(linear(x, w, b, relu=True), linear_reference(x, w, b, relu=True))
    with kernels.use("reference"):
        torch.testing.assert_close(linear(x, w, b), linear_reference(x, w, b))
