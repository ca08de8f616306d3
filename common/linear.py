"""`linear` / `Linear`: F.linear and nn.Linear whose fp32 CPU matrix products run on oneDNN instead of BLAS.

Why: PyTorch's CPU wheels send fp32 `mm`/`addmm` to MKL, and MKL runs AMD CPUs on its AVX2 code path.
On the 2-core AMD EPYC (Zen 5, AVX-512) this project is tested on, [4096, 512] x [512, 256] reached
190 GFLOP/s through MKL and 431 GFLOP/s through oneDNN (`torch.ops.mkldnn._linear_pointwise`, which
PyTorch ships for its own compiler), both exact fp32 (max error vs float64 1e-4 at K = 512). The MLP
GEMMs are ~70% of a DLRM training step, so this is the one change that moves fp32 CPU training.
Backward is ours too: dX = dY W and dW = dY^T X are the same oneDNN product (2.5x and 1.6x MKL at that
shape; for dW oneDNN needs one operand transposed in memory, so the narrower one is copied), and a
following ReLU is fused into the forward product.

On other CPUs (Intel's get AVX-512 from MKL) the oneDNN route measured slower, so it is used on AMD only
(`onednn_pays_off`). Everywhere else (CUDA, bf16/fp16, autocast, TorchScript tracing, ONNX export, torch.compile, a torch
without oneDNN, and `--kernels reference`: common.kernels) it is exactly F.linear (+ ReLU), the reference,
so exported graphs and checkpoints are unchanged.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import kernels

# Fewer rows stay on F.linear: oneDNN's per-call overhead loses there (one thread, [rows, 368] x [368, 512]:
# 1 row 22 vs 12 us, 4 rows 35 vs 33 us, 16 rows 53 vs 74 us).
MIN_ROWS = 8
FORCE_ENV = "RECSYS_ONEDNN_LINEAR"  # "1" / "0": take / skip the oneDNN route whatever the CPU vendor


@functools.cache
def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@functools.cache
def onednn_pays_off() -> bool:
    """oneDNN is available and this CPU is an AMD one, where MKL falls back to AVX2.

    Why only AMD: on an Intel Xeon (KVM, AVX-512, AMX; 2026-12-06, 2 threads) MKL already runs AVX-512, and
    the oneDNN route was slower for every DLRM layer shape measured (fwd + bwd, 4096 rows: [512 -> 256]
    16.6 vs 13.4 ms, [256 -> 16] 1.83 vs 1.34 ms; 64 rows: 0.90 vs 0.56 ms) and DLRM inference at batch 64
    fell from 48k to 31k samples/s. `--kernels auto` takes the reference there.
    """
    forced = os.environ.get(FORCE_ENV, "")
    if forced in ("0", "1"):  # a CPU not measured here: RECSYS_ONEDNN_LINEAR=1 tries it, =0 keeps MKL
        return forced == "1" and onednn_available()
    return onednn_available() and _cpu_vendor() == "AuthenticAMD"


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    if not kernels.fast():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.numel() == 0 or x.numel() < MIN_ROWS * x.shape[-1]:
        return False
    if torch.is_autocast_enabled("cpu") or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False
    return onednn_pays_off()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """F.linear(x, weight, bias), then ReLU when `relu`; x [..., in] -> [..., out]."""
    if _use_onednn(x, weight):
        return _OneDnnLinear.apply(x, weight, bias, relu)
    return linear_reference(x, weight, bias, relu)


def linear_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """What `linear` computes, in plain PyTorch ops (its path on CUDA and under `--kernels reference`)."""
    y = F.linear(x, weight, bias)
    return torch.relu(y) if relu else y


class Linear(nn.Linear):
    """nn.Linear (same parameters, init and state dict) computed by `linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def _plain(t: Tensor) -> Tensor:
    """t itself when it is contiguous or the transpose of a contiguous matrix, else a contiguous copy.

    oneDNN is fast on those two layouts, but picks a reference kernel ~1000x slower for others (seen on
    torch 2.13: a weight slice with a padded row stride, a stride-0 gradient from `.sum().backward()`).
    """
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


def _product(a: Tensor, b_t: Tensor) -> Tensor:
    """a [M, K] @ b_t.T for b_t [N, K] -> [M, N] on oneDNN; a is made contiguous, b_t plain."""
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), _plain(b_t), None, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
        x2, weight = x.reshape(-1, x.shape[-1]).contiguous(), _plain(weight)
        y = torch.ops.mkldnn._linear_pointwise(x2, weight, bias, "relu" if relu else "none", [], "")
        ctx.save_for_backward(x2, weight, y if relu else None)
        ctx.relu, ctx.has_bias, ctx.in_shape = relu, bias is not None, x.shape
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor | None, ...]:
        x2, weight, y = ctx.saved_tensors
        dy = dy.reshape(-1, weight.shape[0]).contiguous()
        if ctx.relu:
            dy = torch.ops.aten.threshold_backward(dy, y, 0)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _product(dy, weight.t()).view(ctx.in_shape)
        if ctx.needs_input_grad[1]:  # dY^T X: the transposed operand oneDNN must copy is the narrower one
            dw = _product(dy.t(), x2.t()) if dy.shape[1] <= x2.shape[1] else _product(x2.t(), dy.t()).t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db, None
