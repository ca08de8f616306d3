"""NCF fixtures: a small prepared dataset with planted signal, made by the real preparation code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncf.synthetic import MovieLensSynthetic, write_movielens


@pytest.fixture(scope="session")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> tuple[MovieLensSynthetic, Path]:
    """(generator, prepared dataset dir): 400 users x 250 items, 30 test negatives per user."""
    from ncf import prepare_data

    root = tmp_path_factory.mktemp("ncf")
    syn = write_movielens(root / "raw", layout="ml-20m", num_users=400, num_items=250, seed=7)
    out = root / "prepared"
    prepare_data.main(
        ["--input", str(syn.path), "--output", str(out), "--valid_negative", "30", "--seed", "1"]
    )
    return syn, out


# Small model and batch: seconds per run on 2 CPU cores.
TINY = ["--factors", "8", "--layers", "32", "16", "8", "--batch_size", "2048", "--learning_rate", "0.005",
        "--beta1", "0.9", "--beta2", "0.999", "--dropout", "0.1", "--no-progress"]  # fmt: skip
