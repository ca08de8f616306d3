"""Evaluate a SIM/DIN/DIEN checkpoint: exact AUC and loss over a split (sim/scoring.py).

  python -m sim.evaluate --dataset_dir /data/sim --checkpoint runs/sim/ckpt.pt
  torchrun --nproc_per_node=8 -m sim.evaluate --dataset_dir /data/sim --checkpoint runs/sim/ckpt.pt --split train

The model is rebuilt from the checkpoint alone (its stored sizes). Each rank scores its contiguous row
shard; scores and labels are gathered for an exact AUC, so 1 and N ranks give the same AUC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from common import amp as amp_lib
from common import cli, config, entry
from common.config import flag
from common.distributed import DistEnv
from common.errors import RunError
from common.kernels import HELP as KERNELS_HELP
from sim import checkpoint_rules
from sim import data as sim_data
from sim.scoring import check_compatible, evaluate_splits

METRICS = {f"{split}_{m}": {"format": ":.5f"} for split in ("train", "test") for m in ("auc", "loss")}


@dataclass(frozen=True)
class EvaluateConfig:
    dataset_dir: Path | None = flag(None, "prepared dataset directory (required)")
    checkpoint: Path | None = flag(None, "a checkpoint written by sim.train (required)")
    feature_spec: str = flag("feature_spec.yaml", "spec file name inside --dataset_dir")
    split: Literal["train", "test"] = flag("test", "which mapping to score")
    batch_size: int = flag(131072, "GLOBAL evaluation batch")
    amp: bool = flag(False, "bf16/fp16 autocast")
    device: Literal["auto", "cpu", "cuda"] = flag("auto", "where to run")
    log_path: Path | None = flag(None, "DLLogger JSON log")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)

    def validate(self) -> None:
        if missing := [f"--{name}" for name in ("dataset_dir", "checkpoint") if getattr(self, name) is None]:
            raise ValueError(f"the following arguments are required: {', '.join(missing)}")
        if self.batch_size <= 0:
            raise ValueError(f"--batch_size must be positive, got {self.batch_size}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(
        EvaluateConfig, argv, prog="python -m sim.evaluate", description=__doc__.split("\n\n")[0]
    )
    env = entry.start(cfg)
    model, data = _setup(cfg, env)
    log = entry.open_log(cfg, env, METRICS)
    local_batch = max(1, cfg.batch_size // env.world_size)
    amp = amp_lib.setup(cfg.amp, env.device)
    try:
        result = evaluate_splits(model, {cfg.split: data}, env, local_batch, amp, env.is_main)
    except FloatingPointError as e:
        log.close()
        raise RunError(f"{cfg.checkpoint}: {e}") from None
    return entry.finish(env, log, result)


def _setup(cfg: EvaluateConfig, env: DistEnv) -> tuple[torch.nn.Module, sim_data.SplitData]:
    """The checkpoint's model on the device and this rank's shard of the split; a checkpoint of another
    recipe or of other data is refused (typed errors naming the file) before anything is written."""
    model, ckpt = checkpoint_rules.load_model(cfg.checkpoint)
    spec, schema = sim_data.open_spec(cfg.dataset_dir, cfg.feature_spec)
    checkpoint_rules.check_dataset(ckpt, schema, cfg.checkpoint, checkpoint_rules.CARDINALITIES)
    check_compatible(model.sizes, schema, cfg.checkpoint)
    shards = sim_data.load_shards(
        spec, schema, (cfg.split,), model.sizes, env, negatives=True, show=env.is_main
    )
    return model.to(env.device), shards[cfg.split]


if __name__ == "__main__":
    cli.run(main)
