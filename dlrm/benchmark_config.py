"""BenchmarkConfig: the flags of `python -m dlrm.benchmark` (parsed by common.config; --help shows defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.config import ConfigError, flag
from common.kernels import HELP as KERNELS_HELP


@dataclass(frozen=True)
class BenchmarkConfig:
    mode: Literal["train", "inference"] = flag("train", "what to time")
    dataset: Path | None = flag(
        None, "prepared dataset: ours reads it through the on-disk loader, no peers run"
    )
    synthetic_dataset: bool = flag(False, "synthetic batches (the default anyway)")
    synthetic_dataset_table_sizes: list[int] | None = flag(
        None, "table rows (None: Criteo FL15 on CUDA, 26 x 100000 on CPU)"
    )
    checkpoint: Path | None = flag(None, "inference: model to time (None: random init)")
    embedding_dim: int = flag(16, "embedding size")
    bottom_mlp_sizes: list[int] = flag([512, 256, 16], "bottom MLP")
    top_mlp_sizes: list[int] = flag([512, 256, 1], "top MLP")
    batch_sizes: list[int] | None = flag(None, "None: train 2048 4096; inference 1 64 4096 32768")
    steps: int = flag(30, "timed steps per batch size and run (train)")
    warmup: int | None = flag(None, "untimed steps/batches first (None: train 5, inference 10)")
    repeats: int = flag(3, "train: runs per variant, interleaved; median [min - max] reported")
    distinct_batches: int = flag(8, "train: distinct batches cycled through")
    num_batches: int = flag(200, "timed batches per batch size (inference)")
    amp: bool = flag(False, "bf16/fp16 autocast (train: the peers run under bf16 autocast too)")
    cuda_graphs: bool = flag(
        True, "inference on CUDA: run batches up to --cuda_graph_max_batch as a CUDA graph"
    )
    cuda_graph_max_batch: int = flag(4096, "largest batch run as a CUDA graph")
    compare_baseline: bool = flag(True, "train: also time the plain PyTorch DLRM loop")
    compare_torchrec: bool = flag(
        False, "train: also time TorchRec's own trainer (needs torchrec + fbgemm-gpu-cpu)"
    )
    threads: int | None = flag(None, "torch CPU threads in every run (None: torch's choice)")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)
    device: Literal["auto", "cpu", "cuda"] = flag("auto", "where to run")
    log_path: Path | None = flag(None, "DLLogger JSON log")

    def validate(self) -> None:
        for name in ("steps", "repeats", "distinct_batches", "num_batches", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.dataset is not None and self.compare_torchrec:
            raise ConfigError("--compare_torchrec needs synthetic batches (the peers do not read --dataset)")
