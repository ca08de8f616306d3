"""SIM/DIN/DIEN speed (a command, not a test): samples/s, latency percentiles and peak memory.

  python -m sim.benchmark --model_type din                        # CPU/GPU training step, batch 4096, T=100
  python -m sim.benchmark --model_type dien --long_seq_length 0   # DIEN over all 100 positions
  python -m sim.benchmark --model_type sim --amp --batch_size 131072 --mode inference
  python -m sim.benchmark --model_type din --profile              # + torch.profiler table of the hottest ops

Synthetic shapes, no dataset needed: random ids over Amazon Books' table sizes (users 105,925, items
1,209,081, categories 2,330), full histories by default. Train mode times the recipe's own step
(sim.steps.train_step on sim.data.SplitData batches); on a real dataset use
`python -m sim.train --benchmark` (training) or `--mode inference --benchmark`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from common import amp as amp_lib
from common import cli, config, entry
from common.config import ConfigError, flag
from common.kernels import HELP as KERNELS_HELP
from common.throughput import StepTimer, peak_memory_gib
from sim import steps
from sim.steps import run_inference

BOOKS = {"users": [105_925], "items": [1_209_081, 2_330]}  # Amazon Books, DLE-SIM spec


@dataclass(frozen=True)
class BenchmarkConfig:
    mode: Literal["train", "inference"] = flag("train", "what to time")
    model_type: Literal["sim", "din", "dien"] = flag("din", "model")
    batch_size: int = flag(4096, "samples per step")
    history_length: int = flag(100, "T")
    long_seq_length: int = flag(90, "T - S (0: DIEN over all T)")
    min_history: int = flag(100, "real items per history: uniform [min, T] (clipped to T)")
    embedding_dim: int = flag(16, "D")
    user_cardinalities: list[int] = flag(BOOKS["users"], "user tables")
    item_cardinalities: list[int] = flag(BOOKS["items"], "item tables")
    optimizer: Literal["adam", "lazy_adam", "sgd"] = flag("adam", "optimizer")
    augru_variant: Literal["paper", "nvidia_tf1"] = flag("paper", "AUGRU cell")
    din_attention: Literal["mlp", "dot"] = flag("mlp", "DIN attention")
    steps: int = flag(20, "timed steps")
    warmup: int = flag(3, "untimed steps first")
    pool: int = flag(4, "distinct random batches cycled through")
    amp: bool = flag(False, "bf16/fp16 autocast")
    compile: bool = flag(False, "torch.compile")
    profile: bool = flag(False, "print the hottest ops (torch.profiler) after the timed steps")
    device: Literal["auto", "cpu", "cuda"] = flag("auto", "where to run")
    threads: int | None = flag(None, "torch CPU threads (None: torch's choice)")
    log_path: Path | None = flag(None, "DLLogger JSON log (None: stdout only)")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)

    def validate(self) -> None:
        """Shapes the synthetic data or the model cannot take: one line naming the flag, nothing run."""
        for name in ("batch_size", "history_length", "embedding_dim", "steps", "pool"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.min_history < 0 or (self.threads is not None and self.threads < 1):
            raise ConfigError("--warmup and --min_history must be >= 0 and --threads >= 1")
        if not 0 <= self.long_seq_length < self.history_length:
            raise ConfigError(
                f"--long_seq_length must be in [0, --history_length), got {self.long_seq_length} "
                f"with --history_length {self.history_length}"
            )
        if not self.item_cardinalities or min(self.item_cardinalities + self.user_cardinalities) < 1:
            raise ConfigError("--item_cardinalities needs >= 1 table and every cardinality must be >= 1")


def synthetic_split(cfg: BenchmarkConfig, device: torch.device):
    """A SplitData of `pool` random batches: ids uniform over the tables, left-padded histories."""
    from sim.data import SplitData

    g = torch.Generator().manual_seed(0)
    n, t = cfg.batch_size * cfg.pool, cfg.history_length
    s, f, u = t - cfg.long_seq_length, len(cfg.item_cardinalities), len(cfg.user_cardinalities)
    cards = torch.tensor(cfg.item_cardinalities)
    user = torch.stack([torch.randint(1, c + 1, (n,), generator=g) for c in cfg.user_cardinalities], 1)
    items = (torch.rand(n, 1 + t + s, f, generator=g) * cards).long() + 1  # target | positive | negative
    length = torch.randint(min(cfg.min_history, t), t + 1, (n,), generator=g)
    real = torch.arange(t) >= (t - length).unsqueeze(1)  # [n, T] left padding
    items[:, 1 : 1 + t] *= real.unsqueeze(-1)
    label = torch.randint(0, 2, (n, 1), generator=g)
    rows = torch.cat([label, user.reshape(n, u), items.reshape(n, -1)], 1).to(torch.int32)
    return SplitData(rows.to(device), u, f, t, s, n, 0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    from sim.config import SimConfig
    from sim.models import SimSizes, build_model

    cfg = config.parse(BenchmarkConfig, argv, prog="python -m sim.benchmark", description=__doc__)
    env = entry.start(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_cfg = SimConfig(model_type=cfg.model_type, optimizer=cfg.optimizer, benchmark=True, kernels=cfg.kernels,
                        benchmark_warmup_steps=cfg.warmup, benchmark_steps=cfg.steps, log_every=10**9)  # fmt: skip
    sizes = SimSizes(cfg.model_type, tuple(cfg.user_cardinalities), tuple(cfg.item_cardinalities),
                     cfg.embedding_dim, cfg.long_seq_length, min(50, max(1, cfg.long_seq_length)),
                     augru_variant=cfg.augru_variant, din_attention=cfg.din_attention)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(sizes, sparse_embeddings=cfg.optimizer == "lazy_adam").to(env.device)
    data = synthetic_split(cfg, env.device)
    amp = amp_lib.setup(cfg.amp, env.device)
    log = entry.open_log(cfg, env, steps.METRICS, torch=torch.__version__, threads=torch.get_num_threads())
    if cfg.mode == "inference":
        result = run_inference(model, data, cfg.batch_size, amp, env, log,
                               warmup=cfg.warmup, steps=cfg.steps or None, log_every=10**9)  # fmt: skip
    else:
        result = _time_training(model, data, cfg, run_cfg, env, amp)
    return entry.finish(env, log, {"model_type": cfg.model_type, "batch_size": cfg.batch_size, **result})


def _time_training(model, data, cfg: BenchmarkConfig, run_cfg, env, amp) -> dict[str, float]:
    step_model = torch.compile(model) if cfg.compile else model
    optimizers = steps.build_optimizers(model, run_cfg)
    timer = StepTimer(env.device, cfg.warmup)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1)).to(env.device)
    profiler = None
    for i in range(cfg.warmup + cfg.steps):
        if cfg.profile and i == cfg.warmup:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler.__enter__()
        lo = (i % cfg.pool) * cfg.batch_size
        batch = data.batch(order[lo : lo + cfg.batch_size])
        timer.start()
        steps.train_step(step_model, batch, optimizers, amp)
        timer.stop(cfg.batch_size)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return {**timer.results(), "peak_memory_gib": peak_memory_gib(env.device)}


if __name__ == "__main__":
    cli.run(main)
