"""BenchmarkConfig: the flags of `python -m ncf.benchmark` (parsed by common.config; --help shows defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.config import ConfigError, flag
from common.kernels import HELP as KERNELS_HELP

ML20M = {"users": 138_493, "items": 26_744, "train_rows": 19_861_770}


@dataclass(frozen=True)
class BenchmarkConfig:
    mode: Literal["train", "inference"] = flag("train", "what to time")
    data: Path | None = flag(
        None, "prepared dataset (train mode; ours only, no peer runs); None: synthetic sizes"
    )
    checkpoint: Path | None = flag(None, "model to time (inference); None: random init")
    users: int = flag(ML20M["users"], "synthetic user count")
    items: int = flag(ML20M["items"], "synthetic item count")
    train_rows: int = flag(ML20M["train_rows"], "synthetic training positives")
    batch_sizes: list[int] | None = flag(
        None, "None: train 1048576; inference 1 4 16 64 256 1024 4096 16384 65536 262144 1048576"
    )
    steps: int = flag(5, "timed optimizer steps per batch size and run (train)")
    num_batches: int = flag(200, "timed batches per batch size (inference)")
    warmup: int | None = flag(None, "untimed steps/batches first (None: train 2, inference 10)")
    repeats: int = flag(3, "train: runs per variant, interleaved; median [min - max] reported")
    amp: bool = flag(False, "bf16/fp16 autocast (train: the plain loop runs under bf16 autocast too)")
    compare_baseline: bool = flag(True, "train mode: also time the plain PyTorch loop (its own process)")
    compile: bool = flag(
        False, "torch.compile our model (as ncf.train --compile); the warm-up absorbs the compile"
    )
    threads: int | None = flag(None, "torch CPU threads in every run (None: torch's choice)")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)
    device: Literal["auto", "cpu", "cuda"] = flag("auto", "where to run")
    log_path: Path | None = flag(None, "DLLogger JSON log")

    def validate(self) -> None:
        for name in ("users", "items", "train_rows", "steps", "num_batches", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
