"""NCF throughput and latency benchmark (a command, not a test): samples/s, latency percentiles, peak memory.

  python -m ncf.benchmark --mode train                       # ml-20m sizes, batch 1M, vs a plain loop
  python -m ncf.benchmark --mode train --amp --batch_sizes 1048576 262144
  python -m ncf.benchmark --mode inference --checkpoint runs/ncf/best.pt --batch_sizes 1 64 4096 1048576
  python -m ncf.benchmark --mode train --data /data/cache/ml-20m   # table sizes and rows from a dataset

Train mode times the recipe's own step (ncf.steps.train_one_epoch on ncf.data.epoch_batches) after
warm-up and, with --compare_baseline (default on), a straightforward PyTorch NeuMF loop on the same batches:
four nn.Embedding tables, nn.Dropout, fp32, torch.optim.Adam defaults, zero_grad. Inference mode follows
the reference's inference.py: random ids, eval mode + sigmoid, 10 warm-up batches discarded.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from torch import nn

from common import amp as amp_lib
from common import cli, distributed, kernels, throughput
from common.logging import JsonLogger
from ncf import data as ncf_data
from ncf.checkpoints import load_model
from ncf.model import NeuMF, NeuMFSizes
from ncf.steps import train_one_epoch

ML20M = {"users": 138_493, "items": 26_744, "train_rows": 19_861_770}


class PlainNeuMF(nn.Module):
    """The baseline: NeuMF as most tutorials write it (same math and init as ncf.model.NeuMF)."""

    def __init__(self, sizes: NeuMFSizes) -> None:
        super().__init__()
        half = sizes.mlp_layers[0] // 2
        self.mf_user, self.mf_item = (
            nn.Embedding(sizes.num_users, sizes.mf_dim),
            nn.Embedding(sizes.num_items, sizes.mf_dim),
        )
        self.mlp_user, self.mlp_item = (
            nn.Embedding(sizes.num_users, half),
            nn.Embedding(sizes.num_items, half),
        )
        layers: list[nn.Module] = []
        for a, b in zip(sizes.mlp_layers[:-1], sizes.mlp_layers[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(sizes.dropout)]
        self.mlp = nn.Sequential(*layers)
        self.final = nn.Linear(sizes.mf_dim + sizes.mlp_layers[-1], 1)
        for emb in (self.mf_user, self.mf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, 0, 0.01)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        gmf = self.mf_user(user) * self.mf_item(item)
        mlp = self.mlp(torch.cat([self.mlp_user(user), self.mlp_item(item)], dim=1))
        return self.final(torch.cat([gmf, mlp], dim=1)).squeeze(1)


def synthetic_data(users: int, items: int, rows: int, device: torch.device) -> ncf_data.NcfData:
    g = torch.Generator().manual_seed(0)
    empty = torch.zeros(1, 2, dtype=torch.int32, device=device)
    return ncf_data.NcfData(
        train_users=torch.randint(0, users, (rows,), generator=g, dtype=torch.int32).to(device),
        train_items=torch.randint(0, items, (rows,), generator=g, dtype=torch.int32).to(device),
        train_labels=torch.ones(rows, device=device),
        test_users=empty, test_items=empty, test_labels=empty.float(), test_mask=empty.bool(),
        num_users=users, num_items=items,
    )  # fmt: skip


def time_steps(model, optimizers, amp, data, batch: int, warmup: int, steps: int, device) -> float:
    """Samples/s of `steps` optimizer steps after `warmup` steps, through the recipe's own training step."""
    gen = torch.Generator(device=device).manual_seed(1)
    batches = ncf_data.epoch_batches(data, 4, batch, 0, 1, gen)
    if ncf_data.steps_per_epoch(data.train_users.numel(), 4, batch) < warmup + steps:
        raise SystemExit(
            f"error: {data.train_users.numel()} rows give fewer than {warmup + steps} batches of {batch}"
        )
    train_one_epoch(model, itertools.islice(batches, warmup), optimizers, amp, 1, warmup, False)
    clock = throughput.Clock(device)
    clock.start()
    loss = train_one_epoch(model, itertools.islice(batches, steps), optimizers, amp, 1, steps, False)
    float(loss)  # forces completion
    return batch * steps / clock.lap()


def bench_train(args, device: torch.device, log: JsonLogger) -> dict[str, float]:
    sizes = dict(ML20M, users=args.users, items=args.items, train_rows=args.train_rows)
    if args.data is not None:
        loaded = ncf_data.load(args.data, device=device)
        data = loaded
        sizes = {
            "users": loaded.num_users,
            "items": loaded.num_items,
            "train_rows": loaded.train_users.numel(),
        }
    else:
        data = synthetic_data(sizes["users"], sizes["items"], sizes["train_rows"], device)
    model_sizes = NeuMFSizes(sizes["users"], sizes["items"])
    results: dict[str, float] = {}
    for batch in args.batch_sizes:
        torch.manual_seed(0)
        model = NeuMF(model_sizes, byte_dropout=device.type == "cpu").to(device)
        opt = torch.optim.Adam(model.parameters(), lr=0.0045, betas=(0.25, 0.5), fused=True)
        amp = amp_lib.setup(args.amp, device)
        step_model = torch.compile(model) if args.compile else model
        ours = time_steps(step_model, [opt], amp, data, batch, args.warmup, args.steps, device)
        row = {f"batch_{batch}_train_throughput": ours, "peak_memory_gib": throughput.peak_memory_gib(device)}
        del model, opt
        if args.compare_baseline:
            torch.manual_seed(0)
            plain = PlainNeuMF(model_sizes).to(device)
            plain_opt = torch.optim.Adam(plain.parameters(), lr=0.0045, betas=(0.25, 0.5))
            base = time_steps(plain, [plain_opt], amp_lib.setup(False, device), data, batch, args.warmup,
                              args.steps, device)  # fmt: skip
            row |= {f"batch_{batch}_baseline_throughput": base, f"batch_{batch}_speedup": ours / base}
            del plain, plain_opt
        log.log([len(results)], row)
        results |= row
    return results


@torch.no_grad()
def bench_inference(args, device: torch.device, log: JsonLogger) -> dict[str, float]:
    if args.checkpoint is not None:
        model = load_model(args.checkpoint, device)[0]
    else:
        model = NeuMF(NeuMFSizes(args.users, args.items)).to(device)
    model.eval()
    n_users, n_items = model.sizes.num_users, model.sizes.num_items
    amp = amp_lib.setup(args.amp, device)
    results: dict[str, float] = {}
    for batch in args.batch_sizes:
        users = torch.randint(0, n_users, (batch,), device=device)
        items = torch.randint(0, n_items, (batch,), device=device)

        def run(_: int, users: torch.Tensor = users, items: torch.Tensor = items) -> None:
            with amp.autocast():
                torch.sigmoid(model(users, items))

        row = throughput.latency_row(batch, throughput.latencies(run, args.warmup, args.num_batches, device))
        log.log([len(results)], row)
        results |= row
    results["peak_memory_gib"] = throughput.peak_memory_gib(device)
    return results


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="python -m ncf.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--mode", choices=("train", "inference"), default="train", help="what to time")
    p.add_argument(
        "--data", type=Path, default=None, help="prepared dataset (train mode); default: synthetic sizes"
    )
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="model to time (inference); default: random init"
    )
    p.add_argument("--users", type=int, default=ML20M["users"], help="synthetic user count")
    p.add_argument("--items", type=int, default=ML20M["items"], help="synthetic item count")
    p.add_argument("--train_rows", type=int, default=ML20M["train_rows"], help="synthetic training positives")
    p.add_argument(
        "--batch_sizes",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes (train: 1048576; inference: 1 4 16 64 256 1024 4096 16384 65536 262144 1048576)",
    )
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per batch size (train)")
    p.add_argument("--num_batches", type=int, default=200, help="timed batches per batch size (inference)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps/batches first (train: 2, inference: 10)"
    )
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16/fp16 autocast")
    p.add_argument(
        "--compare_baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train mode: also time the straightforward loop",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile our model (as ncf.train --compile); the warm-up steps absorb the compile time",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    p.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log")
    kernels.add_argument(p)
    args = p.parse_args(argv)  # fmt: skip
    kernels.set_policy(args.kernels)
    train_mode = args.mode == "train"
    args.batch_sizes = args.batch_sizes or ([2**20] if train_mode else [4**i for i in range(11)])
    args.warmup = args.warmup if args.warmup is not None else (2 if train_mode else 10)
    device = distributed.pick_device(0, args.device)
    log = JsonLogger(args.log_path, metadata={})
    log.parameters({**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "device": str(device),
                    "torch": torch.__version__, "threads": torch.get_num_threads()})  # fmt: skip
    results = (bench_train if train_mode else bench_inference)(args, device, log)
    log.summary(results)
    log.close()
    return results


if __name__ == "__main__":
    cli.run(main)
