"""Issue 10 for sim.prepare_data: --overwrite never deletes the input, a killed run leaves no workers and
its staging dir is removed by the next run, and bad bytes (invalid UTF-8 in an id, a truncated .gz, a huge
field, a full disk) are one error line naming the file (and line)."""

from __future__ import annotations

import errno
import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.feature_spec import FeatureSpecError
from sim import data as sim_data
from sim import parquet_output
from sim.amazon_meta import read_metadata
from sim.amazon_reviews import read_reviews
from sim.raw_input import PrepareDataError
from sim.synthetic import write_amazon
from tests.sim.test_prepare_data import GOOD, REPO, TINY_REVIEWS, review, run, tiny, write
from tests.sim.test_train_safety import flip_page

FLAGS = ("--max_sequence_length", "3", "--shortest_sequence_for_user", "3")


def _error(*args, **kwargs) -> str:
    """sim.prepare_data's typed error for `run(*args)`: exit status 2, one line (as common.cli.run prints it)."""
    with pytest.raises(PrepareDataError) as info:
        run(*args, **kwargs)
    err = f"error: {info.value}"
    assert info.value.exit_code == 2 and len(err.splitlines()) == 1, err
    return err


def _contents(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_output_that_is_or_contains_the_input_is_refused(tmp_path: Path) -> None:
    raw = tiny(tmp_path)
    before = _contents(tmp_path)
    for out, relation in ((raw, "the same path as"), (tmp_path, "a parent of")):
        err = _error(raw, out, *FLAGS, "--overwrite")
        assert f"--output_path is {relation} the input {raw}" in err, err
    assert _contents(tmp_path) == before  # nothing deleted, no temp dir left
    run(raw, raw / "prepared", *FLAGS, "--overwrite")  # inside the input directory is fine
    assert (raw / "prepared" / "feature_spec.yaml").is_file() and (raw / "reviews_Books.json").is_file()


def test_staging_dirs_of_killed_runs_are_removed_by_the_next_run(tmp_path: Path) -> None:
    raw, out = tiny(tmp_path), tmp_path / "out"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    killed, legacy, running = (tmp_path / f".out.tmp-{name}" for name in ("killed", "legacy", "running"))
    for stale, pid in ((killed, gone.stdout.strip()), (running, os.getpid())):
        (stale / "train").mkdir(parents=True)
        (stale / "owner").write_text(f"{host} {pid}\n")
    legacy.mkdir()  # a run from before owner files, an hour old
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    run(raw, out, *FLAGS)
    assert not killed.exists() and not legacy.exists()
    assert running.exists()  # a live run's staging dir is not ours to delete


def _children(pid: int) -> dict[int, bytes]:
    """Live child processes of `pid` -> their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if entry.name.isdigit() and int(ppid) == pid and state != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_9_of_prepare_data_leaves_no_worker_behind(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "reviews_Books.json", TINY_REVIEWS)
    write(
        raw / "meta_Books.json",
        [f"{{'asin': 'I{k}', 'categories': [['Books', 'C{k % 7}']]}}" for k in range(4000)],
    )
    code = ("import sys, sim.amazon_meta as m; m.BLOCK_BYTES = 2000; from sim.prepare_data import main; "
            "main(sys.argv[1:])")  # small blocks: both workers get some  # fmt: skip
    argv = ["--amazon_dataset_path", str(raw), "--output_path", str(tmp_path / "out"), "--no_progress",
            "--metadata_loader_n_proc", "2", *FLAGS]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stderr=subprocess.DEVNULL)
    children: dict[int, bytes] = {}
    try:
        deadline = time.time() + 60
        while sum(b"spawn_main" in c for c in children.values()) < 2 and parent.poll() is None:
            assert time.time() < deadline, "the metadata pool never started two workers"
            children = _children(parent.pid)  # the workers and multiprocessing's resource tracker
            time.sleep(0.01)
        assert parent.poll() is None, "the run ended before it could be killed"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while any(map(_alive, children)) and time.time() < deadline:
            time.sleep(0.05)
        assert not [p for p in children if _alive(p)], "children outlived their killed parent"
    finally:  # when the test fails, do not leave the orphans running
        parent.kill()
        for pid in [p for p in children if _alive(p)]:
            os.kill(pid, signal.SIGKILL)


def test_invalid_utf8_in_an_id_names_file_and_line(tmp_path: Path) -> None:
    lines = [review(f"U{k}", f"I{k}", k).encode() for k in range(200)]
    lines[5] = lines[5].replace(b'"x"', b'"caf\xe9"')  # reviewerName: a field we do not read, harmless
    lines[150] = lines[150].replace(b"I150", b"I1\xff0")  # today: a new item "I1\\xff0"
    path = tmp_path / "r.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(
        PrepareDataError, match=r"r.json line 151: field 'asin' holds bytes that are not valid UTF-8"
    ):
        read_reviews(path, progress=False, block_bytes=1000)
    lines[150] = lines[150].replace(b"I1\xff0", b"I150")
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert len(read_reviews(path, progress=False, block_bytes=1000)) == 200
    meta = tmp_path / "m.json"
    meta.write_bytes(b"{'asin': 'A', 'title': 'caf\xe9'}\n{'asin': 'B\xff', 'categories': [['Books']]}\n")
    with pytest.raises(
        PrepareDataError, match=r"m.json line 2: the asin holds bytes that are not valid UTF-8"
    ):
        read_metadata(meta, progress=False)


@pytest.mark.parametrize("which", ["reviews", "metadata"])
def test_truncated_gzip_names_the_file(tmp_path: Path, which: str) -> None:
    raw = tiny(tmp_path)
    name = {"reviews": "reviews_Books.json", "metadata": "meta_Books.json"}[which]
    lines = [review(f"U{k % 97}", f"I{k * 7919 % 1009}", k) for k in range(3000)] if which == "reviews" else [
        f"{{'asin': 'I{k}', 'categories': [['Books', 'C{k * 7919 % 1009}']]}}" for k in range(3000)]  # fmt: skip
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    (raw / name).unlink()
    (raw / f"{name}.gz").write_bytes(data[: len(data) // 2])
    err = _error(raw, tmp_path / "out", *FLAGS)
    assert f"{name}.gz: reading the {which} failed" in err and "truncated or corrupt" in err, err


def test_errors_never_echo_a_long_field(tmp_path: Path) -> None:
    huge = "X" * 100_000
    cases = [
        [f"{{'asin': {[huge]!r}}}"],  # not a string
        [f"{{'asin': '{huge}', 'categories': 'Books'}}"],  # bad categories
        [f"{{'asin': '{huge}'}}", f"{{'asin': '{huge}'}}"],  # repeated
    ]
    raw = tmp_path / "raw"
    write(raw / "reviews_Books.json", GOOD)
    for meta in cases:
        write(raw / "meta_Books.json", meta)
        err = _error(raw, tmp_path / "out", *FLAGS)
        assert len(err) < 600 and "characters" in err, err[:300]


def test_full_disk_says_no_space_left_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def full(self, table):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.directory / "part_0.parquet"))

    monkeypatch.setattr(parquet_output.SplitWriter, "write", full)
    raw, out = tiny(tmp_path), tmp_path / "data" / "out"
    err = _error(raw, out, *FLAGS)
    assert f"no space left on device while writing {out}" in err, err
    assert not any((tmp_path / "data").iterdir())


def test_prepared_parquet_pages_carry_checksums(tmp_path: Path) -> None:
    """sim.prepare_data writes page CRCs, so sim.train detects a flipped byte even where it still decodes."""
    syn = write_amazon(tmp_path / "raw", num_users=40, num_items=60, seed=3)
    out = tmp_path / "out"
    run(syn.reviews_path.parent, out, "--shortest_sequence_for_user", "5", "--max_sequence_length", "20")
    flip_page(out / "train" / "part_0.parquet", 0, "item_feat_0_pos")
    spec, schema = sim_data.open_spec(out)
    with pytest.raises(FeatureSpecError, match=r"part_0.parquet\): row group 0 of 1 is corrupt .*CRC"):
        sim_data.load_split(spec, schema, "train", negative_length=0)
