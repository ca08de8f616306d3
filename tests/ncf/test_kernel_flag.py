"""ncf.train/evaluate --kernels: logged, honoured (no oneDNN product under `reference`), the same results
within float rounding, and free to change on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common import linear as linear_mod
from common.logging import read_log
from ncf import evaluate as ncf_evaluate
from ncf import train
from tests.ncf.conftest import TINY


@pytest.fixture
def onednn_calls(spy) -> dict:
    return spy(linear_mod._OneDnnLinear, "apply")


def _train(prepared: Path, tmp: Path, *flags: str) -> dict:
    return train.main(["--data", str(prepared), "--seed", "3", "--log_path", str(tmp / "log.json"),
                       "--checkpoint_dir", str(tmp / "ck"), *TINY, *flags])  # fmt: skip


def test_reference_kernels_match_auto_and_may_change_on_resume(
    movielens, tmp_path: Path, onednn_calls
) -> None:
    _, prepared = movielens
    auto = _train(prepared, tmp_path / "auto", "--epochs", "1")
    assert (onednn_calls["n"] > 0) == linear_mod.onednn_available()
    onednn_calls["n"] = 0
    ref = _train(prepared, tmp_path / "ref", "--epochs", "1", "--kernels", "reference")
    assert onednn_calls["n"] == 0
    for key in ("train_loss", "validation_loss", "hr@10"):
        assert ref[key] == pytest.approx(auto[key], rel=1e-4), key
    resumed = _train(prepared, tmp_path / "ref", "--epochs", "2")  # epoch 2 under auto: allowed
    params = [r["data"] for r in read_log(tmp_path / "ref" / "log.json") if r.get("step") == "PARAMETER"]
    assert [p["kernels"] for p in params] == ["reference", "auto"] and resumed["epochs"] == 2
    onednn_calls["n"] = 0
    args = ["--data", str(prepared), "--checkpoint", str(tmp_path / "auto" / "ck" / "best.pt")]
    ref_eval = ncf_evaluate.main([*args, "--kernels", "reference"])
    assert onednn_calls["n"] == 0
    assert ref_eval["validation_loss"] == pytest.approx(auto["validation_loss"], rel=1e-5)


def test_int8_linear_takes_its_reference_path_under_reference_kernels(spy) -> None:
    from common import kernels
    from ncf.quantized_model import QuantLinear, activation_qparams, quantize_activation

    torch.manual_seed(0)
    grid_in, grid_out = activation_qparams(-0.5, 2.5), activation_qparams(0.0, 1.0)
    layer = QuantLinear.from_float(torch.nn.Linear(64, 32), grid_in, grid_out, per_channel=True)
    xq = quantize_activation(torch.rand(50, 64) * 3 - 0.5, *grid_in)
    fused = spy(torch.ops.onednn, "qlinear_pointwise")
    with torch.no_grad(), kernels.use("reference"):
        assert torch.equal(layer(xq), layer(xq, reference=True))
    assert fused["n"] == 0
