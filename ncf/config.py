"""The NCF commands' configs: NcfConfig (ncf.train: every knob of training and evaluation, with DLE ncf.py's
names and defaults), EvaluateConfig (ncf.evaluate) and QuantizeConfig (ncf.quantize)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from common.config import ConfigError, flag
from common.kernels import HELP as KERNELS_HELP


@dataclass(frozen=True)
class NcfConfig:
    # data
    data: Path | None = flag(
        None, "directory holding the prepared dataset's feature spec (ncf.prepare_data output)"
    )
    feature_spec_file: str = flag("feature_spec.yaml", "feature spec file name, relative to --data")
    # model
    factors: int = flag(64, "GMF embedding size (predictive factors)", "-f")
    layers: list[int] = flag(
        [256, 256, 128, 64], "MLP sizes; layers[0]/2 is the MLP embedding size per user/item"
    )
    dropout: float = flag(0.5, "dropout after each MLP layer; 0 disables it")
    # optimisation
    epochs: int = flag(30, "number of training epochs", "-e")
    batch_size: int = flag(
        2**20, "GLOBAL training batch (split over ranks); tuned hyperparameters assume ~1M", "-b"
    )
    grads_accumulated: int = flag(
        1, "micro-batches of --batch_size whose gradients are summed per optimizer step"
    )
    negative_samples: int = flag(4, "random negatives per training positive, resampled every epoch", "-n")
    learning_rate: float = flag(0.0045, "Adam learning rate", "-l")
    beta1: float = flag(0.25, "Adam beta1", "-b1")
    beta2: float = flag(0.5, "Adam beta2", "-b2")
    eps: float = flag(1e-8, "Adam epsilon")
    optimizer: Literal["adam", "sparse_adam"] = flag(
        "adam",
        "adam: dense Adam (fused on CUDA; the reference); sparse_adam: lazy row-wise Adam on the embeddings "
        "(only rows in the batch are updated) + Adam on the MLP",
    )
    # evaluation
    topk: int = flag(10, "K of HR@K and NDCG@K", "-k")
    valid_batch_size: int = flag(2**20, "evaluation chunk size (candidate rows) per device")
    threshold: float = flag(
        1.0, "stop early once HR@K >= threshold (1.0 never stops; 0.9562 is the ml-20m target)", "-t"
    )
    # runtime
    mode: Literal["train", "test"] = flag(
        "train", "test: evaluate --load_checkpoint_path on --data once and exit (as python -m ncf.evaluate)"
    )
    seed: int | None = flag(None, "random seed; None draws one (logged, and stored in checkpoints)", "-s")
    amp: bool = flag(False, "mixed precision autocast (bf16 where supported, else fp16 with loss scaling)")
    amp_dtype: Literal["auto", "bfloat16", "float16"] = flag("auto", "autocast dtype when --amp is on")
    tf32: bool = flag(
        True, "CUDA: fp32 matmuls on TF32 tensor cores, as NVIDIA's fp32 numbers; --no-tf32 = IEEE fp32"
    )
    compile: bool = flag(False, "torch.compile the model (CUDA or CPU with a C++ compiler)")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)
    device: Literal["auto", "cpu", "cuda"] = flag(
        "auto", "auto = the local rank's GPU when CUDA is present, else CPU"
    )
    checkpoint_dir: Path | None = flag(
        None, "where best.pt (weights at the best HR; the seed's model.pth) and last.pt (every epoch, for "
        "resuming) go; unset or '' = no checkpoint",
    )  # fmt: skip
    resume: bool = flag(True, "resume from <checkpoint_dir>/last.pt when it exists")
    load_checkpoint_path: Path | None = flag(
        None, "start from these model weights (no optimizer state); --mode test: the model to evaluate"
    )
    log_path: Path | None = flag(Path("log.json"), "DLLogger JSON log (rank 0 only)")
    progress: bool = flag(True, "show tqdm progress bars on rank 0")

    # NVIDIA's NCF flags that are not fields here (ncf/README.md, "NVIDIA's flags").
    SEED_FLAGS: ClassVar[dict] = {
        "--opt_level": "the 2019 apex flag: use --amp for O2 (mixed precision), leave it off for O0",
        "--valid_negative": "test negatives are drawn at preparation: python -m ncf.prepare_data --valid_negative",
    }

    def validate(self) -> None:
        positive = {
            "factors": self.factors, "epochs": self.epochs, "batch_size": self.batch_size,
            "grads_accumulated": self.grads_accumulated, "topk": self.topk,
            "valid_batch_size": self.valid_batch_size, "learning_rate": self.learning_rate, "eps": self.eps,
        }  # fmt: skip
        bad = [f"{k}={v}" for k, v in positive.items() if v <= 0]
        if bad:
            raise ValueError(f"must be positive: {', '.join(bad)}")
        if self.negative_samples < 0:
            raise ValueError(f"negative_samples must be >= 0, got {self.negative_samples}")
        if not self.layers or self.layers[0] % 2 or min(self.layers) <= 0:
            raise ValueError(f"layers must be positive with an even first size, got {self.layers}")
        if self.mode == "test" and self.load_checkpoint_path is None:
            raise ValueError("--mode test evaluates --load_checkpoint_path (e.g. <checkpoint_dir>/best.pt)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class EvaluateConfig:
    """python -m ncf.evaluate: HR@K / NDCG@K of a checkpoint, or of a baseline, on a prepared dataset."""

    data: Path | None = flag(None, "prepared dataset directory (required)")
    checkpoint: Path | None = flag(
        None, "best.pt / last.pt written by ncf.train, or an INT8 model of ncf.quantize (or --baseline)"
    )
    baseline: Literal["popularity"] | None = flag(
        None, "score a baseline instead of a model (or --checkpoint)"
    )
    feature_spec_file: str = flag("feature_spec.yaml", "feature spec file name, relative to --data")
    topk: int = flag(10, "K of HR@K / NDCG@K", "-k")
    valid_batch_size: int = flag(2**20, "rows per forward")
    device: Literal["auto", "cpu", "cuda"] = flag(
        "auto", "auto = the local rank's GPU when CUDA is present, else CPU"
    )
    log_path: Path | None = flag(None, "DLLogger JSON log")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)

    def validate(self) -> None:
        if self.data is None:
            raise ConfigError("--data is required")
        if (self.checkpoint is None) == (self.baseline is None):
            raise ConfigError("give exactly one of --checkpoint and --baseline")
        if min(self.topk, self.valid_batch_size) < 1:
            raise ConfigError("--topk and --valid_batch_size must be positive")


@dataclass(frozen=True)
class QuantizeConfig:
    """python -m ncf.quantize: calibrate, quantize, evaluate and time INT8 NeuMF models (a CPU tool)."""

    data: Path | None = flag(None, "prepared dataset directory (required)")
    checkpoint: Path | None = flag(None, "float NeuMF checkpoint from ncf.train (required)")
    feature_spec_file: str = flag("feature_spec.yaml", "feature spec, relative to --data")
    calibration: float = flag(0.1, "fraction of test series to calibrate on")
    seed: int = flag(0, "seed of the calibration series choice")
    per_channel: bool = flag(False, "per-output-channel weight scales")
    split_final: bool = flag(False, "--output the INT8 model with the split final")
    output: Path | None = flag(None, "where to save the INT8 model (atomic)")
    log_path: Path | None = flag(None, "DLLogger JSON log")
    topk: int = flag(10, "K of HR@K / NDCG@K", "-k")
    valid_batch_size: int = flag(2**16, "candidate rows per forward (eval)")
    batch_sizes: list[int] = flag(
        [1, 256, 4096, 65536], "inference batch sizes to time (a bare --batch_sizes: no timing)"
    )
    warmup: int = flag(5, "untimed batches per batch size")
    num_batches: int = flag(200, "at most this many timed batches per size")
    bench_seconds: float = flag(5.0, "stop timing a size after this long")
    threads: int = flag(0, "torch CPU threads (0: torch's default)")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)
    device: ClassVar[str] = "cpu"  # what common.entry.start reads: static int8 kernels are CPU kernels

    def validate(self) -> None:
        if self.data is None or self.checkpoint is None:
            raise ConfigError("--data and --checkpoint are required")
        if not 0.0 < self.calibration <= 1.0:
            raise ConfigError(f"--calibration must be in (0, 1], got {self.calibration}")
        if (
            min([self.topk, self.valid_batch_size, self.num_batches, *self.batch_sizes]) < 1
            or self.warmup < 0
        ):
            raise ConfigError(
                "--topk, --valid_batch_size, --num_batches and --batch_sizes must be positive, --warmup >= 0"
            )
