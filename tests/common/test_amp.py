from __future__ import annotations

import pytest
import torch

from common import amp


def test_off_is_a_plain_fp32_step() -> None:
    a = amp.setup(False, torch.device("cpu"))
    lin = torch.nn.Linear(4, 2)
    with a.autocast():
        y = lin(torch.randn(3, 4))
    assert y.dtype == torch.float32 and not a.scaler.is_enabled() and a.describe() == "fp32"


def test_cpu_bf16_autocast_trains() -> None:
    a = amp.setup(True, torch.device("cpu"))
    assert a.dtype is torch.bfloat16 and not a.scaler.is_enabled()
    lin = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    with a.autocast():
        y = lin(torch.randn(8, 4))
    assert y.dtype == torch.bfloat16
    before = lin.weight.detach().clone()
    a.backward(y.float().pow(2).mean())
    a.step(opt)
    assert lin.weight.dtype == torch.float32 and not torch.equal(before, lin.weight)


def test_refuses_fp16_on_cpu_and_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="not supported on CPU"):
        amp.setup(True, torch.device("cpu"), "float16")
    with pytest.raises(ValueError, match="amp dtype must be"):
        amp.setup(True, torch.device("cpu"), "int8")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_uses_a_live_scaler() -> None:
    a = amp.setup(True, torch.device("cuda"), "float16")
    assert a.scaler.is_enabled()
    lin = torch.nn.Linear(4, 1).cuda()
    opt = torch.optim.Adam(lin.parameters(), fused=True)
    with a.autocast():
        y = lin(torch.randn(8, 4, device="cuda"))
    assert y.dtype == torch.float16
    a.backward(y.float().pow(2).mean())
    a.step(opt)
    assert torch.isfinite(lin.weight).all()


def test_tf32_is_on_by_default_for_cuda_and_left_alone_on_cpu() -> None:
    """TF32 only changes flags (no GPU needed to check them); CPU matmul precision is never touched."""
    before = torch.get_float32_matmul_precision()
    try:
        amp.set_tf32(False, torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == before
        amp.set_tf32(True, torch.device("cuda"))
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        amp.set_tf32(False, torch.device("cuda"))
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before)
        torch.backends.cudnn.allow_tf32 = True


def test_loss_scale_is_for_fp16_only() -> None:
    with pytest.raises(ValueError, match="--loss_scale applies to fp16 loss scaling only"):
        amp.setup(True, torch.device("cpu"), "bfloat16", loss_scale=8192.0)
    with pytest.raises(ValueError, match="--loss_scale"):
        amp.setup(False, torch.device("cpu"), loss_scale=8192.0)
