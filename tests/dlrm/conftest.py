"""DLRM fixtures: small split-binary datasets with a planted signal, written in the prepared on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.feature_spec import FeatureSpec, smallest_int_dtype
from dlrm.data import SyntheticCriteo

TABLES = (40, 300, 7, 1000, 120, 60)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny GEMMs gain nothing from a second OpenMP thread, and on a busy 2-core machine spinning OpenMP
    threads made these tests ~10x slower (measured 2026-11: 0.3 ms vs 4.4 ms for a [1024, 64] matmul)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_dataset(
    directory: Path, splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], cardinalities: tuple[int, ...],
    names: str = "ours",
) -> Path:  # fmt: skip
    """Write split-binary files + feature_spec.yaml: splits maps name -> (numerical [N, 13] float,
    categorical [N, F] int, label [N] bool). names="reference" uses DLE's `cat_i.bin` feature names."""
    cat_names = [f"cat_{i}.bin" if names == "reference" else f"cat_{i}" for i in range(len(cardinalities))]
    num_names = [f"num_{i}" for i in range(13)]
    feature_spec = {n: {"dtype": "float16"} for n in num_names} | {"label": {"dtype": "bool"}}
    dtypes = [smallest_int_dtype(c) for c in cardinalities]
    for n, c, dt in zip(cat_names, cardinalities, dtypes):
        feature_spec[n] = {"dtype": dt.name, "cardinality": int(c)}
    source_spec = {}
    for split, (numerical, categorical, label) in splits.items():
        (directory / split).mkdir(parents=True, exist_ok=True)
        numerical.astype("<f2").tofile(directory / split / "numerical.bin")
        label.astype(np.bool_).tofile(directory / split / "label.bin")
        chunks = [
            {"type": "split_binary", "features": num_names, "files": [f"{split}/numerical.bin"]},
            {"type": "split_binary", "features": ["label"], "files": [f"{split}/label.bin"]},
        ]
        for i, (n, dt) in enumerate(zip(cat_names, dtypes)):
            categorical[:, i].astype(dt.newbyteorder("<")).tofile(directory / split / f"cat_{i}.bin")
            chunks.append({"type": "split_binary", "features": [n], "files": [f"{split}/cat_{i}.bin"]})
        source_spec[split] = chunks
    channels = {"numerical": num_names, "categorical": cat_names, "label": ["label"]}
    FeatureSpec(feature_spec, source_spec, channels, {}, directory).to_yaml()
    return directory


def synthetic_split(gen: SyntheticCriteo, rows: int, key: int) -> tuple[tuple, np.ndarray]:
    batch, prob = gen.sample(key, rows, torch.device("cpu"))
    arrays = (batch.numerical.numpy(), batch.categorical.numpy(), batch.label.numpy().astype(bool))
    return arrays, prob.numpy()


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """(dataset dir, true test probabilities): 65536 train / 16384 test / 4096 validation rows."""
    gen = SyntheticCriteo(TABLES, seed=3)
    train, _ = synthetic_split(gen, 65536, 1)
    test, prob = synthetic_split(gen, 16384, 2)
    valid, _ = synthetic_split(gen, 4096, 3)
    root = tmp_path_factory.mktemp("dlrm") / "prepared"
    write_dataset(root, {"train": train, "test": test, "validation": valid}, TABLES)
    return root, prob


# Small model and batch: a few seconds per run on one CPU thread.
TINY = ["--embedding_dim", "8", "--bottom_mlp_sizes", "32", "8", "--top_mlp_sizes", "32", "16", "1",
        "--batch_size", "512", "--test_batch_size", "4096", "--lr", "1.0", "--warmup_steps", "20",
        "--decay_start_step", "100", "--decay_steps", "400", "--print_freq", "16", "--no-progress"]  # fmt: skip
