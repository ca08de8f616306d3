"""DLRM throughput and latency benchmark (a command, not a test): samples/s, latency percentiles, peak memory.

  python -m dlrm.benchmark --mode train                             # CPU: 26 x 100k tables, dim 16, the issue's shapes
  python -m dlrm.benchmark --mode train --embedding_dim 64 --bottom_mlp_sizes 512 256 64 --batch_sizes 2048 4096
  python -m dlrm.benchmark --mode train --amp                        # bf16 autocast (CPU avx512_bf16 / GPU)
  python -m dlrm.benchmark --mode train --dataset /data/dlrm          # through the on-disk loader
  python -m dlrm.benchmark --mode inference --checkpoint runs/dlrm.pt --batch_sizes 1 64 4096 32768

Train mode times the recipe's own step (dlrm.steps.ReplicatedStep, as dlrm.train runs it) after warm-up and, with --compare_baseline
(default on), two baselines on the same batches: "plain" = the same DLRM trained the textbook way (autograd
sparse COO gradients + torch.optim.SGD), and "torchrec_style" = TorchRec's unsharded DLRM computation
(EmbeddingBag(mode="sum") per table fed by values + offsets, as EmbeddingBagCollection does, with its
default dense table gradients; InteractionArch pairs without padding). TorchRec itself is not importable here:
fbgemm-gpu(-cpu) 1.9.0 and the 2026-10 nightly are built against another torch ABI (undefined symbols).
Inference mode reports mean/p50/p90/p95/p99 latency and throughput per batch size; on CUDA, batches up to
--cuda_graph_max_batch run as a captured CUDA graph (launch-bound small batches, as NVIDIA's --cuda_graphs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common import amp as amp_lib
from common import cli, distributed, kernels, throughput
from common.logging import JsonLogger
from dlrm import data as dlrm_data
from dlrm.lr_schedule import LrSchedule
from dlrm.model import CRITEO_FL15_TABLE_SIZES, DLRM, DlrmSizes
from dlrm.scoring import load_model
from dlrm.steps import ReplicatedStep

CPU_TABLES = (100_000,) * 26  # the CPU comparison (and DLE's prepare_synthetic_dataset default)


class TorchRecStyleDLRM(nn.Module):
    """torchrec.models.dlrm.DLRM computed with plain torch: DenseArch (ReLU on every layer), one
    EmbeddingBag(sum, include_last_offset) per table over a jagged (values, offsets) input, InteractionArch
    (dense + upper-triangle dots, no padding), OverArch (ReLU MLP + final Linear)."""

    def __init__(self, sizes: DlrmSizes) -> None:
        super().__init__()
        d = sizes.embedding_dim
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(n, d, mode="sum", include_last_offset=True) for n in sizes.table_sizes
        )
        dims = [sizes.num_numerical, *sizes.bottom_mlp_sizes]
        self.dense_arch = nn.Sequential(
            *[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        )
        f = len(sizes.table_sizes) + 1
        self.register_buffer("triu", torch.triu_indices(f, f, offset=1), persistent=False)
        over = [d + f * (f - 1) // 2, *sizes.top_mlp_sizes[:-1]]
        layers = [m for a, b in zip(over, over[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        self.over_arch = nn.Sequential(*layers, nn.Linear(over[-1], 1))

    def forward(self, dense: torch.Tensor, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """values [F, B] int64 (one id per sample and feature: Criteo is one-hot), offsets [B + 1]."""
        pooled = torch.stack([t(values[i], offsets) for i, t in enumerate(self.tables)], dim=1)  # [B, F, D]
        x = self.dense_arch(dense)
        combined = torch.cat([x.unsqueeze(1), pooled], dim=1)
        z = torch.bmm(combined, combined.transpose(1, 2))
        return self.over_arch(torch.cat([x, z[:, self.triu[0], self.triu[1]]], dim=1)).squeeze(1)


def make_batches(
    args, sizes: DlrmSizes, batch: int, count: int, device: torch.device
) -> list[dlrm_data.DlrmBatch]:
    """`count` distinct batches, resident on the device (synthetic), or read through the real loader."""
    if args.dataset is not None:
        source = dlrm_data.DiskSource(dlrm_data.open_dataset(args.dataset), 0, 1, device, 8)
        steps = source.rows("train") // batch
        return list(source.train_batches(batch, [i % steps for i in range(count)]))
    gen = dlrm_data.SyntheticCriteo(sizes.table_sizes, sizes.num_numerical, seed=0)
    return [gen.sample(k, batch, device)[0] for k in range(count)]


def _time(step, batches, warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second of this process) of `steps` steps after `warmup`
    steps. The second is what an otherwise idle machine would give with one thread: on a shared machine
    wall time also counts other jobs' time slices (losses stay on the device until the end)."""
    for i in range(warmup):
        step(batches[i % len(batches)], i + 1)
    clock = throughput.Clock(device)
    clock.start()
    c0 = time.process_time()
    losses = [step(batches[(warmup + i) % len(batches)], warmup + i + 1) for i in range(steps)]
    float(torch.stack(losses).sum())
    samples = len(batches[0]) * steps
    return samples / clock.lap(), samples / (time.process_time() - c0)


def _plain_step(model: nn.Module, lr: float, torchrec_style: bool, amp: amp_lib.Amp):
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(batch: dlrm_data.DlrmBatch, _: int) -> torch.Tensor:
        with amp.autocast():
            if torchrec_style:
                b = len(batch)
                offsets = torch.arange(b + 1, device=batch.categorical.device)
                logits = model(batch.numerical, batch.categorical.t(), offsets)
            else:
                logits = model(batch.numerical, batch.categorical)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.label)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _torchrec_step(sizes: DlrmSizes, lr: float, amp: amp_lib.Amp):
    """TorchRec's own DLRM (torchrec.models.dlrm.DLRMTrain) under DistributedModelParallel on a 1-process
    gloo group, the planner's choice of kernel (FBGEMM's CPU table-batched embedding, SGD fused into the
    backward) and SGD for the dense part: TorchRec's documented training path. Needs torchrec + a
    matching fbgemm-gpu-cpu (torch 2.13: torchrec 1.8.0 + fbgemm-gpu-cpu 1.8.0, installed --no-deps)."""
    import os

    import torch.distributed as dist
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
    from torchrec.datasets.utils import Batch
    from torchrec.distributed import DistributedModelParallel
    from torchrec.models.dlrm import DLRM as TorchRecDLRM
    from torchrec.models.dlrm import DLRMTrain
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.keyed import KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        dist.init_process_group("gloo", rank=0, world_size=1)
    features = [f"f{i}" for i in range(len(sizes.table_sizes))]
    ebc = EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name=f"t{i}", embedding_dim=sizes.embedding_dim, num_embeddings=n,
                                   feature_names=[features[i]]) for i, n in enumerate(sizes.table_sizes)],
        device=torch.device("meta"),
    )  # fmt: skip
    model = DLRMTrain(TorchRecDLRM(embedding_bag_collection=ebc, dense_in_features=sizes.num_numerical,
                                   dense_arch_layer_sizes=list(sizes.bottom_mlp_sizes),
                                   over_arch_layer_sizes=list(sizes.top_mlp_sizes), dense_device=torch.device("cpu")))  # fmt: skip
    apply_optimizer_in_backward(torch.optim.SGD, model.model.sparse_arch.parameters(), {"lr": lr})
    dmp = DistributedModelParallel(module=model, device=torch.device("cpu"))
    dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                  lambda params: torch.optim.SGD(params, lr=lr))  # fmt: skip
    cache: dict[int, Batch] = {}

    def step(batch: dlrm_data.DlrmBatch, _: int) -> torch.Tensor:
        key = id(batch)
        if (
            key not in cache
        ):  # KJT construction is input preparation, not the step (TorchRec's loader does it)
            b = len(batch)
            kjt = KeyedJaggedTensor.from_lengths_sync(
                keys=features, values=batch.categorical.t().reshape(-1),
                lengths=torch.ones(b * len(features), dtype=torch.int32),
            )  # fmt: skip
            cache[key] = Batch(dense_features=batch.numerical, sparse_features=kjt, labels=batch.label)
        with amp.autocast():
            loss, _ = dmp(cache[key])
        dense.zero_grad()
        loss.backward()
        dense.step()
        return loss.detach()

    return step


def bench_train(args, sizes: DlrmSizes, device: torch.device, log: JsonLogger) -> dict[str, float]:
    env = distributed.DistEnv(0, 0, 1, device)
    schedule = LrSchedule(0.5, warmup_steps=0, decay_start_step=10**9)  # constant LR: speed only
    amp = amp_lib.setup(args.amp, device)  # every variant runs under the same precision
    results: dict[str, float] = {}
    for batch in args.batch_sizes:
        batches = make_batches(args, sizes, batch, args.distinct_batches, device)
        row: dict[str, float] = {}
        variants = {"ours": lambda: ReplicatedStep(DLRM(sizes, sparse=False).to(device), env, amp, schedule)}
        if args.compare_baseline:
            variants["plain"] = lambda: _plain_step(DLRM(sizes, sparse=True).to(device), 0.5, False, amp)
            variants["torchrec_style"] = lambda: _plain_step(
                TorchRecStyleDLRM(sizes).to(device), 0.5, True, amp
            )
        if args.compare_torchrec:
            variants["torchrec"] = lambda: _torchrec_step(sizes, 0.5, amp)
        for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit all alike
            for name, build in variants.items():
                torch.manual_seed(0)
                step = build()
                rates = _time(step, batches, args.warmup, args.steps, device)
                for kind, rate in zip(("train_throughput", "cpu_throughput"), rates):
                    key = f"batch_{batch}_{name}_{kind}"
                    row[key] = max(row.get(key, 0.0), rate)  # best of repeats: the least-disturbed run
                del step
        for name in variants:
            if name != "ours":
                row[f"batch_{batch}_speedup_vs_{name}"] = (
                    row[f"batch_{batch}_ours_train_throughput"]
                    / row[f"batch_{batch}_{name}_train_throughput"]
                )
        row["peak_memory_gib"] = throughput.peak_memory_gib(device)
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


@torch.no_grad()
def bench_inference(args, sizes: DlrmSizes, device: torch.device, log: JsonLogger) -> dict[str, float]:
    if args.checkpoint is not None:
        try:
            model = load_model(args.checkpoint, device)[0]
        except (FileNotFoundError, ValueError) as e:  # missing, corrupt or another recipe's: one line
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        sizes = model.sizes
    else:
        torch.manual_seed(0)
        model = DLRM(sizes, sparse=False).to(device)
    model.eval()
    amp = amp_lib.setup(args.amp, device)
    results: dict[str, float] = {}
    for batch in args.batch_sizes:
        data = make_batches(args, sizes, batch, 4, device)
        use_graph = device.type == "cuda" and args.cuda_graphs and batch <= args.cuda_graph_max_batch
        if use_graph:
            run = _cuda_graph(model, data[0].numerical, data[0].categorical, amp)
        else:

            def run(num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
                with amp.autocast():
                    return torch.sigmoid(model(num, cat).float())

        def run_batch(i: int, run=run, data: list[dlrm_data.DlrmBatch] = data) -> None:
            b = data[i % len(data)]
            run(b.numerical, b.categorical)

        lat = throughput.latencies(run_batch, args.warmup, args.num_batches, device)
        row = throughput.latency_row(batch, lat, {f"batch_{batch}_cuda_graph": float(use_graph)})
        log.log([len(results)], row)
        results |= row
    results["peak_memory_gib"] = throughput.peak_memory_gib(device)
    return results


def _sizes(args, device: torch.device) -> DlrmSizes:
    tables = args.synthetic_dataset_table_sizes
    if args.dataset is not None:
        tables = dlrm_data.open_dataset(args.dataset).cardinalities
    elif tables is None:
        tables = CRITEO_FL15_TABLE_SIZES if device.type == "cuda" else CPU_TABLES
    return DlrmSizes(table_sizes=tuple(tables), embedding_dim=args.embedding_dim,
                     bottom_mlp_sizes=tuple(args.bottom_mlp_sizes), top_mlp_sizes=tuple(args.top_mlp_sizes))  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="python -m dlrm.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--mode", choices=("train", "inference"), default="train", help="what to time")
    p.add_argument("--dataset", type=Path, default=None, help="prepared dataset (default: synthetic batches)")
    p.add_argument("--synthetic_dataset", action="store_true", help="synthetic batches (the default anyway)")
    p.add_argument("--synthetic_dataset_table_sizes", type=int, nargs="+", default=None,
                   help="table rows (None: Criteo FL15 on CUDA, 26 x 100000 on CPU)")  # fmt: skip
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="inference: model to time (default: random init)"
    )
    p.add_argument("--embedding_dim", type=int, default=16, help="embedding size")
    p.add_argument("--bottom_mlp_sizes", type=int, nargs="+", default=[512, 256, 16], help="bottom MLP")
    p.add_argument("--top_mlp_sizes", type=int, nargs="+", default=[512, 256, 1], help="top MLP")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=None,
                   help="train: 2048 4096; inference: 1 64 4096 32768")  # fmt: skip
    p.add_argument("--steps", type=int, default=30, help="timed steps per batch size (train)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps/batches first (train: 5, inference: 10)"
    )
    p.add_argument("--repeats", type=int, default=3, help="train: interleaved repeats, best kept")
    p.add_argument("--distinct_batches", type=int, default=8, help="train: distinct batches cycled through")
    p.add_argument("--num_batches", type=int, default=200, help="timed batches per batch size (inference)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16/fp16 autocast")
    p.add_argument(
        "--cuda_graphs", action=argparse.BooleanOptionalAction, default=True, help="inference on CUDA"
    )
    p.add_argument("--cuda_graph_max_batch", type=int, default=4096, help="largest batch run as a CUDA graph")
    p.add_argument("--compare_baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="train: also time the plain and TorchRec-style baselines")  # fmt: skip
    p.add_argument("--compare_torchrec", action=argparse.BooleanOptionalAction, default=False,
                   help="train: also time TorchRec's DLRM (needs torchrec + fbgemm-gpu-cpu; CPU only)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    p.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log")
    kernels.add_argument(p)
    args = p.parse_args(argv)
    kernels.set_policy(args.kernels)
    train_mode = args.mode == "train"
    args.batch_sizes = args.batch_sizes or ([2048, 4096] if train_mode else [1, 64, 4096, 32768])
    args.warmup = args.warmup if args.warmup is not None else (5 if train_mode else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = distributed.pick_device(0, args.device)
    sizes = _sizes(args, device)
    log = JsonLogger(args.log_path, metadata={})
    log.parameters({**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "device": str(device),
                    "torch": torch.__version__, "threads": torch.get_num_threads()})  # fmt: skip
    results = (bench_train if train_mode else bench_inference)(args, sizes, device, log)
    log.summary(results)
    log.close()
    return results


if __name__ == "__main__":
    cli.run(main)
