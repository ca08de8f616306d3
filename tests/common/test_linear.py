"""common.linear: the oneDNN path must be F.linear (+ ReLU), forward and backward, and step aside where it
cannot be used (autocast, tracing, other dtypes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.linear import Linear, linear, onednn_available

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


def _grads(fn, x, w, b, g):
    for t in (x, w, b):
        t.grad = None
    y = fn()
    (y * g).sum().backward()
    return y.detach(), [t.grad.clone() for t in (x, w, b)]


@needs_onednn
@pytest.mark.parametrize(
    "shape, out, relu",
    [
        ((64, 37), 23, True),
        ((64, 23), 37, False),
        ((5, 7, 37), 23, False),
        ((8, 13), 512, True),
        ((300, 8), 1, False),
    ],
)
def test_matches_f_linear_forward_and_backward(shape, out, relu):
    """Both dW branches (narrow output and narrow input), 3-D inputs, the smallest batch, the logit layer."""
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(out, shape[-1], requires_grad=True)
    b = torch.randn(out, requires_grad=True)
    g = torch.randn(*shape[:-1], out)

    def reference():
        y = F.linear(x, w, b)
        return torch.relu(y) if relu else y

    y, grads = _grads(lambda: linear(x, w, b, relu), x, w, b, g)
    assert y.shape == (*shape[:-1], out)
    assert linear(x, w, b, relu).grad_fn.name().startswith("_OneDnnLinear")
    y_ref, grads_ref = _grads(reference, x, w, b, g)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_transposed_input_and_no_bias():
    x = torch.randn(40, 16).t().requires_grad_()  # [16, 40], non-contiguous
    w = torch.randn(8, 40, requires_grad=True)
    y = linear(x, w)
    y.sum().backward()
    torch.testing.assert_close(y, F.linear(x, w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, torch.ones(16, 8).t() @ x.detach(), rtol=1e-5, atol=1e-5)


def test_falls_back_where_onednn_does_not_apply():
    x, w, b = torch.randn(4, 3), torch.randn(2, 3), torch.randn(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, w, b).dtype == torch.bfloat16  # autocast's own linear, not the fp32 path
    assert linear(x.double(), w.double(), b.double()).dtype == torch.float64
    assert linear(torch.randn(0, 3), w, b).shape == (0, 2)
    one_row = linear(torch.randn(1, 3, requires_grad=True), w, b)  # below MIN_ROWS: oneDNN's overhead loses
    assert not one_row.grad_fn.name().startswith("_OneDnnLinear")
    traced = torch.jit.trace(Linear(3, 2), (x,))
    assert "OneDnn" not in str(traced.graph)
    torch.testing.assert_close(traced(x), F.linear(x, traced.weight, traced.bias))


def test_linear_module_keeps_nn_linear_state_dict():
    torch.manual_seed(0)
    ours = Linear(5, 3)
    plain = torch.nn.Linear(5, 3)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(7, 5)
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_weight_slice_and_broadcast_gradient():
    """Layouts oneDNN is slow or wrong on are copied first: a column slice of a weight, a stride-0 dY."""
    big = torch.randn(12, 10, requires_grad=True)
    x = torch.randn(3, 4, 6, requires_grad=True)
    linear(x, big[:, 4:]).sum().backward()  # d/dy of .sum() is an expanded (stride-0) tensor
    want_big = torch.zeros(12, 10)
    want_big[:, 4:] = x.detach().reshape(-1, 6).sum(0)
    torch.testing.assert_close(big.grad, want_big)
    torch.testing.assert_close(x.grad, big.detach()[:, 4:].sum(0).expand(3, 4, 6))


def test_auto_takes_onednn_on_amd_cpus_only(monkeypatch) -> None:
    """MKL runs AMD CPUs on AVX2 (oneDNN 2.3x faster there); on Intel, MKL's AVX-512 path was faster."""
    import common.linear as linear_mod

    monkeypatch.undo()  # the suite-wide fixture forces oneDNN on; this test checks the real rule
    monkeypatch.delenv(linear_mod.FORCE_ENV, raising=False)
    for vendor, expected in (("AuthenticAMD", True), ("GenuineIntel", False), ("", False)):
        linear_mod.onednn_pays_off.cache_clear()
        monkeypatch.setattr(linear_mod, "_cpu_vendor", lambda v=vendor: v)
        assert linear_mod.onednn_pays_off() == (expected and linear_mod.onednn_available())
    for forced, expected in (("1", True), ("0", False)):
        linear_mod.onednn_pays_off.cache_clear()
        monkeypatch.setenv(linear_mod.FORCE_ENV, forced)
        assert linear_mod.onednn_pays_off() == (expected and linear_mod.onednn_available())
    linear_mod.onednn_pays_off.cache_clear()
