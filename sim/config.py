"""SimConfig: every knob of SIM/DIN/DIEN training, evaluation and inference, with the reference's flag
names and defaults (DLE-SIM's main.py flags) where the meaning is the same."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from common.config import Ignored, flag
from common.kernels import HELP as KERNELS_HELP


@dataclass(frozen=True)
class SimConfig:
    # data and outputs
    mode: Literal["train", "inference"] = flag(
        "train", "train: train + evaluate each epoch; inference: time forward passes over the train split"
    )
    dataset_dir: Path | None = flag(None, "directory holding the feature spec and the train/test splits")
    feature_spec: str = flag("feature_spec.yaml", "feature spec file name inside --dataset_dir")
    results_dir: Path = flag(Path("/tmp/sim"), "where the DLLogger log goes (rank 0)")
    log_filename: str = flag("log.json", "DLLogger JSON log file name inside --results_dir")
    # model
    model_type: Literal["sim", "din", "dien"] = flag("sim", "which model to train")
    embedding_dim: int = flag(16, "embedding size D of every table")
    long_seq_length: int = flag(
        90, "history positions [0, L) form the long part (SIM's search units); the newest T - L the short "
        "part (DIEN, SIM's DIEN part). DIN reads the whole history",
    )  # fmt: skip
    gsu_topk: int = flag(
        50, "SIM: long-history items the GSU selects for the ESU (hard-coded 50 in the reference)"
    )
    stage_one_mlp_dims: list[int] = flag([200], "SIM stage-one (GSU) head hidden sizes")
    stage_two_mlp_dims: list[int] = flag([200, 80], "classifier hidden sizes (SIM stage two, DIN, DIEN)")
    aux_mlp_dims: list[int] = flag([100, 50], "DIEN/SIM auxiliary-loss net hidden sizes")
    dropout_rate: float = flag(
        0.0,
        "dropout before the output layer of every MLP; 0 or -1 (the seed's value) = off",
        seed_values={-1: 0.0},
    )
    augru_variant: Literal["paper", "nvidia_tf1"] = flag(
        "paper", "AUGRU cell: the DIEN paper's (attention scales the update gate) or the reference's TF1 cell"
    )
    din_attention: Literal["mlp", "dot"] = flag(
        "mlp", "DIN attention: mlp = the DIN paper's activation unit as DLE-SIM defines it (DINActivationUnit: "
        "[q, k, q-k, q*k] -> 80 -> 40 sigmoid -> 1, masked softmax over T); dot = DLE-SIM din_model.py's "
        "dot product (no parameters, cheaper)",
    )  # fmt: skip
    # optimisation
    optimizer: Literal["adam", "lazy_adam", "sgd"] = flag(
        "adam", "adam: AdamW (decoupled decay as tfa: wd not scaled by lr); lazy_adam: sparse row-wise Adam on "
        "the tables + Adam (single process; ignores wd); sgd: SGD with decoupled wd",
    )  # fmt: skip
    lr: float = flag(0.01, "learning rate (constant)")
    weight_decay: float = flag(0.0, "decoupled weight decay per step (adam, sgd)")
    epochs: int = flag(3, "training epochs")
    global_batch_size: int = flag(
        131072, "GLOBAL batch (split over ranks); also the evaluation/inference batch"
    )
    drop_remainder: bool = flag(False, "drop the last partial training batch of each epoch")
    evaluate_train: bool = flag(
        True, "evaluate the whole train split after each epoch (train_auc, train_loss)"
    )
    # runtime
    seed: int | None = flag(
        None, "random seed; none or -1 (the seed's value) draws one (logged, and stored in checkpoints)",
        seed_values={-1: None},
    )  # fmt: skip
    amp: bool = flag(False, "mixed precision autocast (bf16 where supported, else fp16 with loss scaling)")
    amp_dtype: Literal["auto", "bfloat16", "float16"] = flag("auto", "autocast dtype when --amp is on")
    tf32: bool = flag(
        True, "CUDA: fp32 matmuls on TF32 tensor cores, as NVIDIA's fp32 numbers; --no-tf32 = IEEE fp32"
    )
    compile: bool = flag(False, "torch.compile the model (the reference's --xla)", "--xla")
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)
    device: Literal["auto", "cpu", "cuda"] = flag("auto", "auto = the local rank's GPU when CUDA is present")
    save_checkpoint_path: Path | None = flag(None, "checkpoint file written (atomically) after every epoch")
    load_checkpoint_path: Path | None = flag(
        None, "train: resume this checkpoint (weights, optimizer, epoch, RNG seeds); inference: its weights"
    )
    overwrite_checkpoint: bool = flag(
        False, "start fresh and replace an existing --save_checkpoint_path (without it a run only writes there "
        "when it resumes that checkpoint)",
    )  # fmt: skip
    benchmark: bool = flag(False, "time benchmark_warmup_steps + benchmark_steps steps only; no evaluation")
    benchmark_warmup_steps: int = flag(20, "steps excluded from throughput and latency")
    benchmark_steps: int = flag(200, "timed steps with --benchmark; <= 0 = one pass over the data")
    log_every: int = flag(1, "log a training step record every N steps")
    progress: bool = flag(True, "show tqdm progress bars on rank 0")

    # NVIDIA's SIM flags that are not fields here (sim/README.md, "NVIDIA's flags").
    SEED_FLAGS: ClassVar[dict] = {
        "--disable_cache": Ignored(
            "the prepared splits are read into memory once; there is no tf.data cache"
        ),
        "--prefetch_train_size": Ignored("batches are sliced from tensors in memory; no tf.data prefetch"),
        "--prefetch_test_size": Ignored("batches are sliced from tensors in memory; no tf.data prefetch"),
        "--prebatch_train_size": Ignored("the prepared parquet is not prebatched; batches are cut at load"),
        "--prebatch_test_size": Ignored("the prepared parquet is not prebatched; batches are cut at load"),
        "--num_parallel_calls": Ignored("no tf.data pipeline"),
        "--affinity": Ignored("no CPU pinning; use numactl / taskset around the command"),
        "--inter_op_parallelism": Ignored("TensorFlow threads; set OMP_NUM_THREADS / torch threads instead"),
        "--intra_op_parallelism": Ignored("TensorFlow threads; set OMP_NUM_THREADS / torch threads instead"),
        "--repeat_count": "use --epochs (repeat_count n made each epoch n passes)",
    }

    @property
    def log_path(self) -> Path:
        """The DLLogger log (rank 0): what common.entry.open_log writes."""
        return self.results_dir / self.log_filename

    def validate(self) -> None:
        positive = {
            "embedding_dim": self.embedding_dim, "gsu_topk": self.gsu_topk, "epochs": self.epochs,
            "global_batch_size": self.global_batch_size, "lr": self.lr, "log_every": self.log_every,
        }  # fmt: skip
        if bad := [f"{k}={v}" for k, v in positive.items() if v <= 0]:
            raise ValueError(f"must be positive: {', '.join(bad)}")
        for name in ("long_seq_length", "weight_decay", "benchmark_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("stage_one_mlp_dims", "stage_two_mlp_dims", "aux_mlp_dims"):
            dims = getattr(self, name)
            if not dims or min(dims) <= 0:
                raise ValueError(f"{name} must be a non-empty list of positive sizes, got {dims}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.model_type == "sim" and self.gsu_topk > self.long_seq_length:
            raise ValueError(
                f"gsu_topk={self.gsu_topk} exceeds long_seq_length={self.long_seq_length}: the GSU selects "
                "from the long history"
            )
