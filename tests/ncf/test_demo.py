"""python -m ncf.demo: its own flags are a config dataclass; every other flag goes on to ncf.train."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.logging import read_log
from ncf import demo


def test_other_flags_go_to_train_after_the_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(demo, "run", lambda *args: calls.append(args) or {"hr@10": 0.5})
    argv = [
        "--users",
        "10",
        "--epochs",
        "2",
        "--seed",
        "4",
        "--factors",
        "8",
        "--log_path",
        str(tmp_path / "l"),
    ]
    assert demo.main([*argv, "--workdir", str(tmp_path / "w")]) == {"hr@10": 0.5}
    work, users, items, seed, device, train_args = calls[0]
    assert (work, users, items, seed, device) == (tmp_path / "w", 10, 1500, 4, "auto")
    assert train_args == ["--config", str(demo.PRESET), "--epochs", "2", "--factors", "8"]  # ours win: last
    params = next(r["data"] for r in read_log(tmp_path / "l") if r.get("step") == "PARAMETER")
    assert params["users"] == 10 and params["train_args"] == ["--epochs", "2", "--factors", "8"]
    demo.main(["--train_config", str(tmp_path / "p.yaml")])
    assert calls[1][-1] == ["--config", str(tmp_path / "p.yaml")]
