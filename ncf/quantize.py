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

import copy
import sys
import time

import torch

from common import checkpoint, cli, config, entry, kernels
from common.errors import RunError
from common.logging import JsonLogger
from common.output_dir import no_space_message
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data
from ncf.calibration import calibrate, calibration_series, range_report
from ncf.config import QuantizeConfig
from ncf.inference_timing import Timing, time_models
from ncf.model import NeuMF
from ncf.quantized_model import QuantizedNeuMF, onednn_available, split_final
from ncf.ranking import evaluate

MODELS = ("float", "float_split", "int8", "int8_split")


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(QuantizeConfig, bare_batch_sizes(argv), prog="python -m ncf.quantize",
                       description=__doc__.split("\n\n")[0])  # fmt: skip
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = entry.start(cfg)  # on the CPU (QuantizeConfig.device)
    # everything is checked before the log is opened: a refused run touches no file
    ncf_checkpoints.check_quantized_output(cfg.output, cfg.checkpoint)
    model, ckpt = ncf_checkpoints.load_float(cfg.checkpoint)
    data = ncf_data.load(cfg.data, cfg.feature_spec_file, env.device)
    ncf_checkpoints.check_dataset(cfg.checkpoint, ckpt, data, cfg.data)
    int8_kernels = "onednn" if kernels.fast() and onednn_available(env.device) else "reference"
    log = entry.open_log(cfg, env, metrics_metadata(cfg.batch_sizes, cfg.topk), torch=torch.__version__,
                         threads=torch.get_num_threads(), int8_kernels=int8_kernels)  # fmt: skip

    models, report = quantized_models(
        model, data, cfg.calibration, cfg.seed, cfg.per_channel, cfg.valid_batch_size
    )
    log.log([0], report)
    k = cfg.topk
    accuracy = {}
    for name, m in models.items():
        result = evaluate(m, data, env, k, cfg.valid_batch_size)
        accuracy |= {f"{name}_hr@{k}": result[f"hr@{k}"], f"{name}_ndcg@{k}": result[f"ndcg@{k}"]}
    log.log([1], accuracy)
    timing = Timing(cfg.warmup, cfg.num_batches, cfg.bench_seconds)
    speed = timings(
        {name: models[name] for name in ("float", "int8", "int8_split")}, cfg.batch_sizes, timing, log
    )

    saved = "int8_split" if cfg.split_final else "int8"
    summary = {**report, **accuracy, **speed, f"hr@{k}": accuracy[f"{saved}_hr@{k}"],
               f"ndcg@{k}": accuracy[f"{saved}_ndcg@{k}"]}  # fmt: skip
    if cfg.output is not None:
        metrics = {key: v for key, v in accuracy.items() if key.startswith(saved + "_")}
        save_int8(cfg, models[saved], ckpt, data, metrics)
    summary = entry.finish(env, log, summary)
    print(format_table(summary, cfg.batch_sizes, k))
    if cfg.output is not None:
        print(f"saved {saved} ({'per-channel' if cfg.per_channel else 'per-tensor'} weights) to {cfg.output}")
    return summary


def bare_batch_sizes(argv: list[str] | None) -> list[str]:
    """`--batch_sizes` with no value (skip timing) as `--batch_sizes ''`: config list flags take one or
    more words, and an empty word is the empty list."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--batch_sizes" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("")
    return out


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


def quantized_models(
    model: NeuMF, data: ncf_data.NcfData, fraction: float, seed: int, per_channel: bool, chunk_rows: int
) -> tuple[dict[str, torch.nn.Module], dict[str, float]]:
    """The four models of MODELS, calibrated on a seeded `fraction` of the test series, and the calibration
    report (activation ranges, GMF levels, series and seconds)."""
    t0 = time.perf_counter()
    chosen = calibration_series(data.series, fraction, seed)
    ranges = calibrate(model, data.test_users[chosen], data.test_items[chosen], chunk_rows)
    models = {"float": model, "float_split": split_final(copy.deepcopy(model))}
    for name, split in (("int8", False), ("int8_split", True)):
        models[name] = QuantizedNeuMF.from_float(model, ranges, split, per_channel).eval()
    report = {
        **range_report(ranges),
        "calibration_series": len(chosen),
        "calibration_time": time.perf_counter() - t0,
    }
    return models, report


def timings(
    models: dict[str, torch.nn.Module], batch_sizes: list[int], timing: Timing, log: JsonLogger
) -> dict[str, float]:
    """time_models at every batch size, one log record (step 2, 3, ...) each; all rows merged."""
    speed: dict[str, float] = {}
    for step, batch in enumerate(batch_sizes, start=2):
        row = time_models(models, models["float"].sizes, batch, timing)
        log.log([step], row)
        speed |= row
    return speed


def save_int8(cfg: QuantizeConfig, model: QuantizedNeuMF, ckpt: dict, data: ncf_data.NcfData,
              metrics: dict[str, float]) -> None:  # fmt: skip
    """Write the chosen INT8 model to --output (atomic), with where it came from and how it scored."""
    try:
        checkpoint.save(
            cfg.output,
            model=model,
            hyperparams={**model.sizes.as_dict(), "quantization": {"split_final": cfg.split_final}},
            config={"source_checkpoint": str(cfg.checkpoint), "source_config": ckpt.get("config", {}),
                    "calibration": cfg.calibration, "seed": cfg.seed, "per_channel": cfg.per_channel},
            progress={"metrics": metrics},
            recipe="ncf", dataset=ncf_checkpoints.dataset_facts(data),
        )  # fmt: skip
    except OSError as e:
        raise RunError(
            no_space_message(e, cfg.output) or f"could not write --output {cfg.output}: {e}"
        ) from None


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
