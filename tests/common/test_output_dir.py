from __future__ import annotations

from pathlib import Path

import pytest

from common import output_dir


def test_staging_publishes_only_complete_directories(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with output_dir.staging(out, overwrite=False) as tmp:
        (tmp / "a").write_text("1")
        assert not out.exists()  # invisible until complete
    assert (out / "a").read_text() == "1"
    with pytest.raises(RuntimeError), output_dir.staging(out, overwrite=True) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("killed half way")
    assert (out / "a").read_text() == "1"  # old dataset untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp dir left behind
    with output_dir.staging(out, overwrite=True) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["b"]


def test_existing_output_is_an_error_with_the_callers_class(tmp_path: Path) -> None:
    class MyError(ValueError):
        pass

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "x").write_text("")
    with pytest.raises(MyError, match="--output_path directory exists and is not empty; pass --overwrite"):
        output_dir.check_output(tmp_path / "ds", False, MyError, "--output_path")
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        output_dir.check_output(tmp_path / "f", True)
