"""dlrm.train/evaluate --kernels: logged, honoured (no oneDNN product under `reference`), the same results
within float rounding, and free to change on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import linear as linear_mod
from common.logging import read_log
from dlrm import evaluate as dlrm_evaluate
from dlrm import train
from tests.dlrm.conftest import TINY


def _train(dataset: Path, tmp: Path, *flags: str) -> dict:
    return train.main(["--dataset", str(dataset), "--log_path", str(tmp / "log.json"),
                       "--save_checkpoint_path", str(tmp / "ck.pt"), *TINY, *flags])  # fmt: skip


def test_reference_kernels_match_auto_and_may_change_on_resume(planted, tmp_path: Path, spy) -> None:
    dataset, _ = planted
    onednn = spy(linear_mod._OneDnnLinear, "apply")
    auto = _train(dataset, tmp_path / "auto", "--max_steps", "30")
    assert (onednn["n"] > 0) == linear_mod.onednn_available()
    onednn["n"] = 0
    ref = _train(dataset, tmp_path / "ref", "--max_steps", "30", "--kernels", "reference")
    assert onednn["n"] == 0
    for key in ("training_loss", "auc", "best_validation_loss"):
        assert ref[key] == pytest.approx(auto[key], rel=1e-4, abs=1e-6), key
    resumed = _train(dataset, tmp_path / "ref", "--max_steps", "40")  # from step 30 under auto: allowed
    params = [r["data"] for r in read_log(tmp_path / "ref" / "log.json") if r.get("step") == "PARAMETER"]
    assert [p["kernels"] for p in params] == ["reference", "auto"] and resumed["steps"] == 40
    onednn["n"] = 0
    evaluated = dlrm_evaluate.main(["--checkpoint", str(tmp_path / "auto" / "ck.pt"), "--dataset", str(dataset),
                                    "--kernels", "reference", "--no-progress"])  # fmt: skip
    assert onednn["n"] == 0
    assert evaluated["auc"] == pytest.approx(auto["auc"], rel=1e-5)
