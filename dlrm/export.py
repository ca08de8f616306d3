"""Export a trained DLRM checkpoint for serving: TorchScript and ONNX, same outputs as the eager model.

  python -m dlrm.export --checkpoint runs/dlrm/best.pt --output exported/dlrm
  python -m dlrm.export --checkpoint runs/dlrm/best.pt --output exported/dlrm --format onnx --overwrite

Writes into DIR (atomically: a temp dir beside it, renamed when complete):
  model.pt           TorchScript (torch.jit.trace; load with torch.jit.load, no recipe code needed)
  model.onnx         ONNX, dynamic batch axis; weights over 2 GB go to model.onnx.data beside it
  export_info.json   inputs/outputs (names, dtypes, shapes), opset, exporter, model sizes, versions
Inputs: numerical [batch, num_numerical] float32, categorical [batch, F] int64; output: logits [batch]
float32 (apply sigmoid for a click probability). The model is rebuilt from the checkpoint alone.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from common import checkpoint, cli, config, output_dir
from common.config import flag
from common.errors import InputError, RecipeError, RunError, UsageError
from common.logging import log_run
from dlrm import scoring
from dlrm.model import DLRM, DlrmSizes

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.pt", "onnx": "model.onnx"}
OPSET = 18  # the opset both exporters emit on torch 2.11-2.13 and onnxruntime >= 1.14 runs
INPUT_NAMES = ("numerical", "categorical")
OUTPUT_NAMES = ("logits",)


def load_for_export(path: Path) -> tuple[DLRM, dict]:
    """The checkpoint's model in eval mode on CPU with DENSE embeddings: sparse=True only changes the
    gradient layout, not the forward, and the exporters trace the forward (same weights either way)."""
    # another recipe's checkpoint, foreign hyperparams or state dict: one line naming the file
    model, ckpt = checkpoint.load_model(path, scoring.build_model, recipe="dlrm", what="a DLRM checkpoint")
    return model.eval(), ckpt


def example_inputs(sizes: DlrmSizes, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid random inputs (ids within every table) for tracing and for checking the exported files."""
    g = torch.Generator().manual_seed(0)
    numerical = torch.randn(batch_size, sizes.num_numerical, generator=g)
    rows = torch.tensor(sizes.table_sizes, dtype=torch.float64)
    categorical = (
        torch.rand(batch_size, len(sizes.table_sizes), generator=g, dtype=torch.float64) * rows
    ).long()
    return numerical, categorical


def export_torchscript(model: DLRM, inputs: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    """torch.jit.trace: the forward has no data-dependent control flow, so the trace is the model for any
    batch size (checked by the tests). torch.jit.script does not compile DLRM (list comprehension with a
    condition in Mlp.linears), and tracing keeps model code free of TorchScript annotations."""
    with torch.no_grad():
        traced = torch.jit.trace(model, inputs, check_trace=False)
    torch.jit.save(traced, str(path))


def export_onnx(model: DLRM, inputs: tuple[torch.Tensor, torch.Tensor], path: Path, exporter: str) -> None:
    """torch.onnx.export, batch axis dynamic. exporter "dynamo" (default): the torch.export-based exporter,
    torch's default since 2.9 with the same API in 2.11 and 2.13, needs onnxscript; weights over 2 GB
    (protobuf's limit) go to one external-data file. "torchscript": the older exporter (deprecated in
    torch 2.13, one file per weight above 2 GB), kept as a fallback that needs onnx but not onnxscript."""
    if exporter == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model, inputs, str(path), dynamo=False, input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES), opset_version=OPSET,
                dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)},
            )  # fmt: skip
        return
    batch = torch.export.Dim("batch")
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" x4
    try:
        with warnings.catch_warnings():
            # Known noise: both inputs share the "batch" axis (so one name is "not used"), and a pytree
            # deprecation inside torch.export (torch 2.13).
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                model, inputs, dynamo=True, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                opset_version=OPSET, dynamic_shapes=({0: batch}, {0: batch}), verbose=False,
            )  # fmt: skip
            program.save(str(path))  # weights over 2 GB go to an external-data file automatically
    finally:
        registration.setLevel(level)


def export_info(sizes: DlrmSizes, formats: list[str], exporter: str | None, checkpoint_path: Path) -> dict:
    features = len(sizes.table_sizes)
    return {
        "format_version": 1,
        "files": {f: FILES[f] for f in formats},
        "inputs": [
            {"name": "numerical", "dtype": "float32", "shape": ["batch", sizes.num_numerical]},
            {"name": "categorical", "dtype": "int64", "shape": ["batch", features],
             "range": "[0, table_sizes[i])" if not sizes.hash_indices else "any non-negative id (hashed)"},
        ],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch"], "note": "sigmoid -> CTR"}],
        "onnx_opset": OPSET if "onnx" in formats else None,
        "onnx_exporter": exporter,
        "model": sizes.as_dict(),
        "checkpoint": str(checkpoint_path),
        "torch_version": torch.__version__,
    }  # fmt: skip


def check_exported(
    model: DLRM, directory: Path, formats: list[str], batch_sizes: tuple[int, ...]
) -> tuple[float, list[str]]:
    """(largest |exported - eager| logit over random batches of several sizes, formats checked):
    TorchScript always, ONNX when onnxruntime is installed. A file that does not reproduce the model is
    never published."""
    worst = 0.0
    ts = torch.jit.load(str(directory / FILES["torchscript"])) if "torchscript" in formats else None
    session = None
    if "onnx" in formats:
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
        if ort is not None:
            session = ort.InferenceSession(str(directory / FILES["onnx"]), providers=["CPUExecutionProvider"])
    for batch_size in batch_sizes:
        numerical, categorical = example_inputs(model.sizes, batch_size)
        with torch.no_grad():
            eager = model(numerical, categorical)
            if ts is not None:
                worst = max(worst, float((ts(numerical, categorical) - eager).abs().max()))
        if session is not None:
            out = session.run(None, {"numerical": numerical.numpy(), "categorical": categorical.numpy()})[0]
            worst = max(worst, float((torch.from_numpy(out) - eager).abs().max()))
    return worst, [f for f, done in (("torchscript", ts), ("onnx", session)) if done is not None]


def export(
    checkpoint_path: Path, output: Path, formats: list[str], batch_size: int, overwrite: bool = False,
    onnx_exporter: str = "dynamo",
) -> dict:  # fmt: skip
    """Export into a temp dir beside `output`, check it, then rename: never a half-written DIR, and
    never an --output holding the checkpoint (--overwrite would delete the trained model)."""
    output_dir.check_disjoint(output, [checkpoint_path], ValueError, "--output")
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise FileExistsError(
            f"{output} exists and is not an empty directory; pass --overwrite to replace it"
        )
    model, _ = load_for_export(checkpoint_path)
    inputs = example_inputs(model.sizes, batch_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        if "torchscript" in formats:
            export_torchscript(model, inputs, tmp / FILES["torchscript"])
        if "onnx" in formats:
            export_onnx(model, inputs, tmp / FILES["onnx"], onnx_exporter)
        worst, checked = check_exported(model, tmp, formats, (1, batch_size))
        if not worst <= 1e-4:
            raise RuntimeError(f"exported model differs from the eager one by {worst:.3g} (max |logit diff|)")
        info = export_info(
            model.sizes, formats, onnx_exporter if "onnx" in formats else None, checkpoint_path
        )
        if (tmp / f"{FILES['onnx']}.data").exists():  # ONNX weights over 2 GB
            info["files"]["onnx_external_data"] = f"{FILES['onnx']}.data"
        info["max_abs_diff_vs_eager"] = worst
        info["checked_with"] = checked  # onnx is missing here when onnxruntime is not installed
        (tmp / "export_info.json").write_text(json.dumps(info, indent=2) + "\n")
        tmp.chmod(0o755)
        if output.exists():
            old = output.with_name(f".{output.name}.old-{time.time_ns()}")
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def required_packages(formats: list[str], onnx_exporter: str) -> list[str]:
    """Packages torch.onnx.export imports: onnx always, onnxscript for the dynamo exporter."""
    if "onnx" not in formats:
        return []
    return ["onnx", "onnxscript"] if onnx_exporter == "dynamo" else ["onnx"]


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path | None = flag(None, "checkpoint written by dlrm.train (required)")
    output: Path | None = flag(None, "directory to create (required)")
    format: list[str] = flag(list(FORMATS), f"formats to write, of {' '.join(FORMATS)}")
    batch_size: int = flag(1024, "batch of the example input used to trace/export and check")
    onnx_exporter: Literal["dynamo", "torchscript"] = flag(
        "dynamo", "torch.onnx.export path: dynamo=True (needs onnxscript) or the older TorchScript-based one"
    )
    overwrite: bool = flag(False, "replace a non-empty --output")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run; none = no log")

    def validate(self) -> None:
        if self.checkpoint is None or self.output is None:
            raise ValueError("--checkpoint and --output are required")
        if not self.format or not set(self.format) <= set(FORMATS):
            raise ValueError(f"--format takes {' '.join(FORMATS)}, got {' '.join(self.format) or 'nothing'}")
        if self.batch_size < 2:
            raise ValueError(
                "--batch_size must be >= 2 (torch.export specialises a batch of 1 to a constant)"
            )


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(ExportConfig, argv, prog="python -m dlrm.export", description=__doc__.split("\n\n")[0])
    formats = sorted(set(cfg.format), key=FORMATS.index)
    if missing := [
        m for m in required_packages(formats, cfg.onnx_exporter) if importlib.util.find_spec(m) is None
    ]:
        raise UsageError(f"--format onnx with --onnx_exporter {cfg.onnx_exporter} needs the package(s) "
                         f"{', '.join(missing)}: pip install {' '.join(missing)} (or --format torchscript)")  # fmt: skip
    t0 = time.perf_counter()
    try:
        info = export(cfg.checkpoint, cfg.output, formats, cfg.batch_size, cfg.overwrite, cfg.onnx_exporter)
    except RecipeError:
        raise
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise InputError(str(e)) from None
    except OSError as e:
        if (message := output_dir.no_space_message(e, cfg.output)) is None:
            raise
        raise RunError(message) from None
    seconds = time.perf_counter() - t0
    print(f"exported {', '.join(info['files'])} to {cfg.output} in {seconds:.1f} s "
          f"(max |logit - eager| {info['max_abs_diff_vs_eager']:.2e})", file=sys.stderr)  # fmt: skip
    summary = {"export_time": seconds, "max_abs_diff_vs_eager": info["max_abs_diff_vs_eager"]}
    return log_run(cfg.log_path, config.to_dict(cfg), summary)


if __name__ == "__main__":
    cli.run(main)
