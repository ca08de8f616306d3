"""DLRM throughput and latency benchmark (a command, not a test): samples/s, latency percentiles, peak memory.

  python -m dlrm.benchmark --mode train                             # CPU: 26 x 100k tables, dim 16, vs a plain loop
  python -m dlrm.benchmark --mode train --compare_torchrec --threads 2   # + TorchRec's own trainer
  python -m dlrm.benchmark --mode train --embedding_dim 64 --bottom_mlp_sizes 512 256 64 --batch_sizes 4096
  python -m dlrm.benchmark --mode train --amp                        # bf16 autocast (CPU avx512_bf16 / GPU)
  python -m dlrm.benchmark --mode train --dataset /data/dlrm          # ours through the on-disk loader
  python -m dlrm.benchmark --mode inference --checkpoint runs/dlrm.pt --batch_sizes 1 64 4096 32768

Train mode runs every variant `--repeats` times, interleaved, each run in a fresh process on the same
batches (ids uniform over [0, cardinality)) and shapes: "ours" = the recipe's own step
(dlrm.steps.ReplicatedStep, as dlrm.train runs it), "plain" (--compare_baseline, default on) and
"torchrec" (--compare_torchrec) = the peers of dlrm/benchmark_peers.py, run without our process
settings (common/peer_runs.py). It reports the median [min - max] samples/s of wall time, the median per
CPU second of the run's process, the peak RSS of each variant's process, and ours / peer speed-ups.
Inference mode (in this process) reports mean/p50/p90/p95/p99 latency and throughput per batch size; on
CUDA, batches up to --cuda_graph_max_batch run as a captured CUDA graph (as NVIDIA's --cuda_graphs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from common import amp as amp_lib
from common import cli, config, entry, kernels, peer_runs, throughput
from common.distributed import DistEnv
from common.errors import InputError
from common.logging import JsonLogger
from dlrm import benchmark_peers as peers
from dlrm import data as dlrm_data
from dlrm.benchmark_config import BenchmarkConfig
from dlrm.lr_schedule import LrSchedule
from dlrm.model import CRITEO_FL15_TABLE_SIZES, DLRM, DlrmSizes
from dlrm.scoring import load_model
from dlrm.steps import ReplicatedStep

CPU_TABLES = (100_000,) * 26  # the CPU comparison (and DLE's prepare_synthetic_dataset default)
LR = 0.5  # constant: speed only
PEERS_SCRIPT = Path(peers.__file__)
# A run of ours in its own process (`import dlrm` applies our settings there, as in dlrm.train).
_OURS = "import json, sys; from dlrm import benchmark; print(json.dumps(benchmark.run_ours(json.loads(sys.argv[1]))))"


def make_batches(
    dataset: Path | None, sizes: DlrmSizes, batch: int, count: int, device: torch.device
) -> list[dlrm_data.DlrmBatch]:
    """`count` distinct batches resident on the device: uniform ids (peers.uniform_batches, the batches
    every train variant sees), or read through the real loader from `dataset`."""
    if dataset is not None:
        source = dlrm_data.DiskSource(dlrm_data.open_dataset(dataset), 0, 1, device, 8)
        steps = source.rows("train") // batch
        return list(source.train_batches(batch, [i % steps for i in range(count)]))
    made = peers.uniform_batches(list(sizes.table_sizes), sizes.num_numerical, batch, count)
    return [dlrm_data.DlrmBatch(*(t.to(device) for t in b)) for b in made]


def run_ours(spec: dict) -> dict:
    """One timed run of the recipe's step on `spec`'s shapes (called in a fresh process by bench_train)."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    kernels.set_policy(spec["kernels"])
    device = torch.device(spec["device"])
    sizes = DlrmSizes(table_sizes=tuple(spec["tables"]), embedding_dim=spec["embedding_dim"],
                      bottom_mlp_sizes=tuple(spec["bottom_mlp_sizes"]), top_mlp_sizes=tuple(spec["top_mlp_sizes"]))  # fmt: skip
    dataset = Path(spec["dataset"]) if spec["dataset"] else None
    batches = make_batches(dataset, sizes, spec["batch"], spec["distinct_batches"], device)
    amp = amp_lib.setup(spec["amp"], device)
    torch.manual_seed(0)
    schedule = LrSchedule(spec["lr"], warmup_steps=0, decay_start_step=10**9)
    step = ReplicatedStep(DLRM(sizes, sparse=False).to(device), DistEnv(0, 0, 1, device), amp, schedule)
    return peer_runs.time_steps(
        lambda i: step(batches[i % len(batches)], i + 1), spec["batch"], spec["warmup"], spec["steps"], device
    )


def _runs(cfg: BenchmarkConfig, spec: dict) -> dict[str, tuple[list[str], dict[str, str]]]:
    """{variant: (command, environment)}: ours with our settings, each peer without them (python -P: this
    directory stays off sys.path, so the peer script cannot import our modules by accident)."""
    runs = {"ours": ([sys.executable, "-c", _OURS, json.dumps(spec)], dict(os.environ))}
    peers_on = [p for p, on in (("plain", cfg.compare_baseline), ("torchrec", cfg.compare_torchrec)) if on]
    if cfg.dataset is not None and peers_on:
        print(
            "note: --dataset times ours only (the peers train on uniform synthetic batches)", file=sys.stderr
        )
        peers_on = []
    for name in peers_on:
        command = [sys.executable, "-P", str(PEERS_SCRIPT), json.dumps({**spec, "peer": name})]
        runs[name] = (command, peer_runs.peer_env())
    return runs


def bench_train(
    cfg: BenchmarkConfig, sizes: DlrmSizes, device: torch.device, log: JsonLogger
) -> dict[str, float]:
    spec = {"tables": list(sizes.table_sizes), "num_numerical": sizes.num_numerical,
            "embedding_dim": sizes.embedding_dim, "bottom_mlp_sizes": list(sizes.bottom_mlp_sizes),
            "top_mlp_sizes": list(sizes.top_mlp_sizes), "distinct_batches": cfg.distinct_batches,
            "warmup": cfg.warmup, "steps": cfg.steps, "lr": LR, "amp": cfg.amp, "threads": cfg.threads,
            "device": str(device), "kernels": cfg.kernels, "dataset": str(cfg.dataset) if cfg.dataset else None}  # fmt: skip
    results: dict[str, float] = {}
    for batch in cfg.batch_sizes:
        runs = _runs(cfg, {**spec, "batch": batch})
        row = peer_runs.compare(f"batch_{batch}", runs, cfg.repeats, device.type)
        log.log([len(results)], row)
        results |= row
    return results


def _cuda_graph(model: nn.Module, numerical: torch.Tensor, categorical: torch.Tensor, amp: amp_lib.Amp):
    """Capture one forward with static inputs; returns replay() -> logits (reference: 10 warm-up calls on a
    side stream, then capture, as NVIDIA's CudaGraphWrapper in main.py)."""
    static_num, static_cat = numerical.clone(), categorical.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(10):
            with amp.autocast():
                model(static_num, static_cat)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), amp.autocast():
        static_out = torch.sigmoid(model(static_num, static_cat).float())

    def replay(num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        static_num.copy_(num)
        static_cat.copy_(cat)
        graph.replay()
        return static_out

    return replay


def _inference_model(checkpoint: Path | None, sizes: DlrmSizes, device: torch.device) -> DLRM:
    if checkpoint is None:
        torch.manual_seed(0)
        return DLRM(sizes, sparse=False).to(device).eval()
    try:
        return load_model(checkpoint, device)[0].eval()
    except FileNotFoundError as e:  # another recipe's or a corrupt file is a CheckpointError already
        raise InputError(str(e)) from None


@torch.no_grad()
def bench_inference(
    cfg: BenchmarkConfig, sizes: DlrmSizes, device: torch.device, log: JsonLogger
) -> dict[str, float]:
    model = _inference_model(cfg.checkpoint, sizes, device)
    amp = amp_lib.setup(cfg.amp, device)
    results: dict[str, float] = {}
    for batch in cfg.batch_sizes:
        data = make_batches(cfg.dataset, model.sizes, batch, 4, device)
        use_graph = device.type == "cuda" and cfg.cuda_graphs and batch <= cfg.cuda_graph_max_batch
        if use_graph:
            run = _cuda_graph(model, data[0].numerical, data[0].categorical, amp)
        else:

            def run(num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
                with amp.autocast():
                    return torch.sigmoid(model(num, cat).float())

        def run_batch(i: int, run=run, data: list[dlrm_data.DlrmBatch] = data) -> None:
            b = data[i % len(data)]
            run(b.numerical, b.categorical)

        lat = throughput.latencies(run_batch, cfg.warmup, cfg.num_batches, device)
        row = throughput.latency_row(batch, lat, {f"batch_{batch}_cuda_graph": float(use_graph)})
        log.log([len(results)], row)
        results |= row
    results["peak_memory_gib"] = throughput.peak_memory_gib(device)
    return results


def _sizes(cfg: BenchmarkConfig, device: torch.device) -> DlrmSizes:
    tables = cfg.synthetic_dataset_table_sizes
    if cfg.dataset is not None:
        tables = dlrm_data.open_dataset(cfg.dataset).cardinalities
    elif tables is None:
        tables = CRITEO_FL15_TABLE_SIZES if device.type == "cuda" else CPU_TABLES
    return DlrmSizes(table_sizes=tuple(tables), embedding_dim=cfg.embedding_dim,
                     bottom_mlp_sizes=tuple(cfg.bottom_mlp_sizes), top_mlp_sizes=tuple(cfg.top_mlp_sizes))  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(BenchmarkConfig, argv, prog="python -m dlrm.benchmark", description=__doc__)
    train_mode = cfg.mode == "train"
    cfg = dataclasses.replace(
        cfg,
        batch_sizes=cfg.batch_sizes or ([2048, 4096] if train_mode else [1, 64, 4096, 32768]),
        warmup=cfg.warmup if cfg.warmup is not None else (5 if train_mode else 10),
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = entry.start(cfg)
    sizes = _sizes(cfg, env.device)
    log = entry.open_log(cfg, env, {}, torch=torch.__version__, threads=torch.get_num_threads())
    results = (bench_train if train_mode else bench_inference)(cfg, sizes, env.device, log)
    return entry.finish(env, log, results)


if __name__ == "__main__":
    cli.run(main)
