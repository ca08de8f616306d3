"""Tests for dlrm.synthetic: Criteo lines match the real logs, and the planted signal is really there.

The format checks parse the files with each source's own conventions (what the preparation code will do),
so a format drift in the writer shows up here rather than as a confusing failure in a recipe test.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from common.metrics import roc_auc
from dlrm.synthetic import write_criteo, write_criteo_days


def _criteo_fields(path) -> list[list[str]]:
    text = path.read_text()
    assert text.endswith("\n") and "\r" not in text
    return [line.split("\t") for line in text.splitlines()]


@pytest.mark.parametrize("missing_rate", [0.15, 0.3])
def test_criteo_line_format_and_missing_rate(tmp_path, missing_rate):
    syn = write_criteo(tmp_path / "train.txt", num_lines=2000, missing_rate=missing_rate)
    rows = _criteo_fields(syn.path)
    assert len(rows) == 2000 == len(syn.probabilities) and {len(r) for r in rows} == {40}
    assert {r[0] for r in rows} == {"0", "1"}
    ints = [v for r in rows for v in r[1:14] if v]
    cats = [v for r in rows for v in r[14:] if v]
    assert all(re.fullmatch(r"-?\d+", v) for v in ints)
    assert all(re.fullmatch(r"[0-9a-f]{8}", v) for v in cats)
    assert {int(r[2]) for r in rows if r[2]} & {-1, -2, -3}  # I2 carries small negatives, as real
    missing = np.mean([v == "" for r in rows for v in r[1:]])
    assert abs(missing - missing_rate) < 0.03
    df = pd.read_csv(syn.path, sep="\t", header=None)
    assert df.shape == (2000, 40)
    # Zipf vocabularies: a large one (C6, 4000 values by default) has a long tail of values seen once
    # (what a frequency threshold removes) and a head seen often.
    counts = df[14 + 5].value_counts()
    assert counts.iloc[0] > 50 and (counts == 1).sum() > 100


def test_criteo_labels_follow_probabilities(tmp_path):
    syn = write_criteo(tmp_path / "train.txt", num_lines=4000, seed=1)
    labels = np.array([int(r[0]) for r in _criteo_fields(syn.path)])
    np.testing.assert_array_equal(labels, syn.labels)
    assert 0.2 < labels.mean() < 0.3
    order = np.argsort(syn.probabilities)
    assert labels[order[-400:]].mean() > labels[order[:400]].mean() + 0.4


def test_criteo_is_shaped_like_the_real_logs(tmp_path):
    """The hard parts of real Criteo (shared/data/criteo's 1,999 lines) that an easy generator hides."""
    syn = write_criteo(tmp_path / "train.txt", num_lines=4000, seed=3)
    df = pd.read_csv(syn.path, sep="\t", header=None, dtype={c: str for c in range(14, 40)})
    ints = df.iloc[:, 1:14]
    assert ints[5].quantile(0.99) > 1e5 and ints[5].quantile(0.5) > 1000  # I5: heavy tail, 10^5 .. 10^6
    assert (ints[2] < 0).mean() > 0.08 and (ints[2] == -2).any()  # I2 negatives, as in the real logs
    assert (ints[10].dropna() == 0).mean() > 0.4 and ints[12].isna().mean() > 0.5  # zeros; I12 mostly empty
    empty = df.iloc[:, [14 + 18, 14 + 19, 14 + 24, 14 + 25]].isna()
    assert empty.all(axis=1).sum() == empty.any(axis=1).sum() > 0.3 * len(df)  # C19/20/25/26 empty together
    counts = df[14 + 2].value_counts()  # C3, a 200k-value vocabulary: most distinct values seen once
    assert (counts == 1).mean() > 0.7 and counts.iloc[0] > 20
    oracle = float(roc_auc(torch.from_numpy(syn.probabilities), torch.from_numpy(syn.labels).float()))
    assert 0.8 < oracle < 0.92


def test_criteo_days_share_one_generator(tmp_path):
    days = write_criteo_days(tmp_path / "days", days=3, lines_per_day=500, seed=2)
    assert [d.path.name for d in days] == ["day_0", "day_1", "day_2"]
    assert all(len(_criteo_fields(d.path)) == 500 for d in days)
    assert days[0].path.read_bytes() != days[1].path.read_bytes()
    single = write_criteo(tmp_path / "single.txt", num_lines=500, seed=2)
    assert single.path.read_bytes() == days[0].path.read_bytes()  # write_criteo is day_0
    # Same vocabulary across days: the 3-value feature C1 has the same values every day.
    c1 = [{r[14] for r in _criteo_fields(d.path) if r[14]} for d in days]
    assert c1[0] == c1[1] == c1[2] and len(c1[0]) == 3
    again = write_criteo_days(tmp_path / "again", days=3, lines_per_day=500, seed=2)
    assert all(x.path.read_bytes() == y.path.read_bytes() for x, y in zip(days, again))
