"""dlrm.export: TorchScript and ONNX files rebuilt from a checkpoint give the eager model's logits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from common import checkpoint
from common.errors import InputError, UsageError
from dlrm import export
from dlrm.model import DLRM, DlrmSizes

SIZES = DlrmSizes(
    num_numerical=13, table_sizes=(50, 7, 23, 100), embedding_dim=8, bottom_mlp_sizes=(16, 8),
    top_mlp_sizes=(32, 16, 1),
)  # fmt: skip


def _checkpoint(tmp_path: Path, sizes: DlrmSizes = SIZES) -> tuple[Path, DLRM]:
    """A trained-looking checkpoint: sparse tables as dlrm.train has them, weights moved off their init."""
    torch.manual_seed(3)
    model = DLRM(sizes, sparse=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = checkpoint.save(tmp_path / "best.pt", model=model, hyperparams=sizes.as_dict(), recipe="dlrm")
    return path, model.eval()


def _inputs(sizes: DlrmSizes, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    high = 5 * max(sizes.table_sizes) if sizes.hash_indices else None
    categorical = torch.stack(
        [torch.randint(0, high or n, (batch,), generator=g) for n in sizes.table_sizes], 1
    )
    return torch.randn(batch, sizes.num_numerical, generator=g), categorical


def test_torchscript_matches_eager(tmp_path: Path) -> None:
    path, model = _checkpoint(tmp_path)
    out = tmp_path / "export"
    result = export.main(["--checkpoint", str(path), "--output", str(out), "--format", "torchscript",
                          "--batch_size", "8"])  # fmt: skip
    assert result["max_abs_diff_vs_eager"] <= 1e-5
    assert sorted(p.name for p in out.iterdir()) == ["export_info.json", "model.pt"]
    scripted = torch.jit.load(str(out / "model.pt"))
    for batch in (3, 37):  # neither is the traced batch size
        numerical, categorical = _inputs(SIZES, batch, seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(scripted(numerical, categorical), model(numerical, categorical),
                                       atol=1e-5, rtol=0)  # fmt: skip
    info = json.loads((out / "export_info.json").read_text())
    assert info["inputs"][1] == {"name": "categorical", "dtype": "int64", "shape": ["batch", 4],
                                 "range": "[0, table_sizes[i])"}  # fmt: skip
    assert DlrmSizes.from_dict(info["model"]) == SIZES


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_onnx_matches_eager_in_onnxruntime(tmp_path: Path, exporter: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")  # the torch.export-based ONNX exporter needs it
    sizes = DlrmSizes(**{**SIZES.as_dict(), "table_sizes": (50, 7, 23), "hash_indices": True,
                         "interaction_op": "dot"})  # fmt: skip
    path, model = _checkpoint(tmp_path, sizes)
    out = tmp_path / "export"
    export.main(
        ["--checkpoint", str(path), "--output", str(out), "--batch_size", "16", "--onnx_exporter", exporter]
    )
    assert sorted(p.name for p in out.iterdir()) == ["export_info.json", "model.onnx", "model.pt"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["numerical", "categorical"]
    for batch in (1, 29):
        numerical, categorical = _inputs(sizes, batch, seed=batch)  # ids beyond the rows: hashed in-graph
        got = session.run(None, {"numerical": numerical.numpy(), "categorical": categorical.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(
                torch.from_numpy(got), model(numerical, categorical), atol=1e-5, rtol=0
            )
    info = json.loads((out / "export_info.json").read_text())
    assert info["onnx_opset"] == export.OPSET and info["onnx_exporter"] == exporter
    assert info["checked_with"] == ["torchscript", "onnx"]


def test_bad_input_is_one_error_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "export"
    with pytest.raises(InputError, match="missing.pt"):
        export.main(["--checkpoint", str(tmp_path / "missing.pt"), "--output", str(out)])
    assert not out.exists() and not list(tmp_path.glob(".export.tmp-*"))

    path, _ = _checkpoint(tmp_path)
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(InputError, match="--overwrite"):
        export.main(["--checkpoint", str(path), "--output", str(out), "--format", "torchscript"])
    assert (out / "keep").exists()
    export.main(["--checkpoint", str(path), "--output", str(out), "--format", "torchscript", "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == ["export_info.json", "model.pt"]
    assert not list(tmp_path.glob(".export.*"))


def test_missing_onnx_packages_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _checkpoint(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name)
    )
    with pytest.raises(UsageError, match="pip install onnxscript"):
        export.main(["--checkpoint", str(path), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
