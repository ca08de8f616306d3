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


@pytest.mark.parametrize("where", ["same", "parent", "grandparent"])
def test_output_containing_an_input_is_refused_before_touching_anything(tmp_path: Path, where: str) -> None:
    raw = tmp_path / "a" / "raw"
    raw.mkdir(parents=True)
    (raw / "ratings.csv").write_text("1,2,3\n")
    output = {"same": raw, "parent": raw.parent, "grandparent": tmp_path}[where]
    refused = pytest.raises(ValueError, match="choose an output directory outside the input")
    with refused, output_dir.staging(output, overwrite=True, inputs=[raw / "ratings.csv"]):
        raise AssertionError("the body must not run")
    assert (raw / "ratings.csv").read_text() == "1,2,3\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "ratings.csv", "raw"]
    output_dir.check_output(raw / "out", overwrite=True, inputs=[raw / "ratings.csv"])  # beside: fine


def test_stale_temp_dirs_of_killed_runs_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / ".ds.tmp-abc"
    stale.mkdir()
    (stale / "owner").write_text(f"{__import__('socket').gethostname()} {dead.stdout.strip()}\n")
    live = tmp_path / ".ds.tmp-live"
    live.mkdir()
    (live / "owner").write_text(f"{__import__('socket').gethostname()} {__import__('os').getpid()}\n")
    with output_dir.staging(tmp_path / "ds", overwrite=False) as tmp:
        (tmp / "x").write_text("1")
    assert not stale.exists() and live.exists() and (tmp_path / "ds" / "x").exists()
    assert not (tmp_path / "ds" / "owner").exists()


def test_disk_full_is_one_line_naming_the_output(tmp_path: Path) -> None:
    import errno

    full = pytest.raises(ValueError, match=r"no space left on device while writing .*ds")
    with full, output_dir.staging(tmp_path / "ds", overwrite=False) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "part.bin"))
    assert list(tmp_path.iterdir()) == []
