"""INT8 post-training quantization of a trained NeuMF checkpoint (Distiller asym_u), split final layer.

  python -m ncf.quantize --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt
  python -m ncf.quantize --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt --per_channel --split_final \
      --output runs/ncf/int8.pt --log_path runs/ncf/quantize.json
  python -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/int8.pt

Static PTQ on CPU: per-row int8 embedding tables, int8 weights (per channel with --per_channel), 8-bit
asymmetric activations whose ranges are calibrated on a seeded --calibration fraction of the test series.
Always evaluates all four models (float, float + split, INT8, INT8 + split), logs the branch ranges that
motivate the split, and times float vs INT8 inference; --split_final picks the INT8 model to --output.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from common import checkpoint, cli, kernels, throughput
from common.checkpoint import CheckpointError
from common.distributed import DistEnv
from common.feature_spec import FeatureSpecError
from common.logging import JsonLogger
from common.output_dir import no_space_message
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data
from ncf.model import NeuMF, NeuMFSizes
from ncf.quantized_model import QuantizedNeuMF, SplitFinal, activation_qparams, onednn_available, split_final
from ncf.ranking import evaluate

MODELS = ("float", "float_split", "int8", "int8_split")


def metrics_metadata(batch_sizes: list[int], k: int) -> dict[str, dict]:
    meta = {f"{m}_{metric}@{k}": {"format": ":.5f"} for m in MODELS for metric in ("hr", "ndcg")}
    meta |= {f"hr@{k}": {"format": ":.5f"}, f"ndcg@{k}": {"format": ":.5f"}}
    for m in MODELS:
        for b in batch_sizes:
            meta[f"{m}_batch_{b}_mean_throughput"] = {"unit": "samples/s", "format": ":.3e"}
            meta |= {
                f"{m}_batch_{b}_{s}_latency": {"unit": "s", "format": ":.3e"} for s in ("mean", "p50", "p99")
            }
            meta |= {f"{m}_batch_{b}_{s}speedup": {"format": ":.2f"} for s in ("", "p50_")}
    return meta


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_float(path: Path) -> tuple[NeuMF, dict]:
    """The float NeuMF of an ncf.train checkpoint, or ValueError saying why the file is not one."""

    def build(hyperparams: dict) -> NeuMF:
        if "quantization" in hyperparams:
            raise CheckpointError(
                f"{path} is already an INT8 model written by ncf.quantize; pass the float checkpoint"
            )
        return NeuMF(NeuMFSizes.from_dict(hyperparams))

    model, ckpt = checkpoint.load_model(
        path,
        build,
        recipe="ncf",
        what="float NeuMF hyperparams (num_users, num_items, mf_dim, mlp_layers, dropout)",
    )
    return model.eval(), ckpt


def calibration_series(series: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded random choice of round(fraction * series) (at least 1) test series."""
    count = max(1, round(fraction * series))
    return torch.randperm(series, generator=torch.Generator().manual_seed(seed))[:count].sort().values


@torch.no_grad()
def calibrate(model: NeuMF, users: torch.Tensor, items: torch.Tensor, chunk_rows: int) -> dict:
    """Observed (min, max) of every activation that gets an 8-bit range, over the given candidate rows.

    Keys: "mlp.{i}" = input of model.mlp[i] ("mlp.0": the embedding concat); "gmf" / "mlp_out" = the GMF
    and MLP halves of the final layer's input; "final_gmf_out" / "final_mlp_out" = the split layers'
    outputs (reported only: the INT8 model adds them in fp32).
    """
    split = (
        model.final
        if isinstance(model.final, SplitFinal)
        else SplitFinal.from_linear(model.final, model.mf_dim)
    )
    ranges: dict[str, tuple[float, float]] = {}

    def observe(name: str, t: torch.Tensor) -> None:
        lo, hi = float(t.min()), float(t.max())
        old = ranges.get(name, (lo, hi))
        ranges[name] = (min(old[0], lo), max(old[1], hi))

    def final_input(_module, args) -> None:
        x = args[0]
        gmf, mlp = x[:, : model.mf_dim], x[:, model.mf_dim :]
        for name, t in (("gmf", gmf), ("mlp_out", mlp), ("final_gmf_out", split.final_gmf(gmf)),
                        ("final_mlp_out", split.final_mlp(mlp))):  # fmt: skip
            observe(name, t)

    hooks = [model.final.register_forward_pre_hook(final_input)]
    for i in range(len(model.mlp)):
        hooks.append(model.mlp[i].register_forward_pre_hook(lambda _m, a, i=i: observe(f"mlp.{i}", a[0])))
    try:
        u, it = users.reshape(-1), items.reshape(-1)
        for start in range(0, u.numel(), chunk_rows):
            model(u[start : start + chunk_rows], it[start : start + chunk_rows])
    finally:
        for h in hooks:
            h.remove()
    return ranges


def range_report(ranges: dict) -> dict[str, float]:
    """All ranges, and how many of the 256 activation levels the GMF branch spans without the split (one
    range for concat(GMF, MLP); the reference: ~10 at ml-20m) and with it (its own range: 255)."""
    out = {f"range_{key}_{end}": v for key, pair in ranges.items() for end, v in zip(("min", "max"), pair)}
    span = ranges["gmf"][1] - ranges["gmf"][0]
    joint = (min(ranges["gmf"][0], ranges["mlp_out"][0]), max(ranges["gmf"][1], ranges["mlp_out"][1]))
    out["gmf_levels_no_split"] = span / activation_qparams(*joint)[0]
    out["gmf_levels_split"] = span / activation_qparams(*ranges["gmf"])[0]
    return out


@torch.no_grad()
def time_models(models: dict[str, torch.nn.Module], sizes: NeuMFSizes, batch: int, args) -> dict[str, float]:
    """Latency of sigmoid(model(users, items)) on random ids (as ncf.benchmark), the models taking turns
    batch by batch so that load from other processes hits them alike: --warmup untimed rounds, then at
    most --num_batches timed rounds, stopping once --bench_seconds have passed (at least 3)."""
    g = torch.Generator().manual_seed(batch)
    users = torch.randint(0, sizes.num_users, (batch,), generator=g)
    items = torch.randint(0, sizes.num_items, (batch,), generator=g)
    latencies: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.warmup):
        for m in models.values():
            torch.sigmoid(m(users, items))
    start = time.perf_counter()
    while len(latencies["float"]) < args.num_batches and (
        len(latencies["float"]) < 3 or time.perf_counter() - start < args.bench_seconds
    ):
        for name, m in models.items():
            t0 = time.perf_counter()
            torch.sigmoid(m(users, items))
            latencies[name].append(time.perf_counter() - t0)
    out = {}
    for name, values in latencies.items():
        lat, key = np.array(values), f"{name}_batch_{batch}"
        out |= {f"{key}_mean_throughput": batch / lat.mean(), f"{key}_mean_latency": lat.mean()}
        out |= {f"{key}_p{p}_latency": v for p, v in throughput.percentiles(lat, (50, 99)).items()}
    for name in models:  # vs float; the p50 ratio is robust to stalls caused by other processes
        key = f"{name}_batch_{batch}"
        if name != "float":
            out[f"{key}_speedup"] = (
                out[f"{key}_mean_throughput"] / out[f"float_batch_{batch}_mean_throughput"]
            )
            out[f"{key}_p50_speedup"] = out[f"float_batch_{batch}_p50_latency"] / out[f"{key}_p50_latency"]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ncf.quantize", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory (required)")
    p.add_argument("--checkpoint", type=Path, required=True, help="float NeuMF checkpoint from ncf.train")
    p.add_argument(
        "--feature_spec_file", default="feature_spec.yaml", help="feature spec, relative to --data"
    )
    p.add_argument("--calibration", type=float, default=0.1, help="fraction of test series to calibrate on")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration series choice")
    p.add_argument("--per_channel", action="store_true", help="per-output-channel weight scales")
    p.add_argument("--split_final", action="store_true", help="--output the INT8 model with the split final")
    p.add_argument("--output", type=Path, default=None, help="where to save the INT8 model (atomic)")
    p.add_argument("--log_path", type=Path, default=None, help="DLLogger JSON log")
    p.add_argument("--topk", "-k", type=int, default=10, help="K of HR@K / NDCG@K")
    p.add_argument("--valid_batch_size", type=int, default=2**16, help="candidate rows per forward (eval)")
    p.add_argument("--batch_sizes", type=int, nargs="*", default=[1, 256, 4096, 65536],
                   help="inference batch sizes to time (none: skip timing)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=5, help="untimed batches per batch size")
    p.add_argument("--num_batches", type=int, default=200, help="at most this many timed batches per size")
    p.add_argument("--bench_seconds", type=float, default=5.0, help="stop timing a size after this long")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    kernels.add_argument(p)
    args = p.parse_args(argv)
    if not 0.0 < args.calibration <= 1.0:
        p.error(f"--calibration must be in (0, 1], got {args.calibration}")
    if min([args.topk, args.valid_batch_size, args.num_batches, *args.batch_sizes]) < 1 or args.warmup < 0:
        p.error("--topk, --valid_batch_size, --num_batches and --batch_sizes must be positive, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    kernels.set_policy(args.kernels)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = DistEnv(0, 0, 1, torch.device("cpu"))  # a CPU tool
    try:  # before the log is opened: a refused run touches no file
        ncf_checkpoints.check_quantized_output(args.output, args.checkpoint)
    except ValueError as e:
        _fail(str(e))
    log = JsonLogger(args.log_path, metadata=metrics_metadata(args.batch_sizes, args.topk))
    int8_kernels = "onednn" if kernels.fast() and onednn_available(env.device) else "reference"
    log.parameters({**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "int8_kernels": int8_kernels})  # fmt: skip
    try:
        model, ckpt = load_float(args.checkpoint)
        data = ncf_data.load(args.data, args.feature_spec_file, env.device)
        ncf_checkpoints.check_dataset(args.checkpoint, ckpt, data, args.data)
    except (FeatureSpecError, FileNotFoundError, ValueError) as e:
        _fail(str(e))

    t0 = time.perf_counter()
    chosen = calibration_series(data.series, args.calibration, args.seed)
    ranges = calibrate(model, data.test_users[chosen], data.test_items[chosen], args.valid_batch_size)
    models = {"float": model, "float_split": split_final(copy.deepcopy(model))}
    for name, split in (("int8", False), ("int8_split", True)):
        models[name] = QuantizedNeuMF.from_float(model, ranges, split, args.per_channel).eval()
    report = {
        **range_report(ranges),
        "calibration_series": len(chosen),
        "calibration_time": time.perf_counter() - t0,
    }
    log.log([0], report)

    k = args.topk
    accuracy = {}
    for name, m in models.items():
        result = evaluate(m, data, env, k, args.valid_batch_size)
        accuracy |= {f"{name}_hr@{k}": result[f"hr@{k}"], f"{name}_ndcg@{k}": result[f"ndcg@{k}"]}
    log.log([1], accuracy)

    speed: dict[str, float] = {}
    timed = {name: models[name] for name in ("float", "int8", "int8_split")}
    for step, batch in enumerate(args.batch_sizes, start=2):
        row = time_models(timed, model.sizes, batch, args)
        log.log([step], row)
        speed |= row

    saved = "int8_split" if args.split_final else "int8"
    summary = {
        **report,
        **accuracy,
        **speed,
        f"hr@{k}": accuracy[f"{saved}_hr@{k}"],
        f"ndcg@{k}": accuracy[f"{saved}_ndcg@{k}"],
    }
    if args.output is not None:
        try:
            checkpoint.save(
                args.output,
                model=models[saved],
                hyperparams={**model.sizes.as_dict(), "quantization": {"split_final": args.split_final}},
                config={"source_checkpoint": str(args.checkpoint), "source_config": ckpt.get("config", {}),
                        "calibration": args.calibration, "seed": args.seed, "per_channel": args.per_channel},
                progress={"metrics": {key: v for key, v in accuracy.items() if key.startswith(saved + "_")}},
                recipe="ncf", dataset=ncf_checkpoints.dataset_facts(data),
            )  # fmt: skip
        except OSError as e:
            _fail(no_space_message(e, args.output) or f"could not write --output {args.output}: {e}")
    log.summary(summary)
    log.close()
    print(format_table(summary, args.batch_sizes, k))
    if args.output is not None:
        print(
            f"saved {saved} ({'per-channel' if args.per_channel else 'per-tensor'} weights) to {args.output}"
        )
    return summary


def format_table(summary: dict, batch_sizes: list[int], k: int) -> str:
    """The four models' HR/NDCG, and per timed batch size the median-latency samples/s (x speed-up)."""
    lines = [
        f"{'model':<11} {f'HR@{k}':>7} {f'NDCG@{k}':>7}"
        + "".join(f" {f'batch {b}':>21}" for b in batch_sizes)
    ]
    for name in MODELS:
        cells = ""
        for b in batch_sizes:
            p50, gain = (
                summary.get(f"{name}_batch_{b}_p50_latency"),
                summary.get(f"{name}_batch_{b}_p50_speedup"),
            )
            cell = (
                "-" if p50 is None else f"{b / p50:.3e}/s" + (f" (x{gain:.2f})" if gain is not None else "")
            )
            cells += f" {cell:>21}"
        lines.append(
            f"{name:<11} {summary[f'{name}_hr@{k}']:>7.4f} {summary[f'{name}_ndcg@{k}']:>7.4f}{cells}"
        )
    return "\n".join(lines) + (
        f"\nsamples/s = batch / p50 latency. GMF branch: {summary['gmf_levels_no_split']:.1f} of 256 activation "
        f"levels without the split, {summary['gmf_levels_split']:.1f} with it"
    )


if __name__ == "__main__":
    cli.run(main)
