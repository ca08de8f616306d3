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

import argparse
from pathlib import Path

import torch

from common import amp as amp_lib
from common import cli, distributed, kernels
from common.distributed import DistEnv
from common.logging import JsonLogger
from common.throughput import StepTimer, peak_memory_gib
from sim import steps
from sim.steps import run_inference

BOOKS = {"users": [105_925], "items": [1_209_081, 2_330]}  # Amazon Books, DLE-SIM spec


def synthetic_split(args, device: torch.device):
    """A SplitData of `pool` random batches: ids uniform over the tables, left-padded histories."""
    from sim.data import SplitData

    g = torch.Generator().manual_seed(0)
    n, t, s = args.batch_size * args.pool, args.history_length, args.history_length - args.long_seq_length
    f, u = len(args.item_cardinalities), len(args.user_cardinalities)
    cards = torch.tensor(args.item_cardinalities)
    user = torch.stack([torch.randint(1, c + 1, (n,), generator=g) for c in args.user_cardinalities], 1)
    items = (torch.rand(n, 1 + t + s, f, generator=g) * cards).long() + 1  # target | positive | negative
    length = torch.randint(args.min_history, t + 1, (n,), generator=g)
    real = torch.arange(t) >= (t - length).unsqueeze(1)  # [n, T] left padding
    items[:, 1 : 1 + t] *= real.unsqueeze(-1)
    label = torch.randint(0, 2, (n, 1), generator=g)
    rows = torch.cat([label, user.reshape(n, u), items.reshape(n, -1)], 1).to(torch.int32)
    return SplitData(rows.to(device), u, f, t, s, n, 0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    from sim.config import SimConfig
    from sim.models import SimSizes, build_model

    p = argparse.ArgumentParser(prog="python -m sim.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--mode", choices=("train", "inference"), default="train", help="what to time")
    p.add_argument("--model_type", choices=("sim", "din", "dien"), default="din", help="model")
    p.add_argument("--batch_size", type=int, default=4096, help="samples per step")
    p.add_argument("--history_length", type=int, default=100, help="T")
    p.add_argument("--long_seq_length", type=int, default=90, help="T - S (0: DIEN over all T)")
    p.add_argument("--min_history", type=int, default=100, help="real items per history: uniform [min, T]")
    p.add_argument("--embedding_dim", type=int, default=16, help="D")
    p.add_argument("--user_cardinalities", type=int, nargs="+", default=BOOKS["users"], help="user tables")
    p.add_argument("--item_cardinalities", type=int, nargs="+", default=BOOKS["items"], help="item tables")
    p.add_argument("--optimizer", choices=("adam", "lazy_adam", "sgd"), default="adam", help="optimizer")
    p.add_argument("--augru_variant", choices=("paper", "nvidia_tf1"), default="paper", help="AUGRU cell")
    p.add_argument("--din_attention", choices=("mlp", "dot"), default="mlp", help="DIN attention")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--pool", type=int, default=4, help="distinct random batches cycled through")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16/fp16 autocast")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=False, help="print top ops")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log (default: stdout only)")
    kernels.add_argument(p)
    args = p.parse_args(argv)
    kernels.set_policy(args.kernels)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.min_history = min(args.min_history, args.history_length)
    env = DistEnv(0, 0, 1, distributed.pick_device(0, args.device))
    cfg = SimConfig(model_type=args.model_type, optimizer=args.optimizer, benchmark=True, kernels=args.kernels,
                    benchmark_warmup_steps=args.warmup, benchmark_steps=args.steps, log_every=10**9)  # fmt: skip
    sizes = SimSizes(args.model_type, tuple(args.user_cardinalities), tuple(args.item_cardinalities),
                     args.embedding_dim, args.long_seq_length, min(50, max(1, args.long_seq_length)),
                     augru_variant=args.augru_variant, din_attention=args.din_attention)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(sizes, sparse_embeddings=args.optimizer == "lazy_adam").to(env.device)
    data = synthetic_split(args, env.device)
    amp = amp_lib.setup(args.amp, env.device)
    log = JsonLogger(args.log_path, metadata=steps.METRICS)
    log.parameters({**vars(args), "device": str(env.device), "torch": torch.__version__,
                    "threads": torch.get_num_threads()})  # fmt: skip
    if args.mode == "inference":
        result = run_inference(model, data, args.batch_size, amp, cfg, env, log)
    else:
        result = _time_training(model, data, args, cfg, env, amp)
    log.summary({"model_type": args.model_type, "batch_size": args.batch_size, **result})
    log.close()
    return result


def _time_training(model, data, args, cfg, env, amp) -> dict[str, float]:
    step_model = torch.compile(model) if args.compile else model
    optimizers = steps.build_optimizers(model, cfg)
    timer = StepTimer(env.device, args.warmup)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1)).to(env.device)
    profiler = None
    for i in range(args.warmup + args.steps):
        if args.profile and i == args.warmup:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler.__enter__()
        lo = (i % args.pool) * args.batch_size
        batch = data.batch(order[lo : lo + args.batch_size])
        timer.start()
        steps.train_step(step_model, batch, optimizers, amp)
        timer.stop(args.batch_size)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return {**timer.results(), "peak_memory_gib": peak_memory_gib(env.device)}


if __name__ == "__main__":
    cli.run(main)
