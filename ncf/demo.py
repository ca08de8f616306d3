"""Quick start: synthetic MovieLens-format ratings -> ncf.prepare_data -> ncf.train -> HR@10 / NDCG@10.

  python -m ncf.demo                      # under a minute on a 2-core CPU; uses the GPU when present
  python -m ncf.demo --workdir runs/demo  # keep the raw file, the prepared dataset, checkpoints and log

The ratings come from a known generator (user/item factors + item popularity), so the trained model is
compared with the generator's own scores (the oracle) and with item popularity, on the same test
candidates and by the same evaluator.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from common import cli, config, distributed
from common.config import ConfigError, flag
from common.logging import log_run
from ncf import data as ncf_data
from ncf import prepare_data, train
from ncf.ranking import popularity_scores, ranking_metrics
from ncf.synthetic import write_movielens

PRESET = Path(__file__).parent / "configs" / "tiny.yaml"  # demo-sized model and batch


@dataclass(frozen=True)
class DemoConfig:
    """python -m ncf.demo's own flags; any other flag is passed on to ncf.train (e.g. --epochs 3)."""

    workdir: Path | None = flag(None, "keep all outputs here; none = a temp dir, removed at the end")
    users: int = flag(3000, "synthetic users")
    items: int = flag(1500, "synthetic items")
    seed: int = flag(0, "generator and training seed")
    device: Literal["auto", "cpu", "cuda"] = flag("auto", "auto = the GPU when CUDA is present, else CPU")
    train_config: Path = flag(PRESET, "the ncf.train --config preset the demo trains with")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run; none = no log")

    def validate(self) -> None:
        if min(self.users, self.items) < 1:
            raise ConfigError(f"--users and --items must be positive, got {self.users} and {self.items}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg, extra = config.parse_known(DemoConfig, argv, prog="python -m ncf.demo", description=__doc__)
    train_args = ["--config", str(cfg.train_config), *extra]
    with tempfile.TemporaryDirectory(prefix="ncf-demo-") as tmp:
        work = cfg.workdir or Path(tmp)
        result = run(work, cfg.users, cfg.items, cfg.seed, cfg.device, train_args)
    return log_run(cfg.log_path, {**config.to_dict(cfg), "train_args": extra}, result)


def run(
    work: Path, users: int, items: int, seed: int, device: str, train_args: list[str]
) -> dict[str, float]:
    """Write, prepare, train, compare; train_args: more ncf.train flags (they win over the demo's)."""
    t0 = time.perf_counter()
    print(
        f"[1/3] writing synthetic MovieLens ratings.csv ({users} users, {items} items) under {work}",
        file=sys.stderr,
    )
    syn = write_movielens(work / "raw", layout="ml-20m", num_users=users, num_items=items, seed=seed)
    print("[2/3] preparing it with ncf.prepare_data (leave-last-out, 100 test negatives)", file=sys.stderr)
    prepared = work / "prepared"
    prepare_data.main(
        ["--input", str(syn.path), "--output", str(prepared), "--overwrite", "--seed", str(seed)]
    )
    print("[3/3] training NeuMF with ncf.train", file=sys.stderr)
    result = train.main([
        "--data", str(prepared), "--seed", str(seed), "--device", device, "--checkpoint_dir", str(work / "checkpoints"),
        "--no-resume", "--log_path", str(work / "log.json"), *train_args,
    ])  # fmt: skip
    oracle, popularity = reference_points(prepared, syn, device)
    result.update({"oracle_hr@10": oracle[0], "oracle_ndcg@10": oracle[1], "popularity_hr@10": popularity[0]})
    print(
        f"NeuMF HR@10 {result['hr@10']:.4f} NDCG@10 {result['ndcg@10']:.4f} | generator oracle HR@10 {oracle[0]:.4f} "
        f"NDCG@10 {oracle[1]:.4f} | item popularity HR@10 {popularity[0]:.4f} NDCG@10 {popularity[1]:.4f} "
        f"| {time.perf_counter() - t0:.0f} s"
    )
    return result


def reference_points(prepared: Path, syn, device: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(HR@10, NDCG@10) of the generator's true scores and of item popularity on the prepared test set."""
    env = distributed.DistEnv(0, 0, 1, distributed.pick_device(0, device))
    data = ncf_data.load(prepared, device=env.device)
    user_ids = np.load(prepared / "user_ids.npy")  # dense id -> raw MovieLens id
    item_ids = np.load(prepared / "item_ids.npy")
    raw_users = user_ids[data.test_users.cpu().numpy()]
    raw_items = item_ids[data.test_items.cpu().numpy()]
    oracle = torch.from_numpy(syn.scores(raw_users, raw_items)).to(env.device)
    return ranking_metrics(oracle, data, env, 10), ranking_metrics(
        popularity_scores(data, env), data, env, 10
    )


if __name__ == "__main__":
    cli.run(main)
