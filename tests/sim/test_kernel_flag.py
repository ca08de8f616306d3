"""sim.train/evaluate --kernels: logged, honoured (no oneDNN product or hand-written backward under
`reference`), the same results within float rounding, and free to change on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import linear as linear_mod
from common.logging import read_log
from sim import evaluate as sim_evaluate
from sim import layers, train
from tests.sim.conftest import TINY


def _train(dataset: Path, tmp: Path, *flags: str) -> dict:
    return train.main(["--dataset_dir", str(dataset), "--seed", "3", "--results_dir", str(tmp),
                       "--save_checkpoint_path", str(tmp / "ck.pt"), "--model_type", "sim", *TINY, *flags])  # fmt: skip


def test_reference_kernels_match_auto_and_may_change_on_resume(small, tmp_path: Path, spy) -> None:
    fast = [
        spy(linear_mod._OneDnnLinear, "apply"),
        spy(layers._Gather, "apply"),
        spy(layers._DotAttention, "apply"),
    ]
    auto = _train(small.path, tmp_path / "auto", "--epochs", "1")
    assert all(c["n"] > 0 for c in fast[1:]) and (fast[0]["n"] > 0) == linear_mod.onednn_available()
    for c in fast:
        c["n"] = 0
    ref = _train(small.path, tmp_path / "ref", "--epochs", "1", "--kernels", "reference")
    assert [c["n"] for c in fast] == [0, 0, 0]
    for key in ("train_loss", "test_loss", "test_auc"):
        assert ref[key] == pytest.approx(auto[key], rel=1e-4), key
    ck = str(tmp_path / "ref" / "ck.pt")
    resumed = _train(small.path, tmp_path / "ref", "--epochs", "2", "--load_checkpoint_path", ck)
    params = [r["data"] for r in read_log(tmp_path / "ref" / "log.json") if r.get("step") == "PARAMETER"]
    assert [p["kernels"] for p in params] == ["reference", "auto"] and resumed["epochs"] == 2
    for c in fast:
        c["n"] = 0
    evaluated = sim_evaluate.main(["--dataset_dir", str(small.path), "--checkpoint", str(tmp_path / "auto" / "ck.pt"),
                                   "--kernels", "reference", "--device", "cpu"])  # fmt: skip
    assert [c["n"] for c in fast] == [0, 0, 0]
    assert evaluated["test_auc"] == pytest.approx(auto["test_auc"], rel=1e-5)
