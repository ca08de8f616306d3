"""Mixed precision through native `torch.amp` (apex is superseded).

bf16 or fp16 autocast on CUDA, bf16 or off on CPU. The GradScaler is live only for fp16 on CUDA, the one
case whose narrow exponent range can underflow gradients. Weights stay fp32 (autocast casts per op).
On CUDA, fp32 matmuls use TF32 by default (`tf32=True`), as NVIDIA's published fp32 numbers do (A100+).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Amp:
    enabled: bool
    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    def autocast(self) -> ContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, *optimizers: torch.optim.Optimizer) -> None:
        """optimizer.step() through the scaler (a plain step when the scaler is off), then update it once."""
        for optimizer in optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()

    def describe(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')} autocast" if self.enabled else "fp32"


def set_tf32(enabled: bool, device: torch.device) -> None:
    """TF32 tensor-core matmuls for fp32 on CUDA (torch's default is off; NVIDIA's containers and numbers have
    it on). Process-wide; CPU matmul precision is left alone."""
    if torch.device(device).type == "cuda":
        torch.set_float32_matmul_precision("high" if enabled else "highest")
        torch.backends.cudnn.allow_tf32 = enabled


def setup(
    enabled: bool,
    device: torch.device,
    dtype: str = "auto",
    *,
    tf32: bool = True,
    loss_scale: float | None = None,
) -> Amp:
    """dtype 'auto': bf16 where the hardware has it (no loss scaling needed), else fp16 on CUDA.

    fp16 on CPU is refused rather than silently swapped: CPU autocast has no fp16 matmul fast path.
    `loss_scale` (the seed's fp16 `--loss_scale`): the scaler starts there and never grows (it still halves
    on overflow), like NVIDIA's GradScaler(growth_interval=1e9); None = torch's dynamic scale from 2**16.
    """
    device_type = torch.device(device).type
    set_tf32(tf32, device)
    if loss_scale is not None and not (enabled and device_type == "cuda" and dtype == "float16"):
        raise ValueError("--loss_scale applies to fp16 loss scaling only: --amp --amp_dtype float16 on CUDA")
    if not enabled:
        return Amp(False, device_type, None, torch.amp.GradScaler(device_type, enabled=False))
    if dtype == "auto":
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            dtype = "float16"
        else:
            dtype = "bfloat16"
    if dtype not in DTYPES:
        raise ValueError(f"amp dtype must be 'auto', 'bfloat16' or 'float16', got {dtype!r}")
    if device_type == "cpu" and dtype == "float16":
        raise ValueError("float16 autocast is not supported on CPU; use --amp_dtype bfloat16 or no --amp")
    use_scaler = device_type == "cuda" and dtype == "float16"
    static = {"init_scale": loss_scale, "growth_interval": 2**30} if loss_scale is not None else {}
    return Amp(
        True, device_type, DTYPES[dtype], torch.amp.GradScaler(device_type, enabled=use_scaler, **static)
    )
