"""What an NCF checkpoint must agree with before it is used: the dataset it was trained on, and for a
resumed run the flags that change the result.

Every ncf checkpoint is written with recipe="ncf" and `dataset_facts` of its training data. Evaluating or
quantizing checks users and items (the embedding tables' rows); resuming checks every fact, so a run is
never continued on other data, and compares its flags against the checkpoint's (common.checkpoint).
ncf.quantize's --output may replace an earlier INT8 model, never a float checkpoint or another file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from common import checkpoint
from common.checkpoint import CheckpointError
from ncf.data import NcfData
from ncf.model import NeuMF, NeuMFSizes
from ncf.quantized_model import QuantizedNeuMF

# Flags that cannot change a run's result, or legitimately extend it, so resuming may change them:
# where things are read/written, progress bars, the evaluation chunk size, the device, torch.compile and
# --kernels (same math, float summation order only), and --epochs / --threshold (a finished run may train on).
RESUME_IGNORE = frozenset(
    {"data", "feature_spec_file", "checkpoint_dir", "resume", "load_checkpoint_path", "log_path",
     "progress", "valid_batch_size", "device", "compile", "epochs", "threshold", "mode", "tf32",
     "kernels"}
)  # fmt: skip
TABLE_FACTS = ("num_users", "num_items")
_NAMES = {
    "num_users": "users",
    "num_items": "items",
    "train_rows": "training rows",
    "test_series": "test series",
}


def dataset_facts(data: NcfData) -> dict[str, int]:
    """The facts of the training data a checkpoint records: table sizes, and the row counts a resume checks."""
    return {
        "num_users": data.num_users,
        "num_items": data.num_items,
        "train_rows": data.train_users.numel(),
        "test_series": data.series,
    }


def check_dataset(path: Path | str, ckpt: dict[str, Any], data: NcfData, where: Path | str,
                  keys: tuple[str, ...] = TABLE_FACTS, hint: str = "") -> None:  # fmt: skip
    """Refuse a checkpoint whose training data differs from `data` in `keys` (older files without dataset
    facts are checked on their table sizes)."""
    saved = dict(ckpt.get("hyperparams", {})) | dict(ckpt.get("dataset") or {})
    now = dataset_facts(data)
    diffs = [
        f"{saved[k]} {_NAMES[k]} in the checkpoint, {now[k]} in {where}"
        for k in keys
        if k in saved and saved[k] != now[k]
    ]
    if diffs:
        raise CheckpointError(
            f"{path} was trained on another dataset: {'; '.join(diffs)}" + (f"; {hint}" if hint else "")
        )


def build_model(hyperparams: dict[str, Any]) -> NeuMF | QuantizedNeuMF:
    """A float NeuMF (ncf.train), or an INT8 QuantizedNeuMF (ncf.quantize: hyperparams carry "quantization")."""
    quantization = hyperparams.pop("quantization", None)
    sizes = NeuMFSizes.from_dict(hyperparams)
    return NeuMF(sizes) if quantization is None else QuantizedNeuMF(sizes, **quantization)


def _existing(path: Path) -> Path:
    """The path of a checkpoint to read; a missing one is an input error that names it (common.checkpoint
    raises FileNotFoundError, which the CLI would print as a traceback)."""
    if not Path(path).exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_model(path: Path, device: torch.device) -> tuple[NeuMF | QuantizedNeuMF, dict]:
    """The checkpoint's model (float or INT8) on `device`, and the checkpoint; the caller checks the data."""
    model, ckpt = checkpoint.load_model(_existing(path), build_model, recipe="ncf", what="a NeuMF model")
    return model.to(device), ckpt


def load_float(path: Path) -> tuple[NeuMF, dict]:
    """The float NeuMF of an ncf.train checkpoint (eval mode) for ncf.quantize; an INT8 one is refused."""

    def build(hyperparams: dict) -> NeuMF:
        if "quantization" in hyperparams:
            raise CheckpointError(
                f"{path} is already an INT8 model written by ncf.quantize; pass the float checkpoint"
            )
        return NeuMF(NeuMFSizes.from_dict(hyperparams))

    what = "float NeuMF hyperparams (num_users, num_items, mf_dim, mlp_layers, dropout)"
    model, ckpt = checkpoint.load_model(_existing(path), build, recipe="ncf", what=what)
    return model.eval(), ckpt


def load_weights(path: Path, sizes: NeuMFSizes, data: NcfData, where: Path | str) -> dict[str, Any]:
    """The ncf float checkpoint for --load_checkpoint_path, checked to fit the model being trained."""
    ckpt = checkpoint.load(_existing(path), recipe="ncf")
    hyper = dict(ckpt["hyperparams"])
    if "quantization" in hyper:
        raise CheckpointError(f"{path} is an INT8 model written by ncf.quantize; pass a float checkpoint")
    check_dataset(path, ckpt, data, where)
    want = sizes.as_dict()
    diffs = [
        f"{k} {hyper.get(k)!r} in the checkpoint, {want[k]!r} now"
        for k in ("mf_dim", "mlp_layers")
        if hyper.get(k) != want[k]
    ]
    if diffs:
        raise CheckpointError(f"{path} does not fit the model to train: {'; '.join(diffs)}")
    return ckpt


def check_quantized_output(output: Path | None, source: Path) -> None:
    """--output may replace an earlier INT8 model, never the float checkpoint it came from or any other
    file that is not an ncf.quantize output (checked before the minutes of calibration and timing)."""
    if output is None:
        return
    if output.resolve() == source.resolve():
        raise CheckpointError(
            f"--output {output} is the --checkpoint itself; writing it would replace the float model: "
            "choose another --output"
        )
    if output.exists():
        try:
            quantized = "quantization" in checkpoint.load(output, recipe="ncf")["hyperparams"]
        except (ValueError, OSError):  # not a checkpoint at all
            quantized = False
        if not quantized:
            raise CheckpointError(
                f"--output {output} exists and is not an INT8 model written by ncf.quantize; refusing to "
                "replace it: choose another --output"
            )
