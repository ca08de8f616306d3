"""INT8 post-training quantization (ncf.quantize, ncf.quantized_model): split equivalence, quantization
error bounds, accuracy vs float on a trained model, save/reload through ncf.evaluate, clear errors."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from common import checkpoint
from common.errors import InputError
from common.logging import read_log
from ncf import data as ncf_data
from ncf import evaluate as ncf_evaluate
from ncf import quantize, quantized_model, train
from ncf.calibration import calibrate
from ncf.checkpoints import load_float
from ncf.model import NeuMF, NeuMFSizes
from ncf.quantized_model import (
    QuantizedNeuMF,
    QuantLinear,
    activation_qparams,
    int_mm,
    int_mm_fp32,
    onednn_available,
    quantize_activation,
    quantize_rows,
    split_final,
)
from tests.ncf.conftest import TINY

FAST = ["--batch_sizes", "1", "64", "--warmup", "1", "--num_batches", "3", "--bench_seconds", "0.05"]


@pytest.fixture(scope="module")
def trained(movielens, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a tiny NeuMF trained a few epochs on the planted-signal dataset."""
    _, prepared = movielens
    out = tmp_path_factory.mktemp("quantize")
    train.main(["--data", str(prepared), "--seed", "3", "--epochs", "4", "--log_path", str(out / "train.json"),
                "--checkpoint_dir", str(out / "ck"), *TINY])  # fmt: skip
    return out / "ck" / "best.pt"


def test_split_final_is_the_same_function_in_float(movielens, trained: Path) -> None:
    torch.manual_seed(0)
    model = NeuMF(NeuMFSizes(50, 40, mf_dim=8, mlp_layers=(32, 16, 8))).eval()
    torch.nn.init.normal_(model.final.bias, std=1.0)  # a non-trivial bias, so that halving it is exercised
    split = split_final(copy.deepcopy(model))
    assert torch.equal(split.final.final_gmf.weight, model.final.weight[:, :8])
    assert torch.equal(split.final.final_mlp.weight, model.final.weight[:, 8:])
    assert torch.equal(split.final.final_gmf.bias + split.final.final_mlp.bias, model.final.bias)
    with torch.no_grad():
        x = torch.randn(1000, 16)
        assert (split.final(x) - model.final(x)).abs().max() <= 1e-6
        users, items = torch.randint(0, 50, (1000,)), torch.randint(0, 40, (1000,))
        assert (split(users, items) - model(users, items)).abs().max() <= 1e-6
        # exact up to summation order: float64 at large magnitudes too
        x = torch.randn(1000, 16, dtype=torch.float64) * 100
        assert (split.final.double()(x) - model.final.double()(x)).abs().max() <= 1e-9

    _, prepared = movielens
    data = ncf_data.load(prepared)
    float_model, _ = load_float(trained)
    split_model = split_final(load_float(trained)[0])
    assert set(split_model.state_dict()) >= {"final.final_gmf.weight", "final.final_mlp.bias"}
    with torch.no_grad():
        u, i = data.test_users.reshape(-1), data.test_items.reshape(-1)
        assert (split_model(u, i) - float_model(u, i)).abs().max() <= 1e-6


def test_row_quantization_error_is_at_most_half_a_step() -> None:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(300, 24, generator=g) * torch.logspace(-4, 1, 300)[:, None]
    table[7] = 0.25  # a constant row: scale would be 0
    q, scale, offset = quantize_rows(table)
    assert q.dtype == torch.int8 and scale.shape == offset.shape == (300,)
    error = (q.float() * scale[:, None] + offset[:, None] - table).abs()
    assert (error <= scale[:, None] / 2 * (1 + 1e-4) + 1e-7).all()
    assert error[7].max() <= 1e-7
    assert torch.allclose(scale[:6], (table[:6].amax(1) - table[:6].amin(1)) / 255)  # the full 8-bit grid


def test_int8_gemm_and_its_exact_fp32_emulation() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-128, 128, (37, 256), dtype=torch.int8, generator=g)
    b = torch.randint(-127, 128, (256, 24), dtype=torch.int8, generator=g)
    assert torch.equal(int_mm(a, b), a.long().mm(b.long()).int())
    assert torch.equal(int_mm_fp32(a, b), int_mm(a, b))


def test_quant_linear_kernels_agree_and_stay_within_quantization_error() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.rand(500, 64) * 3 - 0.5
    grid_in, grid_out = activation_qparams(-0.5, 2.5), activation_qparams(0.0, 1.0)
    hidden = QuantLinear.from_float(linear, grid_in, grid_out, per_channel=True)
    final = QuantLinear.from_float(linear, grid_in, None, per_channel=False)
    assert hidden.weight.dtype == torch.int8
    xq = quantize_activation(x, *grid_in)
    assert xq.dtype == torch.uint8
    assert ((xq.float() - grid_in[1]) * grid_in[0] - x).abs().max() <= grid_in[0] / 2 + 1e-6
    with torch.no_grad():
        exact = linear(x)
        reference_y = final(xq, reference=True)
        # y_q - y = sum_k (e_x * w_q + x * e_w) with |e_x| <= s_x / 2 and |e_w| <= s_w / 2
        w_q = final.weight.float() * final.weight_scale[:, None]
        bound = grid_in[0] / 2 * w_q.abs().sum(1) + x.abs().sum(1, keepdim=True) * final.weight_scale / 2
        assert ((reference_y - exact).abs() <= bound + 1e-5).all()
        reference_q = hidden(xq, reference=True)
        assert reference_q.dtype == torch.uint8
        if onednn_available(torch.device("cpu")):
            assert (final(xq) - reference_y).abs().max() <= 1e-4
            # the same requantized levels, up to the rounding of values within float error of a tie
            assert (hidden(xq).int() - reference_q.int()).abs().max() <= 1


def test_quantized_model_paths_agree_and_track_the_float_model(monkeypatch) -> None:
    torch.manual_seed(0)
    model = NeuMF(NeuMFSizes(30, 20, mf_dim=8, mlp_layers=(16, 8, 4))).eval()
    torch.nn.init.normal_(model.final.bias, std=1.0)
    users, items = torch.randint(0, 30, (256,)), torch.randint(0, 20, (256,))
    ranges = calibrate(model, users, items, chunk_rows=100)
    assert set(ranges) == {"mlp.0", "mlp.1", "gmf", "mlp_out", "final_gmf_out", "final_mlp_out"}
    for split in (False, True):
        q = QuantizedNeuMF.from_float(model, ranges, split_final=split, per_channel=True).eval()
        assert q.user_table.dtype == q.item_table.dtype == q.mlp[0].weight.dtype == torch.int8
        with torch.no_grad():
            exact, fast = model(users, items), q(users, items)
            q.reference = True
            reference = q(users, items)
            monkeypatch.setattr(quantized_model, "int_mm", quantized_model.int_mm_fp32)  # the non-CPU path
            assert torch.equal(q(users, items), reference)
            monkeypatch.undo()
            q.reference = False
            assert torch.equal(copy.deepcopy(q)(users, items), fast)  # the prepacked-weight cache is dropped
        spread = exact.max() - exact.min()
        assert (fast - reference).abs().max() < 0.02 * spread
        assert 0 < (reference - exact).abs().max() < 0.05 * spread, (reference - exact).abs().max() / spread


def test_quantize_reports_all_models_and_saved_int8_reloads_in_evaluate(movielens, trained, tmp_path) -> None:
    _, prepared = movielens
    out = tmp_path / "int8.pt"
    result = quantize.main(["--data", str(prepared), "--checkpoint", str(trained), "--split_final",
                            "--per_channel", "--output", str(out), "--log_path", str(tmp_path / "q.json"), *FAST])  # fmt: skip
    reference = ncf_evaluate.main(["--data", str(prepared), "--checkpoint", str(trained), "--device", "cpu"])
    assert result["float_hr@10"] == result["float_split_hr@10"] == reference["hr@10"]
    assert result["float_ndcg@10"] == reference["ndcg@10"]
    assert reference["hr@10"] > 0.5  # the model learned something worth quantizing
    # 400 series: 0.02 is 8 users
    assert abs(result["int8_split_hr@10"] - result["float_hr@10"]) <= 0.02, result
    assert abs(result["int8_split_ndcg@10"] - result["float_ndcg@10"]) <= 0.02, result
    assert abs(result["int8_hr@10"] - result["float_hr@10"]) <= 0.04, result
    assert result["range_mlp_out_min"] == 0.0 <= result["range_mlp_out_max"]  # post-ReLU
    assert result["range_gmf_min"] < 0 < result["range_gmf_max"]
    assert result["gmf_levels_no_split"] <= result["gmf_levels_split"] <= 255 + 1e-6
    for name in ("float", "int8", "int8_split"):
        for b in (1, 64):
            assert result[f"{name}_batch_{b}_mean_throughput"] > 0
            assert result[f"{name}_batch_{b}_p50_latency"] <= result[f"{name}_batch_{b}_p99_latency"]
    summary = read_log(tmp_path / "q.json")[-1]
    assert summary["step"] == [] and summary["data"]["int8_split_hr@10"] == result["int8_split_hr@10"]

    saved = torch.load(out, weights_only=True)
    assert saved["hyperparams"]["quantization"] == {"split_final": True}
    assert saved["model"]["user_table"].dtype == torch.int8
    again = ncf_evaluate.main(["--data", str(prepared), "--checkpoint", str(out), "--device", "cpu"])
    assert (again["hr@10"], again["ndcg@10"]) == (result["int8_split_hr@10"], result["int8_split_ndcg@10"])
    assert (again["hr@10"], again["ndcg@10"]) == (result["hr@10"], result["ndcg@10"])


def _exits_with(capsys, argv: list[str], *needles: str) -> None:
    """quantize.main refuses argv with an InputError (exit 2) naming all needles, and prints nothing."""
    with pytest.raises(InputError) as e:
        quantize.main([*argv, *FAST])
    message = str(e.value)
    for needle in needles:
        assert needle in message, message
    assert capsys.readouterr() == ("", "")


def test_bad_checkpoints_and_mismatched_data_exit_with_a_clear_error(
    movielens, trained, tmp_path, capsys
) -> None:
    _, prepared = movielens
    data = ["--data", str(prepared)]
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    _exits_with(capsys, [*data, "--checkpoint", str(text)], str(text))
    _exits_with(capsys, [*data, "--checkpoint", str(tmp_path / "missing.pt")], "does not exist")

    other = checkpoint.save(tmp_path / "other.pt", model=torch.nn.Linear(2, 1), hyperparams={"num_tables": 3})
    _exits_with(capsys, [*data, "--checkpoint", str(other)], "NeuMF hyperparams", "num_tables")

    sizes = NeuMFSizes.from_dict(checkpoint.load(trained)["hyperparams"])
    small = NeuMFSizes(sizes.num_users - 1, sizes.num_items, sizes.mf_dim, sizes.mlp_layers, sizes.dropout)
    wrong = checkpoint.save(tmp_path / "wrong.pt", model=NeuMF(small), hyperparams=small.as_dict())
    _exits_with(capsys, [*data, "--checkpoint", str(wrong)], f"{sizes.num_users - 1} users", str(prepared))

    int8 = tmp_path / "int8.pt"
    quantize.main([*data, "--checkpoint", str(trained), "--output", str(int8), "--batch_sizes"])
    capsys.readouterr()
    _exits_with(capsys, [*data, "--checkpoint", str(int8)], "already an INT8 model")
    _exits_with(capsys, ["--data", str(tmp_path), "--checkpoint", str(trained)], "feature_spec.yaml")


def test_output_never_replaces_the_float_checkpoint_or_another_file(
    movielens, trained, tmp_path, capsys
) -> None:
    _, prepared = movielens
    argv = ["--data", str(prepared), "--checkpoint", str(trained)]
    before = trained.read_bytes()
    alias = tmp_path / "alias.pt"
    alias.symlink_to(trained)
    for same in (trained, alias, Path(os.path.relpath(trained))):  # the same file, however spelled
        _exits_with(capsys, [*argv, "--output", str(same)], "is the --checkpoint itself")
    float_copy = tmp_path / "float.pt"
    float_copy.write_bytes(before)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for other in (float_copy, notes):
        _exits_with(capsys, [*argv, "--output", str(other)], "is not an INT8 model written by ncf.quantize")
    assert trained.read_bytes() == float_copy.read_bytes() == before and notes.read_text() == "mine"
    int8 = tmp_path / "int8.pt"
    for _ in range(2):  # its own earlier output may be replaced
        quantize.main([*argv, "--output", str(int8), "--batch_sizes"])
    saved = checkpoint.load(int8, recipe="ncf")
    assert saved["recipe"] == "ncf" and saved["dataset"]["num_users"] == 400
