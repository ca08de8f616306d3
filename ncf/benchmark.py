"""NCF throughput and latency benchmark (a command, not a test): samples/s, latency percentiles, peak memory.

  python -m ncf.benchmark --mode train                       # ml-20m sizes, batch 1M, vs a plain loop
  python -m ncf.benchmark --mode train --amp --batch_sizes 1048576 262144
  python -m ncf.benchmark --mode inference --checkpoint runs/ncf/best.pt --batch_sizes 1 64 4096 1048576
  python -m ncf.benchmark --mode train --data /data/cache/ml-20m   # ours on a dataset's rows (no peer)

Train mode runs ours and (with --compare_baseline, default on) a plain PyTorch NeuMF loop `--repeats`
times, interleaved, each run in a fresh process on the same synthetic positives with the same negatives
per positive and batch: ours = the recipe's own step (ncf.steps.train_one_epoch on ncf.data.epoch_batches)
with our process settings; the plain loop = ncf/benchmark_peers.py without them (common/peer_runs.py).
It reports the median [min - max] samples/s, samples per CPU second, and each process's peak RSS.
Inference mode follows the reference's inference.py: random ids, eval mode + sigmoid, 10 warm-up batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path

import torch

from common import amp as amp_lib
from common import cli, config, entry, kernels, peer_runs, throughput
from common.errors import UsageError
from common.logging import JsonLogger
from ncf import benchmark_peers as peers
from ncf import data as ncf_data
from ncf.benchmark_config import BenchmarkConfig
from ncf.checkpoints import load_model
from ncf.model import NeuMF, NeuMFSizes
from ncf.steps import train_one_epoch

NEGATIVES = 4  # per positive, the reference's default
PEERS_SCRIPT = Path(peers.__file__)
# A run of ours in its own process (`import ncf` applies our settings there, as in ncf.train).
_OURS = "import json, sys; from ncf import benchmark; print(json.dumps(benchmark.run_ours(json.loads(sys.argv[1]))))"


def synthetic_data(sizes: NeuMFSizes, rows: int, device: torch.device) -> ncf_data.NcfData:
    """The plain loop's positives (peers.synthetic_positives) as NcfData, without test series."""
    users, items = peers.synthetic_positives(sizes.num_users, sizes.num_items, rows)
    empty = torch.zeros(1, 2, dtype=torch.int32, device=device)
    return ncf_data.NcfData(
        train_users=users.to(device), train_items=items.to(device), train_labels=torch.ones(rows, device=device),
        test_users=empty, test_items=empty, test_labels=empty.float(), test_mask=empty.bool(),
        num_users=sizes.num_users, num_items=sizes.num_items,
    )  # fmt: skip


def _check_rows(rows: int, batch: int, needed: int) -> None:
    if ncf_data.steps_per_epoch(rows, NEGATIVES, batch) < needed:
        raise UsageError(
            f"{rows} training rows (x{1 + NEGATIVES} with negatives) give fewer than {needed} batches of "
            f"{batch}: lower --batch_sizes, --steps or --warmup"
        )


def run_ours(spec: dict) -> dict:
    """One timed run of the recipe's step (called in a fresh process by bench_train)."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    kernels.set_policy(spec["kernels"])
    device = torch.device(spec["device"])
    if spec["data"]:
        data = ncf_data.load(Path(spec["data"]), device=device)
        sizes = NeuMFSizes(data.num_users, data.num_items)
    else:
        sizes = NeuMFSizes(**{**spec["sizes"], "mlp_layers": tuple(spec["sizes"]["mlp_layers"])})
        data = synthetic_data(sizes, spec["train_rows"], device)
    batch = spec["batch"]
    _check_rows(data.train_users.numel(), batch, spec["warmup"] + spec["steps"])
    torch.manual_seed(0)
    model = NeuMF(sizes, byte_dropout=device.type == "cpu").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.0045, betas=(0.25, 0.5), fused=True)
    amp = amp_lib.setup(spec["amp"], device)
    step_model = torch.compile(model) if spec["compile"] else model
    gen = torch.Generator(device=device).manual_seed(1)
    batches = ncf_data.epoch_batches(data, NEGATIVES, batch, 0, 1, gen)

    def step(_: int) -> torch.Tensor:
        return train_one_epoch(step_model, itertools.islice(batches, 1), [opt], amp, 1, 1, False)

    return peer_runs.time_steps(step, batch, spec["warmup"], spec["steps"], device)


def bench_train(cfg: BenchmarkConfig, device: torch.device, log: JsonLogger) -> dict[str, float]:
    sizes = NeuMFSizes(cfg.users, cfg.items).as_dict()
    spec = {"sizes": sizes, "train_rows": cfg.train_rows, "negatives": NEGATIVES, "warmup": cfg.warmup,
            "steps": cfg.steps, "amp": cfg.amp, "threads": cfg.threads, "compile": cfg.compile, "kernels": cfg.kernels,
            "device": str(device), "data": str(cfg.data) if cfg.data else None}  # fmt: skip
    if cfg.data is not None and cfg.compare_baseline:
        print("note: --data times ours only (the plain loop trains on synthetic positives)", file=sys.stderr)
    results: dict[str, float] = {}
    for batch in cfg.batch_sizes:
        if cfg.data is None:
            _check_rows(cfg.train_rows, batch, cfg.warmup + cfg.steps)
        run = {**spec, "batch": batch}
        runs = {"ours": ([sys.executable, "-c", _OURS, json.dumps(run)], dict(os.environ))}
        if cfg.compare_baseline and cfg.data is None:
            runs["plain"] = ([sys.executable, "-P", str(PEERS_SCRIPT), json.dumps(run)], peer_runs.peer_env())
        row = peer_runs.compare(f"batch_{batch}", runs, cfg.repeats, device.type)
        log.log([len(results)], row)
        results |= row
    return results


@torch.no_grad()
def bench_inference(cfg: BenchmarkConfig, device: torch.device, log: JsonLogger) -> dict[str, float]:
    if cfg.checkpoint is not None:
        model = load_model(cfg.checkpoint, device)[0]
    else:
        model = NeuMF(NeuMFSizes(cfg.users, cfg.items)).to(device)
    model.eval()
    n_users, n_items = model.sizes.num_users, model.sizes.num_items
    amp = amp_lib.setup(cfg.amp, device)
    results: dict[str, float] = {}
    for batch in cfg.batch_sizes:
        users = torch.randint(0, n_users, (batch,), device=device)
        items = torch.randint(0, n_items, (batch,), device=device)

        def run(_: int, users: torch.Tensor = users, items: torch.Tensor = items) -> None:
            with amp.autocast():
                torch.sigmoid(model(users, items))

        row = throughput.latency_row(batch, throughput.latencies(run, cfg.warmup, cfg.num_batches, device))
        log.log([len(results)], row)
        results |= row
    results["peak_memory_gib"] = throughput.peak_memory_gib(device)
    return results


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(BenchmarkConfig, argv, prog="python -m ncf.benchmark", description=__doc__)
    train_mode = cfg.mode == "train"
    cfg = dataclasses.replace(
        cfg,
        batch_sizes=cfg.batch_sizes or ([2**20] if train_mode else [4**i for i in range(11)]),
        warmup=cfg.warmup if cfg.warmup is not None else (2 if train_mode else 10),
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = entry.start(cfg)
    log = entry.open_log(cfg, env, {}, torch=torch.__version__, threads=torch.get_num_threads())
    results = (bench_train if train_mode else bench_inference)(cfg, env.device, log)
    return entry.finish(env, log, results)


if __name__ == "__main__":
    cli.run(main)
