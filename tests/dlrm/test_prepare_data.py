"""dlrm.prepare_data and dlrm/prepare_dataset.sh on tiny synthetic Criteo logs, against a brute-force reference."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from common import cli
from common.feature_spec import FeatureSpec, smallest_int_dtype
from common.metrics import roc_auc
from dlrm import prepare_pipeline
from dlrm.criteo_vocabulary import CountMerger, log_transform
from dlrm.prepare_data import main, parse_memory
from dlrm.synthetic import write_criteo, write_criteo_days

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dlrm" / "prepare_dataset.sh"
REAL_HEAD = Path("/work/shared/data/criteo/train_head1999.txt")
LINES, THRESHOLD = 600, 2
QUIET = ["--no-progress", "--frequency_threshold", str(THRESHOLD)]
SPLITS = ("train", "test", "validation")


# ---- brute-force reference: per line, in pure Python ----------------------------------------------


def reference(files: list[Path], dataset_type: str, threshold: int) -> tuple[dict, list[int]]:
    """split -> (label bool [N], numerical float16 [N, 13], categorical int64 [N, 26]) and cardinalities."""
    per_file = [[line.split("\t") for line in f.read_text().splitlines()] for f in files]
    counts = [Counter() for _ in range(26)]
    for fields in (f for lines in per_file for f in lines):
        for j in range(26):
            if fields[14 + j]:
                counts[j][int(fields[14 + j], 16)] += 1
    ids = []
    for j in range(26):
        kept = sorted((-c, v) for v, c in counts[j].items() if c >= threshold)  # count desc, value asc
        ids.append({v: i + 1 for i, (_, v) in enumerate(kept)})

    def encode(lines: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        label = np.array([f[0] == "1" for f in lines], bool)
        num = [[math.log(int(x) + 3) if x and int(x) > -3 else 0.0 for x in f[1:14]] for f in lines]
        cat = [[ids[j].get(int(f[14 + j], 16), 0) if f[14 + j] else 0 for j in range(26)] for f in lines]
        return (
            label,
            np.array(num, np.float64).astype(np.float16).reshape(-1, 13),
            np.array(cat).reshape(-1, 26),
        )

    if dataset_type == "terabyte":
        train, last = [f for lines in per_file[:-1] for f in lines], per_file[-1]
        test, validation = last[: len(last) // 2], last[len(last) // 2 :]
    else:
        lines = per_file[0]
        held = len(lines) // 7
        n_train, n_test = len(lines) - held, held // 2
        train, test, validation = (
            lines[:n_train],
            lines[n_train : n_train + n_test],
            lines[n_train + n_test :],
        )
    splits = {"train": encode(train), "test": encode(test), "validation": encode(validation)}
    return splits, [len(m) + 1 for m in ids]


def load(out: Path) -> tuple[FeatureSpec, dict]:
    """The spec and split -> (label, numerical [N, 13], categorical int64 [N, 26]) via FeatureSpec."""
    spec = FeatureSpec.from_yaml(out / "feature_spec.yaml")
    splits = {}
    for split in SPLITS:
        m = spec.read_mapping(split)
        num = np.stack([m[f"num_{i}"] for i in range(13)], axis=1)
        cat = np.stack([m[f"cat_{j}"].astype(np.int64) for j in range(26)], axis=1)
        splits[split] = (np.asarray(m["label"]), num, cat)
    return spec, splits


def rows(split: tuple) -> list[tuple]:
    """Rows as sortable tuples: comparing sorted lists compares multisets."""
    label, num, cat = split
    return sorted(map(tuple, np.column_stack([label, num.astype(np.float64), cat]).tolist()))


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit status, stderr) as `python -m dlrm.prepare_data` gives them (common.cli.run prints a typed
    error as one `error: ...` line)."""
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, args)
    return exit_.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """day_0 .. day_3 (the runs use --days 3, so day_3 must be ignored); medium vocabularies."""
    raw = tmp_path_factory.mktemp("criteo") / "raw"
    write_criteo_days(raw, days=4, lines_per_day=LINES, seed=5, cardinalities=[3, 40, 300, 900] * 6 + [2, 50])
    return raw


@pytest.fixture(scope="module")
def terabyte(days: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "tb"
    main(["--input", str(days), "--output", str(out), "--days", "3", "--workers", "1", *QUIET])
    return out


# ---- semantics ---------------------------------------------------------------------------------------


def test_terabyte_matches_reference(days: Path, terabyte: Path) -> None:
    expected, cards = reference([days / f"day_{d}" for d in range(3)], "terabyte", THRESHOLD)
    spec, got = load(terabyte)
    assert spec.channel("categorical") == [f"cat_{j}" for j in range(26)]
    assert spec.channel("numerical") == [f"num_{i}" for i in range(13)] and spec.channel("label") == ["label"]
    assert [spec.cardinality(f"cat_{j}") for j in range(26)] == cards
    assert min(cards) < 10 and max(cards) > 128  # int8 and int16 id files are both exercised
    for j in range(26):
        assert spec.dtype(f"cat_{j}") == smallest_int_dtype(cards[j])
        assert got["train"][2][:, j].max() < cards[j]
    assert spec.dtype("num_0") == np.float16 and spec.dtype("label") == np.bool_
    assert spec.metadata["rows"] == {"train": 2 * LINES, "test": LINES // 2, "validation": LINES // 2}
    assert spec.metadata["dataset_type"] == "terabyte" and spec.metadata["frequency_threshold"] == THRESHOLD
    for split in ("test", "validation"):  # line order kept
        for ours, theirs in zip(got[split], expected[split]):
            np.testing.assert_array_equal(ours, theirs)
    assert rows(got["train"]) == rows(expected["train"])  # a permutation of the encoded train lines
    assert not np.array_equal(got["train"][2], expected["train"][2])  # ... but shuffled
    assert (got["train"][1] == 0).any() and (got["train"][2] == 0).any()  # missing/rare values exist
    vocab = np.load(terabyte / "vocabulary" / "cat_3.npy")  # id k -> raw value, at index k - 1
    assert len(vocab) == cards[3] - 1 and vocab.dtype == np.uint32


def test_kaggle_matches_reference(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "kaggle" / "train.txt"
    write_criteo(source, num_lines=1000, seed=2)
    out = tmp_path / "out"
    code, err = run(["--input", str(source.parent), "--output", str(out), "--workers", "1", *QUIET], capsys)
    assert code == 0, err
    expected, cards = reference([source], "kaggle", THRESHOLD)
    spec, got = load(out)
    assert spec.metadata["dataset_type"] == "kaggle"
    assert spec.metadata["rows"] == {"train": 858, "test": 71, "validation": 71}  # held out: 1000 // 7
    assert [spec.cardinality(f"cat_{j}") for j in range(26)] == cards
    for split in ("test", "validation"):
        for ours, theirs in zip(got[split], expected[split]):
            np.testing.assert_array_equal(ours, theirs)
    assert rows(got["train"]) == rows(expected["train"])
    assert "rows/s" in err and "peak RSS" in err


def test_numerical_transform_and_threshold_edges() -> None:
    x = np.array([[np.nan, -3.0, -2.0, -1.0, 0.0, 1e6, -10.0, 5.0, 0.5, 2.0**40, 1.0, 7.0, 9.0]])
    got = log_transform(x)
    assert got.dtype == np.float16
    want = [0.0, 0.0, 0.0, math.log(2), math.log(3), math.log(1e6 + 3), 0.0, math.log(8)]
    np.testing.assert_array_equal(got[0, :8], np.array(want).astype(np.float16))
    merger = CountMerger(1)
    merger.min_flush = 150  # merge often: exercises merge_runs on overlapping and new values
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 50, rng.integers(1, 200)).astype(np.uint32) for _ in range(40)]
    for piece in pieces:
        keys, counts = np.unique(piece, return_counts=True)
        merger.add(0, (keys, counts.astype(np.int64)))
    keys, counts = merger.result(0)
    truth = Counter(np.concatenate(pieces).tolist())
    assert dict(zip(keys.tolist(), counts.tolist())) == truth and np.all(np.diff(keys.astype(np.int64)) > 0)
    assert (
        parse_memory("8GB") == 8 << 30 and parse_memory("512m") == 512 << 20 and parse_memory("1000") == 1000
    )


@pytest.mark.parametrize("threshold", [1, 3])
def test_prepared_features_keep_the_click_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture, threshold
) -> None:
    """On Criteo-shaped data (heavy tails, I2 negatives, empty cells, Zipf vocabularies, interactions) the
    true click logit recomputed from what prepare_data wrote (ln(x + 3) inverted, ids -> raw values through
    vocabulary/, id 0 -> missing) ranks the test rows as well as the generator's own probabilities: the
    transform and the OOV bucket lose no signal a model could use, so a gap to the oracle is the model's."""
    syn = write_criteo(tmp_path / "train.txt", num_lines=7000, seed=6)
    code, err = run(["--input", str(syn.path), "--output", str(tmp_path / "out"), "--workers", "1",
                     "--no-progress", "--frequency_threshold", str(threshold)], capsys)  # fmt: skip
    assert code == 0, err
    _, got = load(tmp_path / "out")
    label, num, cat = got["test"]
    test = slice(6000, 6500)  # Kaggle split: the held-out last 1000 lines, test first
    np.testing.assert_array_equal(label, syn.labels[test] == 1)
    value = np.exp(num.astype(np.float64)) - 3
    integers = np.where(num == 0, np.nan, value)  # ln(x + 3) = 0: missing (or x <= -2: I2's two lowest)
    raw = np.full(cat.shape, -1, np.int64)
    for j in range(26):
        vocab = np.load(tmp_path / "out" / "vocabulary" / f"cat_{j}.npy").astype(np.int64)
        raw[:, j] = np.where(cat[:, j] > 0, vocab[np.maximum(cat[:, j] - 1, 0)], -1)
    kept = syn.logits(integers, raw)
    true = np.log(syn.probabilities[test] / (1 - syn.probabilities[test]))
    labels = torch.from_numpy(label.astype(np.float32))
    oracle = float(roc_auc(torch.from_numpy(true), labels))
    ceiling = float(roc_auc(torch.from_numpy(kept), labels))
    if threshold == 1:  # nothing dropped: only I2 = -2/-3 read as missing; float16 keeps heavy tails
        assert np.corrcoef(kept, true)[0, 1] > 0.995 and abs(ceiling - oracle) < 0.005
    else:  # rare values -> id 0 costs little: the generator's rare values carry little signal, as real ones
        assert np.corrcoef(kept, true)[0, 1] > 0.9 and ceiling > oracle - 0.03, (ceiling, oracle)


# ---- shuffle ---------------------------------------------------------------------------------------


def test_seed_and_out_of_core_buckets(days: Path, terabyte: Path, tmp_path: Path) -> None:
    base = ["--input", str(days), "--days", "3", "--workers", "1", *QUIET]
    _, first = load(terabyte)
    same = main([*base, "--output", str(tmp_path / "same")])
    main([*base, "--output", str(tmp_path / "other"), "--seed", "7"])
    small = main([*base, "--output", str(tmp_path / "small"), "--memory_limit", "40KB"])
    assert same["buckets"] == 1 and small["buckets"] >= 4  # 40 KB forces several shuffle buckets
    _, again = load(tmp_path / "same")
    for split in SPLITS:
        for ours, theirs in zip(first[split], again[split]):
            np.testing.assert_array_equal(ours, theirs)  # reproducible with the seed
    for name in ("other", "small"):
        _, got = load(tmp_path / name)
        assert rows(got["train"]) == rows(first["train"])  # same multiset of rows ...
        assert not np.array_equal(got["train"][2], first["train"][2])  # ... in another order
        for split in ("test", "validation"):
            for ours, theirs in zip(got[split], first[split]):
                np.testing.assert_array_equal(ours, theirs)


def test_workers_give_identical_bytes(days: Path, tmp_path: Path) -> None:
    base = ["--input", str(days), "--days", "3", "--memory_limit", "60KB", *QUIET]
    one = main([*base, "--output", str(tmp_path / "one"), "--workers", "1"])
    main([*base, "--output", str(tmp_path / "two"), "--workers", "2"])
    assert one["buckets"] > 1
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * 28 + 26
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


# ---- bad input and interrupted runs ----------------------------------------------------------------


def _corrupt(lines: list[str], case: str) -> tuple[list[str], str]:
    """Break line 301 (1-based) of a day file; returns the lines and the expected message part."""
    fields = lines[300].split("\t")
    if case == "fields":
        fields = fields[:39]
        expect = "expected 40 tab-separated fields"
    elif case == "integer":
        fields[3] = "12a"
        expect = "integer feature I3 (num_2) is '12a'"
    elif case == "hex":
        fields[20] = "xyz00000"
        expect = "categorical feature C7 (cat_6) is 'xyz00000', expected 8 hex digits"
    elif case == "label":
        fields[0] = "2"
        expect = "label is '2', expected 0 or 1"
    else:
        fields = []
        expect = "found an empty line"
    return [*lines[:300], "\t".join(fields), *lines[301:]], expect


@pytest.mark.parametrize("case", ["fields", "integer", "hex", "label", "empty line"])
def test_bad_line_names_file_and_line(
    case: str, days: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for d in range(3):
        lines = (days / f"day_{d}").read_text().splitlines()
        if d == 1:
            lines, expect = _corrupt(lines, case)
        (raw / f"day_{d}").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    # 30 KB segments: line 301 is deep inside a later segment, so its number must add up across segments
    workers = "2" if case == "integer" else "1"  # one case through the process pool
    args = [
        "--input",
        str(raw),
        "--output",
        str(out),
        "--days",
        "3",
        "--memory_limit",
        "360KB",
        "--workers",
        workers,
    ]
    code, err = run([*args, *QUIET], capsys)
    assert code == 2
    assert err.startswith(f"error: {raw / 'day_1'} line 301: ") and expect in err, err
    assert "Traceback" not in err and not out.exists() and os.listdir(tmp_path) == ["raw"]


def test_bad_inputs_name_the_file(days: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    quiet = [*QUIET, "--workers", "1"]
    code, err = run(["--input", str(days), "--output", str(out), "--days", "5", *quiet], capsys)
    assert code == 2 and f"error: {days / 'day_4'}: missing day" in err and "--days 5" in err
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "day_0").write_bytes((days / "day_0").read_bytes())
    (raw / "day_1").write_text("")
    code, err = run(["--input", str(raw), "--output", str(out), "--days", "2", *quiet], capsys)
    assert code == 2 and f"error: {raw / 'day_1'}: file is empty" in err
    (raw / "day_1").write_text((days / "day_1").read_text().splitlines()[0] + "\n")
    code, err = run(["--input", str(raw), "--output", str(out), "--days", "2", *quiet], capsys)
    assert code == 2 and "test and validation halves need at least 2" in err
    code, err = run(["--input", str(tmp_path / "nowhere"), "--output", str(out), *quiet], capsys)
    assert code == 2 and "input does not exist" in err
    kaggle = raw / "train.txt"
    code, err = run(["--input", str(raw), "--output", str(out), "--dataset_type", "kaggle", *quiet], capsys)
    assert code == 2 and f"error: {raw}: no train.txt (Kaggle) here" in err
    code, err = run(["--input", str(tmp_path), "--output", str(out), *quiet], capsys)
    assert code == 2 and "no day_0 .. day_23 (Terabyte) and no train.txt" in err
    kaggle.write_text("".join((days / "day_0").read_text().splitlines(keepends=True)[:13]))
    code, err = run(["--input", str(kaggle), "--output", str(out), *quiet], capsys)
    assert code == 2 and f"error: {kaggle}: 13 lines" in err and "at least 14 lines" in err
    code, err = run(
        ["--input", str(kaggle), "--output", str(out), "--dataset_type", "terabyte", *quiet], capsys
    )
    assert code == 2 and "is a directory holding day_0" in err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["raw"]


def test_existing_output_needs_overwrite(days: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["--input", str(days), "--output", str(out), "--days", "3", "--workers", "1", *QUIET]
    code, err = run(args, capsys)
    assert code == 2 and "--overwrite" in err and (out / "keep.txt").exists()
    code, _ = run([*args, "--overwrite"], capsys)
    assert code == 0 and not (out / "keep.txt").exists() and (out / "feature_spec.yaml").exists()


def test_interrupted_run_then_rerun(
    days: Path, terabyte: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    args = [
        "--input",
        str(days),
        "--output",
        str(out),
        "--days",
        "3",
        "--workers",
        "1",
        "--memory_limit",
        "200KB",
        *QUIET,
    ]
    calls = []
    real = prepare_pipeline.encode_segment

    def interrupted(task):  # Ctrl-C in the middle of pass 2
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(prepare_pipeline, "encode_segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert len(calls) == 3 and os.listdir(tmp_path) == []  # nothing published, temp dir removed
    monkeypatch.setattr(prepare_pipeline, "encode_segment", real)

    # A run killed with SIGKILL leaves its temp dir: the next run removes it (its owner pid is gone).
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / ".out.tmp-killed"
    (stale / "train").mkdir(parents=True)
    (stale / "owner").write_text(f"{os.uname().nodename} {dead.stdout.strip()}\n")
    main(args)
    assert os.listdir(tmp_path) == ["out"]
    _, got = load(out)
    _, want = load(terabyte)
    assert rows(got["train"]) == rows(want["train"])


def test_help_documents_every_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--input", "--output", "--dataset_type", "--days", "--frequency_threshold", "--workers",
                 "--memory_limit", "--seed", "--overwrite", "--progress"):  # fmt: skip
        assert flag in text
    for default in (
        "default: 'auto'",
        "default: 24",
        "default: 15",
        "default: '8GB'",
        "default: 0)",
        "default: True",
        "default: False",
    ):
        assert default in text


# ---- prepare_dataset.sh and the real Criteo head -----------------------------------------------------


def test_prepare_dataset_script(days: Path, tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    env = {**os.environ, "PYTHON": sys.executable}

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    out = tmp_path / "dlrm"
    done = script(str(days), str(out), "--days", "3", "--workers", "1", *QUIET)
    assert done.returncode == 0, done.stderr
    assert FeatureSpec.from_yaml(out / "feature_spec.yaml").metadata["rows"]["train"] == 2 * LINES
    assert "already prepared" in script(str(days), str(out)).stdout
    missing = script(str(tmp_path / "nowhere"), str(tmp_path / "x"))
    assert (
        missing.returncode == 2
        and "ailab.criteo.com" in missing.stderr
        and "kaggle" in missing.stderr.lower()
    )
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "day_0.gz").write_bytes(b"")
    packed = script(str(tmp_path / "gz"), str(tmp_path / "x"))
    assert packed.returncode == 2 and "decompress" in packed.stderr
    assert script().returncode == 2 and not (tmp_path / "x").exists()


@pytest.mark.skipif(not REAL_HEAD.is_file(), reason=f"{REAL_HEAD} (real Criteo lines) is not available")
def test_real_criteo_lines(tmp_path: Path) -> None:
    out = tmp_path / "real"
    main(["--input", str(REAL_HEAD), "--output", str(out), "--workers", "1", *QUIET])
    expected, cards = reference([REAL_HEAD], "kaggle", THRESHOLD)
    spec, got = load(out)
    assert spec.metadata["rows"] == {"train": 1714, "test": 142, "validation": 143}
    assert [spec.cardinality(f"cat_{j}") for j in range(26)] == cards
    for ours, theirs in zip(got["test"], expected["test"]):
        np.testing.assert_array_equal(ours, theirs)
    assert rows(got["train"]) == rows(expected["train"])
    assert 0.1 < got["train"][0].mean() < 0.5 and np.isfinite(got["train"][1].astype(np.float32)).all()
