"""Baselines a SIM/DIN/DIEN model must clearly beat on the same prepared split (sim/README.md, Accuracy).

  popularity: python -m sim.baselines --dataset_dir /data/sim --baseline popularity
  no history: python -m sim.baselines --dataset_dir /data/sim --baseline no_history -- --model_type din --epochs 5

popularity scores a row by how often its target item is a positive training target: the best a model can
do from item identity alone when popularity carries signal. no_history trains the given sim.train command
(everything after `--`) on a copy of the dataset whose histories (positive and negative) are all padding,
so the model sees only the user and the target item: what the history adds is model AUC minus this one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from common import cli, config, metrics
from common.config import flag
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from sim import data as sim_data


def popularity(dataset_dir: Path, spec_file: str = "feature_spec.yaml") -> dict[str, float]:
    """{"train_auc", "test_auc"} of score = the target item's count among the train split's positives."""
    spec, _ = sim_data.open_spec(dataset_dir, spec_file)
    label, item = spec.channel("label")[0], spec.channel("target_item_features")[0]
    cols = {split: spec.read_mapping(split, [label, item]) for split in ("train", "test")}
    train = cols["train"]
    counts = np.bincount(train[item][train[label].astype(bool)], minlength=spec.cardinality(item) + 1)
    result = {}
    for split, c in cols.items():
        scores = torch.from_numpy(counts[c[item]].astype(np.float64))
        result[f"{split}_auc"] = float(metrics.roc_auc(scores, torch.from_numpy(c[label].astype(np.int64))))
    return result


def blank_histories(dataset_dir: Path, out_dir: Path, spec_file: str = "feature_spec.yaml") -> None:
    """Copy a Parquet dataset to out_dir with every history cell set to 0 (padding); the rest unchanged."""
    spec, _ = sim_data.open_spec(dataset_dir, spec_file)
    history = set(spec.channel("positive_history")) | set(spec.channel("negative_history"))
    shutil.copytree(dataset_dir, out_dir)
    for chunks in spec.source_spec.values():
        for chunk in chunks:
            if chunk.get("type") != "parquet":
                raise FeatureSpecError(
                    f"{dataset_dir}: no_history handles Parquet chunks, got {chunk['type']}"
                )
            for name in chunk["files"]:
                table = pq.read_table(dataset_dir / name)
                for i, column in enumerate(table.column_names):
                    if column in history:
                        zeros = pa.array(np.zeros(len(table) * table.column(i).type.list_size, np.int32))
                        blank = pa.FixedSizeListArray.from_arrays(zeros.cast(table.column(i).type.value_type),
                                                                  table.column(i).type.list_size)  # fmt: skip
                        table = table.set_column(i, table.field(i), blank)
                pq.write_table(table, out_dir / name)


@dataclass(frozen=True)
class BaselinesConfig:
    dataset_dir: Path | None = flag(None, "prepared dataset (required)")
    baseline: Literal["popularity", "no_history"] | None = flag(None, "which baseline (required)")
    feature_spec: str = flag("feature_spec.yaml", "spec file name inside --dataset_dir")
    log_path: Path | None = flag(None, "popularity: DLLogger JSON log")

    def validate(self) -> None:
        if missing := [f"--{name}" for name in ("dataset_dir", "baseline") if getattr(self, name) is None]:
            raise ValueError(f"the following arguments are required: {', '.join(missing)}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    cfg = config.parse(
        BaselinesConfig, own, prog="python -m sim.baselines", description=__doc__.split("\n\n")[0]
    )
    if cfg.baseline == "popularity":
        result = popularity(cfg.dataset_dir, cfg.feature_spec)
        log = JsonLogger(cfg.log_path, metadata={k: {"format": ":.5f"} for k in result})
        log.parameters(config.to_dict(cfg))
        log.summary(result)
        log.close()
        return result
    from sim import train  # noqa: PLC0415 - only this baseline trains

    with tempfile.TemporaryDirectory(prefix="sim_no_history_") as tmp:
        blank = Path(tmp, "data")
        blank_histories(cfg.dataset_dir, blank, cfg.feature_spec)
        return train.main([*train_args, "--dataset_dir", str(blank), "--feature_spec", cfg.feature_spec])


if __name__ == "__main__":
    cli.run(main)
