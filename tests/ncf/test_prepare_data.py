"""ncf.prepare_data and ncf/prepare_dataset.sh on tiny synthetic / hand-written MovieLens files."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest

from common import cli
from common.feature_spec import FeatureSpec
from ncf.leave_one_out import build_dataset, sample_test_negatives
from ncf.prepare_data import PrepareConfig, main
from ncf.ratings_csv import PrepareDataError
from ncf.ratings_files import FORMATS, read_ratings
from ncf.synthetic import write_movielens

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ncf" / "prepare_dataset.sh"
SMALL = {"num_users": 40, "num_items": 30, "ratings_per_user": (8, 25), "seed": 3}
OUT_FILES = ("train_data_0.npy", "train_data_1.npy", "test_data_0.npy", "test_data_1.npy")

# Hand-built: user 30 has 2 ratings (dropped with --min_ratings 3) and the only copy of item 500.
# User 10: (100, ts 5) and (200, ts 5) tie as latest; the later line (200) is the test item; the later
# copy of (10, 100) at ts 8 is a duplicate and goes, so it is not the test item. User 20: (100, ts 7)
# and (400, ts 7) tie, 400 (later line) is the test item.
TINY = """userId,movieId,rating,timestamp
30,500,5.0,9
10,100,4.0,5
20,200,3.0,1
10,300,2.0,3
20,100,1.0,7
10,200,4.0,5
20,300,2.0,2
10,100,1.0,8
30,300,5.0,1
20,400,3.0,7
"""


def prep(source: Path, output: Path, *flags: str) -> dict[str, float]:
    return main(["--input", str(source), "--output", str(output), *flags])


def run_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit status, stderr) of the command line `python -m ncf.prepare_data *args` (in process)."""
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, args)
    return exit_.value.code, capsys.readouterr().err


def load(directory: Path) -> dict[str, np.ndarray]:
    return {name: np.load(directory / name) for name in (*OUT_FILES, "user_ids.npy", "item_ids.npy")}


# ---- layouts ---------------------------------------------------------------------------------------


def _inputs(tmp_path: Path) -> dict[str, list[str]]:
    """The same ratings in every supported layout / container -> the main() flags that read them."""
    paths = {
        layout: write_movielens(tmp_path / layout, layout=layout, **SMALL).path
        for layout in ("ml-20m", "ml-1m", "ml-100k", "csv")
    }
    with_header = tmp_path / "header" / "events.csv"
    with_header.parent.mkdir()
    with_header.write_text("user,item,timestamp\n" + paths["csv"].read_text())
    nested = tmp_path / "nested" / "ml-20m"
    nested.mkdir(parents=True)
    (nested / "ratings.csv").write_bytes(paths["ml-20m"].read_bytes())
    (nested / "movies.csv").write_text("movieId,title\n")
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(paths["ml-1m"], "ml-1m/ratings.dat")
        zf.writestr("ml-1m/README", "not ratings")
    return {
        "ml-20m csv": ["--input", str(paths["ml-20m"])],
        "ml-1m dat": ["--input", str(paths["ml-1m"])],
        "ml-100k u.data": ["--input", str(paths["ml-100k"]), "--format", "ml-100k"],
        "csv no header": ["--input", str(paths["csv"]), "--format", "csv"],
        "csv header": ["--input", str(with_header), "--format", "csv", "--header"],
        "directory": ["--input", str(tmp_path / "nested")],
        "zip": ["--input", str(archive)],
    }


def test_every_layout_gives_the_same_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = {}
    for name, args in _inputs(tmp_path).items():
        out = tmp_path / "out" / name.replace(" ", "_")
        counts = main([*args, "--output", str(out), "--valid_negative", "7", "--min_ratings", "10"])
        results[name] = load(out)
        assert counts["test_rows"] == counts["users"] * 8
    reference = results.pop("ml-20m csv")
    for name, arrays in results.items():
        for key, value in reference.items():
            np.testing.assert_array_equal(arrays[key], value, err_msg=f"{name}: {key}")
    err = capsys.readouterr().err
    assert "ml-dat layout" in err and "ml-100k layout" in err and "ml-csv layout" in err
    assert err.count("prepared ") == 7


def test_headerless_csv_keeps_its_first_row(tmp_path: Path) -> None:
    """DLE's load_unknown dropped line 1 of every BYO csv; the default here is no header."""
    path = write_movielens(tmp_path, layout="csv", **SMALL).path
    ratings = read_ratings(path, "csv")
    assert len(ratings.user) == len(path.read_text().splitlines())
    first = [int(v) for v in path.read_text().splitlines()[0].split(",")]
    assert [ratings.user[0], ratings.item[0], ratings.timestamp[0]] == first


def test_ratings_dat_matches_a_plain_parse(tmp_path: Path) -> None:
    path = write_movielens(tmp_path, layout="ml-1m", **SMALL).path
    expected = np.array([line.split("::") for line in path.read_text().splitlines()], np.int64)
    ratings = read_ratings(path)
    assert ratings.layout == "ml-dat" and ratings.timestamp.dtype == np.int64
    np.testing.assert_array_equal(
        np.stack([ratings.user, ratings.item, ratings.timestamp], 1), expected[:, [0, 1, 3]]
    )


# ---- semantics on a hand-built example ------------------------------------------------------------


def test_tiny_example_exact(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(TINY)
    dataset = build_dataset(read_ratings(tmp_path / "ratings.csv"), min_ratings=3)
    np.testing.assert_array_equal(dataset.user_ids, [10, 20])  # first appearance, after the filter
    np.testing.assert_array_equal(dataset.item_ids, [100, 200, 300, 400])  # 500 left with user 30
    np.testing.assert_array_equal(dataset.train, [[0, 2], [0, 0], [1, 1], [1, 2], [1, 0]])  # user, then time
    np.testing.assert_array_equal(dataset.test, [[0, 1], [1, 3]])
    assert (dataset.dropped_users, dataset.duplicates) == (1, 1)

    counts = prep(tmp_path, tmp_path / "out", "--min_ratings", "3", "--valid_negative", "5")
    assert [counts[k] for k in ("users", "items", "train_rows", "test_rows")] == [2, 4, 5, 12]
    out = load(tmp_path / "out")
    test = out["test_data_0.npy"].reshape(2, 6, 2)
    np.testing.assert_array_equal(test[:, 0], [[0, 1], [1, 3]])  # positive first
    np.testing.assert_array_equal(test[:, :, 0], [[0] * 6, [1] * 6])
    assert set(test[0, 1:, 1].tolist()) <= {1, 3}  # user 0 trained on 0 and 2
    np.testing.assert_array_equal(test[1, 1:, 1], [3] * 5)  # only 3 is left: its own held-out item
    np.testing.assert_array_equal(out["test_data_1.npy"], np.tile([1, 0, 0, 0, 0, 0], 2))
    np.testing.assert_array_equal(out["train_data_1.npy"], np.ones(5, np.float32))
    assert out["train_data_0.npy"].dtype == np.int32 and out["test_data_1.npy"].dtype == np.float32


def test_feature_spec_round_trip(tmp_path: Path) -> None:
    write_movielens(tmp_path / "raw", layout="ml-20m", **SMALL)
    prep(tmp_path / "raw", tmp_path / "out", "--valid_negative", "9", "--min_ratings", "12")
    spec = FeatureSpec.from_yaml(tmp_path / "out" / "feature_spec.yaml")
    out = load(tmp_path / "out")
    users, items = spec.cardinality("user"), spec.cardinality("item")
    assert users == len(out["user_ids.npy"]) and items == len(out["item_ids.npy"])
    assert spec.channel("user_ch") == ["user"] and spec.channel("label_ch") == ["label"]
    assert spec.dtype("user") == np.int32 and spec.dtype("label") == np.float32
    meta = spec.metadata
    assert meta["test_samples_per_series"] == 10 and meta["valid_negative"] == 9 and meta["min_ratings"] == 12
    assert (
        meta["layout"] == "ml-csv"
        and meta["users"] == users
        and meta["train_rows"] == len(out["train_data_0.npy"])
    )
    assert np.load(tmp_path / "out" / meta["user_ids"]).dtype == np.int64
    for mapping in ("train", "test"):
        arrays = spec.read_mapping(mapping)
        np.testing.assert_array_equal(arrays["user"], out[f"{mapping}_data_0.npy"][:, 0])
        np.testing.assert_array_equal(arrays["item"], out[f"{mapping}_data_0.npy"][:, 1])
        np.testing.assert_array_equal(arrays["label"], out[f"{mapping}_data_1.npy"])
        assert arrays["user"].max() < users and arrays["item"].max() < items and arrays["item"].min() >= 0
    assert len(spec.read_mapping("test")["label"]) % meta["test_samples_per_series"] == 0
    # raw ids round-trip: every (raw user, raw item) of train exists in the raw file
    raw = read_ratings(tmp_path / "raw")
    raw_pairs = set(zip(raw.user.tolist(), raw.item.tolist()))
    train = out["train_data_0.npy"]
    mapped = zip(out["user_ids.npy"][train[:, 0]].tolist(), out["item_ids.npy"][train[:, 1]].tolist())
    assert set(mapped) <= raw_pairs


# ---- test negatives --------------------------------------------------------------------------------


def _random_split(num_users: int = 50, num_items: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for user in range(num_users):  # test helper only: tiny loop over users
        items = rng.permutation(num_items)[: rng.integers(2, num_items // 2)]
        train += [[user, item] for item in items[1:]]
        test.append([user, items[0]])
    return np.array(train, np.int32), np.array(test, np.int32)


def test_negatives_exclude_train_positives_and_are_seeded() -> None:
    train, test = _random_split()
    negatives = sample_test_negatives(train, test[:, 0], 12, 40, seed=5)
    assert negatives.shape == (50, 40) and negatives.dtype == np.int32
    assert negatives.min() >= 0 and negatives.max() < 12
    positives = set(map(tuple, train.tolist()))
    assert not any((u, j) in positives for u, row in enumerate(negatives.tolist()) for j in row)
    np.testing.assert_array_equal(negatives, sample_test_negatives(train, test[:, 0], 12, 40, seed=5))
    assert not np.array_equal(negatives, sample_test_negatives(train, test[:, 0], 12, 40, seed=6))
    # the held-out item is NOT excluded (reference semantics): with <= 7 allowed items and 40 draws
    # it shows up for nearly every user (P(miss) <= (6/7)^40 < 0.3%)
    held_out_drawn = (negatives == test[:, 1:2]).any(axis=1)
    assert held_out_drawn.mean() > 0.9
    # uniform over the allowed items: each allowed item's share is 1/allowed (loose 5-sigma bound)
    allowed = 12 - np.bincount(train[:, 0], minlength=50)
    share = (negatives == test[:, 1:2]).mean(axis=1) * allowed
    assert abs(share.mean() - 1.0) < 5 * np.sqrt((allowed - 1).mean() / (40 * 50))


def test_negatives_zero_saturated_and_full_users() -> None:
    train, test = _random_split()
    assert sample_test_negatives(train, test[:, 0], 12, 0).shape == (50, 0)
    # user 0 trained on all items but item 7: max_rounds=1 forces the exact complement fallback
    dense = np.array([[0, j] for j in range(12) if j != 7], np.int32)
    negatives = sample_test_negatives(dense, np.array([0]), 12, 30, seed=1, max_rounds=1)
    np.testing.assert_array_equal(negatives, np.full((1, 30), 7))
    full = np.array([[0, j] for j in range(12)], np.int32)
    with pytest.raises(PrepareDataError, match="user 0 trained on all 12 items"):
        sample_test_negatives(full, np.array([0]), 12, 3)


def test_zero_valid_negatives(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(TINY)
    counts = prep(tmp_path / "ratings.csv", tmp_path / "out", "--min_ratings", "3", "--valid_negative", "0")
    out = load(tmp_path / "out")
    assert counts["test_rows"] == 2
    np.testing.assert_array_equal(out["test_data_0.npy"], [[0, 1], [1, 3]])
    np.testing.assert_array_equal(out["test_data_1.npy"], [1, 1])
    assert (
        FeatureSpec.from_yaml(tmp_path / "out" / "feature_spec.yaml").metadata["test_samples_per_series"] == 1
    )


# ---- errors ----------------------------------------------------------------------------------------

HEADER = "userId,movieId,rating,timestamp\n"
GOOD = "".join(f"{u},{i},4.0,{100 + i}\n" for u in (1, 2) for i in range(1, 4))


# (file name, content, extra flags, substrings of the one error line)
# fmt: off
BAD_INPUTS = [
    ("ratings.csv", HEADER + "1,1,4.0,5\n1,2,4.0\n1,3,x,7\n", [], ["line 3", "expected 4 fields", "found 3", "'1,2,4.0'"]),
    ("ratings.csv", HEADER + "1,1,4.0,5\nabc,2,4.0,6\n1,3,4.0\n", [], ["line 3", "user 'abc' is not an integer"]),
    ("ratings.csv", HEADER + GOOD + "2,7,4.0,12.5\n", [], ["line 8", "timestamp '12.5' is not an integer"]),
    ("ratings.dat", "1::1::4::5\n1::2::4::6\n1::3::4\n", [], ["line 3", "separated by '::'", "'1::3::4'"]),
    ("u.data", "1\t1\t4\t5\n1\t2.5\t4\t6\n", ["--format", "ml-100k"], ["line 2", "item '2.5' is not an integer"]),
    ("events.csv", "1,1,5\n1,2\n", ["--format", "csv"], ["line 2", "expected 3 fields"]),
    ("events.csv", "user,item,timestamp\n1,1,5\n", ["--format", "csv"], ["line 1", "user 'user' is not an integer"]),
    ("ratings.csv", "", [], ["file is empty"]),
    ("ratings.csv", HEADER, [], ["only a header"]),
    ("data.txt", "1 2 3 4\n", [], ["unknown layout", "looked for", "--format csv"]),
    ("ratings.csv", "user,item\n1,2\n", ["--format", "ml-csv"], ["line 1", "expected the header"]),
    ("ratings.csv", HEADER + GOOD + "3,1,4.0,1\n", ["--min_ratings", "1"], ["user 3 has a single", "--min_ratings"]),
    ("ratings.csv", HEADER + "4,1,4.0,1\n4,1,5.0,2\n" + GOOD, ["--min_ratings", "2"], ["user 4 has a single", "2 rating(s)"]),
    ("ratings.csv", HEADER + GOOD, [], ["no user left after filtering", "--min_ratings"]),
]
# fmt: on


@pytest.mark.parametrize(("name", "content", "extra", "expected"), BAD_INPUTS)
def test_bad_input_is_one_clear_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    name: str,
    content: str,
    extra: list[str],
    expected: list[str],
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_text(content)
    out = tmp_path / "out" / "dataset"
    code, err = run_main(["--input", str(src / name), "--output", str(out), *extra], capsys)
    lines = err.strip().splitlines()  # step logs may precede it; then exactly one error line, last
    assert code == 2 and lines[-1].startswith("error: ") and "Traceback" not in err
    assert sum(line.startswith("error") for line in lines) == 1
    assert str(src / name) in err
    for text in expected:
        assert text in err
    assert not (tmp_path / "out").exists()  # nothing created, not even the parent


def test_input_containers_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "a" / "x" / "ratings.csv").write_text(HEADER + GOOD)
    (tmp_path / "a" / "y").mkdir()
    (tmp_path / "a" / "y" / "u.data").write_text("1\t1\t4\t5\n")
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("b/movies.csv", "movieId\n")
    (tmp_path / "c.zip").write_text("not a zip")
    for path, message in [
        ("a", "several ratings files"),
        ("b.zip", "looked for ratings.csv, ratings.dat, u.data"),
        ("c.zip", "not a valid zip"),
        ("missing", "does not exist"),
    ]:
        code, err = run_main(["--input", str(tmp_path / path), "--output", str(tmp_path / "out")], capsys)
        assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "ratings.csv").write_text(TINY)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    args = ["--input", str(tmp_path / "ratings.csv"), "--output", str(out), "--min_ratings", "3"]
    code, err = run_main(args, capsys)
    assert code == 2 and "--overwrite" in err and str(out) in err
    assert (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ratings.csv"]
    assert run_main([*args, "--overwrite"], capsys)[0] == 0
    assert not (out / "keep.txt").exists() and (out / "feature_spec.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ratings.csv"]  # no temp or old copy
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty directory is simply filled
    assert run_main([*args[:2], "--output", str(empty), "--min_ratings", "3"], capsys)[0] == 0


def test_failure_while_writing_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ratings.csv").write_text(TINY)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FeatureSpec, "to_yaml", fail)
    args = ["--input", str(tmp_path / "ratings.csv"), "--output", str(tmp_path / "out"), "--min_ratings", "3"]
    code, err = run_main(args, capsys)
    assert code == 2 and f"no space left on device while writing {tmp_path / 'out'}" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()[-1]) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv"]


def test_padded_values_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("1, 10, 5\n 2 ,20,6\r\n")
    ratings = read_ratings(path, "csv")
    np.testing.assert_array_equal(ratings.user, [1, 2])
    np.testing.assert_array_equal(ratings.item, [10, 20])


def test_help_documents_every_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    flags = ["--input", "--output", "--format", "--header", "--valid_negative", "--seed", "--min_ratings"]
    for flag in [*flags, "--overwrite"]:
        assert flag in out
    for default in (
        "default: 100",
        "default: 1)",
        "default: 20",
        "default: 'auto'",
        "no header line) (default: False)",
    ):
        assert default in out
    assert typing.get_args(typing.get_type_hints(PrepareConfig)["format"]) == FORMATS  # --format's choices


# ---- prepare_dataset.sh ----------------------------------------------------------------------------


def _script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "NCF_DATA_URL": f"file://{tmp_path}/no-such-mirror"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_prepare_dataset_script(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert (
        SCRIPT.read_text().startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in SCRIPT.read_text()
    )
    raw, out = tmp_path / "raw", tmp_path / "cache" / "ml-100k"
    data = write_movielens(tmp_path / "src", layout="ml-100k", **SMALL).path
    raw.mkdir()
    with zipfile.ZipFile(raw / "ml-100k.zip", "w") as zf:  # present: no download is attempted
        zf.write(data, "ml-100k/u.data")
    done = _script(
        "ml-100k", str(raw), str(out), "--min_ratings", "10", "--valid_negative", "3", tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "not verified" in done.stdout and "prepared ml-100k" in done.stderr
    assert FeatureSpec.from_yaml(out / "feature_spec.yaml").metadata["test_samples_per_series"] == 4
    again = _script("ml-100k", str(raw), str(out), tmp_path=tmp_path)
    assert again.returncode == 0 and "already prepared" in again.stdout


def test_prepare_dataset_script_errors(tmp_path: Path) -> None:
    unknown = _script("ml-5m", tmp_path=tmp_path)
    assert unknown.returncode != 0 and "usage:" in unknown.stderr and "ml-5m" in unknown.stderr
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ml-1m.zip").write_bytes(b"not the official archive")
    bad = _script("ml-1m", str(raw), str(tmp_path / "out"), tmp_path=tmp_path)
    assert bad.returncode != 0 and "MD5" in bad.stderr and not (tmp_path / "out").exists()
    missing = _script("ml-10m", str(tmp_path / "raw2"), str(tmp_path / "out"), tmp_path=tmp_path)
    assert missing.returncode != 0 and not (tmp_path / "raw2" / "ml-10m.zip").exists()
