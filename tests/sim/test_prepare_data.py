"""sim.prepare_data: the reference pipeline on hand-built and synthetic Amazon files, errors, outputs."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.feature_spec import FeatureSpec
from sim import amazon_meta, history_rows
from sim.amazon_meta import read_metadata
from sim.amazon_reviews import read_reviews
from sim.categorify import build_interactions
from sim.prepare_data import main
from sim.raw_input import PrepareDataError
from sim.synthetic import write_amazon

REPO = Path(__file__).resolve().parents[2]
REAL = Path("/work/shared/data/amazon/digital_music_partial")


def review(user: str, asin: str, day: int, **extra) -> str:
    return json.dumps(
        {"reviewerID": user, "asin": asin, "reviewerName": "x", "unixReviewTime": day * 86400} | extra
    )


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode() if lines else b""
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def run(
    raw: Path, out: Path, *flags: str, reviews: str = "reviews_Books.json", meta: str = "meta_Books.json"
):
    argv = ["--amazon_dataset_path", str(raw), "--output_path", str(out), "--reviews_file_name", reviews]
    argv += ["--metadata_file_name", meta, "--no_progress", "--metadata_loader_n_proc", "1", *flags]
    return main(argv)


def load(out: Path, split: str) -> dict[str, np.ndarray]:
    return FeatureSpec.from_yaml(out / "feature_spec.yaml").read_mapping(split)


# ---- the hand-built example ----------------------------------------------------------------------
# U2: A(100) B(200) C(200) D(300) -- B/C tie on the day, asin breaks it; written out of order
# U1: C(50) A(60) B(60); U4: D C B A D (5 reviews, history truncated to L = 3); U3: 2 reviews, dropped
TINY_REVIEWS = [
    review("U2", "B", 200),
    review("U1", "A", 60),
    review("U2", "D", 300),
    review("U3", "E", 10),
    review("U4", "D", 10),
    review("U1", "C", 50),
    review("U2", "C", 200),
    review("U4", "C", 20),
    review("U3", "A", 11),
    review("U2", "A", 100),
    review("U4", "B", 30),
    review("U1", "B", 60),
    review("U4", "A", 40),
    review("U4", "D", 50),
]
TINY_META = [
    "{'asin': 'A', 'title': \"Don't\", 'categories': [['Books', 'X', 'Fic'], ['Books', 'Other']]}",
    "{'asin': 'B', 'categories': [['Books', 'Sci']], 'related': {'also_bought': ['A', 'C']}}",
    "{'asin': 'C', 'title': 'no categories here'}",
    "{'asin': 'E', 'categories': [['Books', 'Zed']]}",
    "{'asin': 'F', 'categories': [['Books', 'Unreviewed']]}",
]
# ids: users U1=1 U2=2 U4=3; items A=1 B=2 C=3 D=4 (E only reviewed by the dropped U3);
# categories Fic=1 Sci=2 no_category=3 (C has no categories, D no metadata line)
CAT = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3}
TRAIN_POS = [  # (uid, target, history) per positive row, in output order
    (1, 1, [0, 0, 3]),
    (2, 2, [0, 0, 1]),
    (2, 3, [0, 1, 2]),
    (3, 3, [0, 0, 4]),
    (3, 2, [0, 4, 3]),
    (3, 1, [4, 3, 2]),
]
TEST_POS = [(1, 2, [0, 3, 1]), (2, 4, [1, 2, 3]), (3, 4, [3, 2, 1])]


def tiny(tmp_path: Path, gz: bool = False) -> Path:
    raw = tmp_path / "raw"
    write(raw / "reviews_Books.json", TINY_REVIEWS, gz)
    write(raw / "meta_Books.json", TINY_META, gz)
    return raw


def expected_rows(positives: list[tuple]) -> dict[str, np.ndarray]:
    """Per user: its positives, then their negative twins (same history); negative targets unknown."""
    rows = []
    by_user = defaultdict(list)
    for row in positives:
        by_user[row[0]].append(row)
    for uid in sorted(by_user):
        rows += [(True, *r) for r in by_user[uid]] + [(False, *r) for r in by_user[uid]]
    return {
        "label": np.array([r[0] for r in rows]),
        "user_feat_0": np.array([r[1] for r in rows]),
        "item_feat_0_trgt": np.array([r[2] for r in rows]),
        "item_feat_0_pos": np.array([r[3] for r in rows]),
    }


@pytest.mark.parametrize("gz", [False, True])
def test_tiny_example_rows_ids_order_padding(tmp_path: Path, gz: bool) -> None:
    out = tmp_path / "out"
    result = run(tiny(tmp_path, gz), out, "--max_sequence_length", "3", "--shortest_sequence_for_user", "3")
    assert result["users"] == 3 and result["items"] == 4 and result["categories"] == 3
    assert result["train_rows"] == 12 and result["test_rows"] == 6
    assert json.loads((out / "metadata.json").read_text()) == {
        "cardinalities": [
            {"name": "uid", "value": 3},
            {"name": "item", "value": 4},
            {"name": "cat", "value": 3},
        ]
    }
    cat = np.vectorize(CAT.get)
    for split, positives in (("train", TRAIN_POS), ("test", TEST_POS)):
        got, want = load(out, split), expected_rows(positives)
        for name in ("label", "user_feat_0", "item_feat_0_pos"):
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{split} {name}")
        label = got["label"]
        np.testing.assert_array_equal(got["item_feat_0_trgt"][label], want["item_feat_0_trgt"][label])
        np.testing.assert_array_equal(got["item_feat_1_pos"], cat(got["item_feat_0_pos"]))
        np.testing.assert_array_equal(got["item_feat_1_trgt"], cat(got["item_feat_0_trgt"]))
        np.testing.assert_array_equal(got["item_feat_1_neg"], cat(got["item_feat_0_neg"]))
        assert np.isin(got["item_feat_0_trgt"], [1, 2, 3, 4]).all()
        np.testing.assert_array_equal(got["item_feat_0_neg"] == 0, got["item_feat_0_pos"] == 0)
        assert np.isin(got["item_feat_0_neg"][got["item_feat_0_pos"] > 0], [1, 2, 3, 4]).all()


def test_feature_spec_contract_and_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(tiny(tmp_path), out, "--max_sequence_length", "3", "--shortest_sequence_for_user", "3", "--seed", "7")
    spec = FeatureSpec.from_yaml(out / "feature_spec.yaml")
    assert spec.channel_spec == {
        "label": ["label"],
        "user_features": ["user_feat_0"],
        "target_item_features": ["item_feat_0_trgt", "item_feat_1_trgt"],
        "positive_history": ["item_feat_0_pos", "item_feat_1_pos"],
        "negative_history": ["item_feat_0_neg", "item_feat_1_neg"],
    }
    assert spec.dtype("label") == np.bool_ and spec.cardinality("user_feat_0") == 4
    for kind, cardinality in (("0", 5), ("1", 4)):
        for suffix in ("trgt", "pos", "neg"):
            name = f"item_feat_{kind}_{suffix}"
            assert spec.dtype(name) == np.int32 and spec.cardinality(name) == cardinality
            assert spec.feature_spec[name].get("dimensions") == (None if suffix == "trgt" else [3])
    for split in ("train", "test"):
        [chunk] = spec.source_spec[split]
        assert chunk["type"] == "parquet" and chunk["files"] == [f"{split}/part_0.parquet"]
        assert chunk["features"] == pq.read_schema(out / chunk["files"][0]).names
        arrays = spec.read_mapping(split)
        assert arrays["item_feat_0_neg"].shape == (len(arrays["label"]), 3)
        assert all(a.dtype == (bool if n == "label" else np.int32) for n, a in arrays.items())
    meta = spec.metadata
    assert meta["rows"] == {"train": 12, "test": 6} and meta["seed"] == 7
    assert meta["max_sequence_length"] == 3 and meta["shortest_sequence_for_user"] == 3
    assert meta["source_files"]["reviews"].endswith("reviews_Books.json")


def test_prebatch_row_groups_and_parts(tmp_path: Path) -> None:
    syn = write_amazon(tmp_path / "raw", num_users=60, num_items=80, seed=3)
    out = tmp_path / "out"
    flags = ["--shortest_sequence_for_user", "5", "--prebatch_train_size", "64", "--prebatch_test_size", "10"]
    result = run(syn.reviews_path.parent, out, *flags, "--rows_per_part", "100")
    spec = FeatureSpec.from_yaml(out / "feature_spec.yaml")
    for split, group in (("train", 64), ("test", 10)):
        files = spec.source_spec[split][0]["files"]
        sizes = [
            [
                pq.ParquetFile(out / f).metadata.row_group(g).num_rows
                for g in range(pq.ParquetFile(out / f).num_row_groups)
            ]
            for f in files
        ]
        flat = [s for part in sizes for s in part]
        assert sum(flat) == result[f"{split}_rows"] and len(files) > 1
        assert all(s == group for s in flat[:-1]) and 0 < flat[-1] <= group
        assert all(sum(part) == -(-100 // group) * group for part in sizes[:-1])  # whole groups per part
    one_part = run(syn.reviews_path.parent, tmp_path / "one", "--shortest_sequence_for_user", "5")
    assert one_part["train_rows"] == result["train_rows"]
    for split in ("train", "test"):  # prebatching and parts only change the file layout, not the rows
        a, b = load(out, split), load(tmp_path / "one", split)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def oracle(reviews_path: Path, min_reviews: int, L: int, min_history: int) -> dict[str, list]:
    """The reference pipeline for the positive rows, written naively per user (the test's ground truth)."""
    by_user = defaultdict(list)
    for line in reviews_path.read_text().splitlines():
        r = json.loads(line)
        by_user[r["reviewerID"]].append((r["unixReviewTime"], r["asin"]))
    kept = sorted(u for u, rs in by_user.items() if len(rs) >= min_reviews)
    item_id = {a: i + 1 for i, a in enumerate(sorted({a for u in kept for _, a in by_user[u]}))}
    rows = {"train": [], "test": []}
    for uid, user in enumerate(kept, start=1):
        seq = [item_id[a] for _, a in sorted(by_user[user])]

        def row(t, seq=seq, uid=uid):
            history = seq[max(0, t - L) : t]
            return uid, seq[t], [0] * (L - len(history)) + history

        rows["train"] += [row(t) for t in range(min_history, len(seq) - 1)]
        rows["test"].append(row(len(seq) - 1))
    return rows


@pytest.mark.parametrize(("L", "min_history"), [(4, 1), (50, 0), (6, 6)])
def test_matches_naive_reference_on_synthetic_data(tmp_path: Path, L: int, min_history: int) -> None:
    syn = write_amazon(tmp_path / "raw", num_users=150, num_items=120, reviews_per_user=(3, 40), seed=1)
    out = tmp_path / "out"
    flags = ["--max_sequence_length", str(L), "--shortest_sequence_for_training", str(min_history)]
    run(syn.reviews_path.parent, out, "--shortest_sequence_for_user", "8", *flags)
    want = oracle(syn.reviews_path, 8, L, min_history)
    for split in ("train", "test"):
        got, exp = load(out, split), expected_rows(want[split])
        for name in ("label", "user_feat_0", "item_feat_0_pos"):
            np.testing.assert_array_equal(got[name], exp[name], err_msg=f"{split} {name}")
        pos = got["label"]
        np.testing.assert_array_equal(got["item_feat_0_trgt"][pos], exp["item_feat_0_trgt"][pos])


def test_categories_follow_metadata_and_sorted_ids(tmp_path: Path) -> None:
    syn = write_amazon(tmp_path / "raw", num_users=80, num_items=60, seed=5)
    reviews = read_reviews(syn.reviews_path, progress=False)
    data = build_interactions(reviews, read_metadata(syn.meta_path, progress=False), 5)
    rows = [json.loads(line) for line in syn.reviews_path.read_text().splitlines()]
    per_user = defaultdict(int)
    for r in rows:
        per_user[r["reviewerID"]] += 1
    items = sorted({r["asin"] for r in rows if per_user[r["reviewerID"]] >= 5})
    names = [syn.item_categories.get(a, "no_category") for a in items]  # categories[0][-1] or none
    assert "no_category" in names and len(set(names)) > 3
    cat_id = {name: k + 1 for k, name in enumerate(sorted(set(names)))}
    np.testing.assert_array_equal(data.item_category, [0] + [cat_id[n] for n in names])
    assert data.num_categories == len(cat_id) and data.uncategorised_items == names.count("no_category")
    assert data.num_users == sum(n >= 5 for n in per_user.values()) and data.num_items == len(items)
    assert data.dropped_users == sum(n < 5 for n in per_user.values())


def test_negatives_popularity_weighted_and_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    popularity = np.array([0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01])
    lines = [
        review(f"U{u:03d}", f"I{item}", day)
        for u in range(150)
        for day, item in enumerate(rng.choice(10, 20, p=popularity))
    ]
    raw = tmp_path / "raw"
    write(raw / "reviews_Books.json", lines)
    a = run(raw, tmp_path / "a", "--max_sequence_length", "10", meta="")
    run(raw, tmp_path / "b", "--max_sequence_length", "10", meta="")
    run(raw, tmp_path / "c", "--max_sequence_length", "10", "--seed", "1", meta="")
    train_a, train_b, train_c = (load(tmp_path / d, "train") for d in "abc")
    for name in train_a:  # seeded: identical reruns; another seed changes only the negatives
        np.testing.assert_array_equal(train_a[name], train_b[name])
        same = np.array_equal(train_a[name], train_c[name])
        assert same == (name not in ("item_feat_0_trgt", "item_feat_0_neg")), name
    assert a["categories"] == 1  # no metadata: one category, no_category
    assert set(np.unique(train_a["item_feat_1_pos"])) == {0, 1}
    targets = [
        int(line.split('"asin": "I')[1][0]) for u in range(150) for line in lines[20 * u + 1 : 20 * u + 19]
    ]
    counts = np.bincount(targets, minlength=10)  # the training targets: reviews 2 .. n-1 of each user
    expected = counts / counts.sum()  # item ids follow sorted asins I0..I9 -> ids 1..10
    for split in ("train", "test"):
        arrays = load(tmp_path / "a", split)
        neg = arrays["item_feat_0_neg"]
        drawn = np.concatenate([arrays["item_feat_0_trgt"][~arrays["label"]], neg[neg > 0]])
        observed = np.bincount(drawn - 1, minlength=10) / len(drawn)
        sigma = np.sqrt(expected * (1 - expected) / len(drawn))
        assert (np.abs(observed - expected) < 5 * sigma).all(), (split, observed, expected)
    assert abs(observed[0] - 0.4) < 0.05 and observed[9] < 0.03  # clearly not uniform


def test_chunking_never_leaks_histories_between_users(tmp_path: Path) -> None:
    syn = write_amazon(tmp_path / "raw", num_users=40, num_items=50, seed=2)
    data = build_interactions(read_reviews(syn.reviews_path, progress=False), None, 5)
    for split in ("train", "test"):
        kw = {"max_len": 12, "min_history": 1, "seed": 0}
        small = list(history_rows.iter_chunks(data, split, chunk_rows=7, **kw))
        whole = list(history_rows.iter_chunks(data, split, chunk_rows=1 << 20, **kw))
        assert len(small) > 3 and len(whole) == 1
        for field in ("label", "user", "pos_items", "pos_cats"):
            np.testing.assert_array_equal(
                np.concatenate([getattr(c, field) for c in small]), getattr(whole[0], field)
            )
        assert sum(c.users for c in small) == data.num_users


def test_metadata_pool_matches_single_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syn = write_amazon(tmp_path / "raw", num_users=20, num_items=300, seed=4)
    monkeypatch.setattr(amazon_meta, "BLOCK_BYTES", 2000)  # many blocks, so several workers get some
    one = read_metadata(syn.meta_path, n_proc=1, progress=False)
    two = read_metadata(syn.meta_path, n_proc=2, progress=False)
    assert one.asin.equals(two.asin) and one.category.equals(two.category)
    np.testing.assert_array_equal(one.line, two.line)
    lines = syn.meta_path.read_text().splitlines()
    lines[200] = "{'asin': 'BROKEN', 'categories': [['Books'"
    bad = write(tmp_path / "bad" / "meta.json", lines)
    with pytest.raises(PrepareDataError, match=r"meta.json line 201: not a Python dict literal"):
        read_metadata(bad, n_proc=2, progress=False)


def test_review_errors_in_later_blocks_name_the_line(tmp_path: Path) -> None:
    lines = [review(f"U{k}", f"I{k}", k) for k in range(300)]
    lines[250] = '{"reviewerID": "U", "asin": "I", "unixReviewTime": 12, "broken"'
    lines.insert(10, "")  # blank lines are skipped but counted
    path = write(tmp_path / "r.json", lines)
    with pytest.raises(PrepareDataError, match=r"r.json line 252: malformed JSON"):
        read_reviews(path, progress=False, block_bytes=1000)
    lines[251] = json.dumps({"reviewerID": "U", "asin": "I"})
    path = write(tmp_path / "r.json", lines)
    with pytest.raises(PrepareDataError, match=r"r.json line 252: missing field 'unixReviewTime'"):
        read_reviews(path, progress=False, block_bytes=1000)


GOOD = [review("U1", "A", 1), review("U1", "B", 2), review("U1", "C", 3)]
BAD_INPUTS = {
    "malformed json": (
        GOOD[:1] + ["", '{"reviewerID": "U2", "asin": ', *GOOD[1:]],
        None,
        r"reviews_Books.json line 3: malformed JSON",
    ),
    "missing field": (
        GOOD[:1] + [json.dumps({"reviewerID": "U2", "asin": "A"})],
        None,
        r"line 2: missing field 'unixReviewTime'",
    ),
    "string time": (
        GOOD[:1] + [review("U2", "A", 1).replace("86400", '"86400"')],
        None,
        r"line 2: field 'unixReviewTime' must be an integer",
    ),
    "not an object": (GOOD[:2] + ["[1, 2]"], None, r"reviews_Books.json line 3: expected a JSON object"),
    "null line": (GOOD[:2] + ["null"], None, r"reviews_Books.json line 3: expected a JSON object"),
    "empty reviews": ([], None, r"reviews_Books.json: file is empty \(line 1\)"),
    "blank reviews": (["", "  "], None, r"reviews_Books.json: no review in the file \(line 1\)"),
    "meta not literal": (
        GOOD,
        ["{'asin': 'A'}", "{'asin': 'B', 'categories': [['Books'"],
        r"meta_Books.json line 2: not a Python dict literal",
    ),
    "meta not dict": (
        GOOD,
        ["['asin', 'A']"],
        r"meta_Books.json line 1: expected a dict literal, got a list",
    ),
    "meta no asin": (GOOD, ["", "{'title': 'T'}"], r"meta_Books.json line 2: field 'asin' is missing"),
    "meta bad categories": (
        GOOD,
        ["{'asin': 'A', 'categories': 'Books'}"],
        r"meta_Books.json line 1: asin A: 'categories' must be",
    ),
    "meta duplicate": (
        GOOD,
        ["{'asin': 'A'}", "{'asin': 'B'}", "{'asin': 'A'}"],
        r"meta_Books.json line 3: asin A was already described on line 1",
    ),
    "empty meta": (GOOD, [], r"meta_Books.json: file is empty \(line 1\)"),
    "no user left": (GOOD[:2], None, r"reviews_Books.json: no user left after filtering"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_and_line_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    reviews, meta, message = BAD_INPUTS[case]
    raw = tmp_path / "raw"
    write(raw / "reviews_Books.json", reviews)
    if meta is not None:
        write(raw / "meta_Books.json", meta)
    out = tmp_path / "data" / "out"
    with pytest.raises(PrepareDataError) as exc:
        run(raw, out, "--shortest_sequence_for_user", "3", meta="meta_Books.json" if meta is not None else "")
    err = str(exc.value)
    assert exc.value.exit_code == 2 and len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_missing_files_and_existing_output(tmp_path: Path) -> None:
    raw = tiny(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(
        PrepareDataError, match=r"meta_Music.json: metadata file not found \(also tried meta_Music.json.gz\)"
    ):
        run(raw, out, meta="meta_Music.json")
    with pytest.raises(PrepareDataError, match="reviews_Music.json: reviews file not found"):
        run(raw, out, reviews="reviews_Music.json")
    assert not out.exists()
    flags = ("--max_sequence_length", "3", "--shortest_sequence_for_user", "3")
    run(raw, out, *flags)
    with pytest.raises(PrepareDataError, match="pass --overwrite"):
        run(raw, out, *flags)
    assert run(raw, out, *flags, "--shortest_sequence_for_user", "5", "--overwrite")["users"] == 1  # only U4
    assert load(out, "test")["user_feat_0"].tolist() == [1, 1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_validation(capsys) -> None:
    for flags in (["--max_sequence_length", "0"], ["--shortest_sequence_for_training", "101"]):
        with pytest.raises(SystemExit) as exc:
            main(["--amazon_dataset_path", "x", "--output_path", "y", *flags])
        assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_prepare_dataset_sh_downloads_when_absent_then_prepares(tmp_path: Path) -> None:
    script = REPO / "sim" / "prepare_dataset.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    syn = write_amazon(tmp_path / "snap", num_users=60, num_items=80, seed=6, gzip=True)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    curl = fake_bin / "curl"  # a curl that "downloads" from the local snap folder and logs the URL
    curl.write_text(
        '#!/usr/bin/env bash\nset -e\nwhile [[ $# -gt 0 ]]; do case "$1" in -o) out="$2"; shift 2;; -*) shift;; '
        f'*) url="$1"; shift;; esac; done\necho "$url" >> {tmp_path}/urls\ncp "{syn.reviews_path.parent}/$(basename "$url")" "$out"\n'
    )
    curl.chmod(0o755)
    env = os.environ | {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "TQDM_DISABLE": "1",
    }
    raw, out = tmp_path / "amazon", tmp_path / "out"
    raw.mkdir()
    shutil.copy(syn.meta_path, raw / "meta_Books.json.gz")  # present: not downloaded
    cmd = [
        "bash",
        str(script),
        str(raw),
        str(out),
        "--shortest_sequence_for_user",
        "5",
        "--metadata_loader_n_proc",
        "1",
    ]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    urls = (tmp_path / "urls").read_text().split()
    assert urls == ["http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Books.json.gz"]
    assert (raw / "reviews_Books.json.gz").is_file() and (out / "feature_spec.yaml").is_file()
    assert "prepared reviews_Books.json.gz" in done.stderr
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "already prepared" in again.stdout
    assert len((tmp_path / "urls").read_text().split()) == 1  # both files present now: nothing downloaded


@pytest.mark.skipif(not REAL.is_dir(), reason="real Amazon sample not available")
def test_real_digital_music_sample(tmp_path: Path) -> None:
    out = tmp_path / "out"
    names = ("--reviews_file_name", "reviews_Digital_Music_5.head.json.gz")
    result = main(
        ["--amazon_dataset_path", str(REAL), "--output_path", str(out), *names, "--metadata_file_name"]
        + ["meta_Digital_Music.head.json.gz", "--shortest_sequence_for_user", "5", "--no_progress"]
        + ["--metadata_loader_n_proc", "1"]
    )
    counts = defaultdict(int)
    with gzip.open(REAL / "reviews_Digital_Music_5.head.json.gz", "rt") as f:
        for line in f:
            counts[json.loads(line)["reviewerID"]] += 1
    kept = [n for n in counts.values() if n >= 5]
    assert result["users"] == len(kept) and result["test_rows"] == 2 * len(kept)
    assert result["train_rows"] == 2 * sum(n - 2 for n in kept)  # 2 * sum(n_u - 2), DLE-SIM's steps
    test = load(out, "test")
    assert (test["item_feat_0_pos"][:, -1] > 0).all() and (test["item_feat_1_trgt"] > 0).all()


def test_benchmark_generator_writes_books_shaped_input(tmp_path: Path) -> None:
    from sim.benchmark_prepare import generate

    info = generate(tmp_path / "raw", 4000, seed=0)
    result = run(tmp_path / "raw", tmp_path / "out")
    assert result["reviews"] == info["reviews"] and result["users"] == info["users_ge_20"] > 0
    assert result["train_rows"] == 2 * (info["reviews_of_users_ge_20"] - 2 * info["users_ge_20"])
    assert 0.2 < info["reviews_of_users_ge_20"] / info["reviews"] < 0.35  # Books: ~27% of reviews kept


def test_no_training_row_is_an_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "reviews_Books.json", [review("U1", "A", 1), review("U1", "B", 2), review("U2", "A", 3)])
    out = tmp_path / "out"
    with pytest.raises(
        PrepareDataError, match="reviews_Books.json: no train row: every kept user has <= 2 reviews"
    ):
        run(raw, out, "--shortest_sequence_for_user", "2", meta="")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no output, no staging dir
