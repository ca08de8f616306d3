"""DlrmConfig: every knob of DLRM training, with the flag names of NVIDIA's DLRM main.py.

Defaults are the 2020 single-GPU recipe that reached AUC 0.8036 on Criteo Terabyte FL15 (global batch 32768,
lr 28, warmup 6400, decay 64000 + 80000); dlrm/configs/criteo_64k.yaml is the newest 64k recipe (0.8025).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from common.config import Ignored, flag
from common.kernels import HELP as KERNELS_HELP
from dlrm.model import CRITEO_FL15_TABLE_SIZES


@dataclass(frozen=True)
class DlrmConfig:
    mode: Literal["train", "test", "inference_benchmark"] = flag(
        "train", "test: evaluate --load_checkpoint_path on the test split (python -m dlrm.evaluate); "
        "inference_benchmark: time it at --inference_benchmark_batch_sizes (python -m dlrm.benchmark)",
    )  # fmt: skip
    # data
    dataset: Path | None = flag(None, "prepared dataset directory (dlrm.prepare_data output)")
    feature_spec: str = flag("feature_spec.yaml", "feature spec file name, relative to --dataset")
    synthetic_dataset: bool = flag(
        False, "train on batches generated on the device (planted signal); no files"
    )
    synthetic_dataset_table_sizes: list[int] = flag(
        list(CRITEO_FL15_TABLE_SIZES), "synthetic mode: rows per categorical feature (Criteo FL15 sizes)"
    )
    synthetic_dataset_num_entries: int = flag(33554432, "synthetic mode: training samples per epoch")
    synthetic_dataset_test_entries: int = flag(1048576, "synthetic mode: test samples")
    prefetch_batches: int = flag(8, "batches read ahead by the background loader thread")
    dataset_subset: float | None = flag(
        None, "train on the first fraction (0, 1] of each epoch's batches (the 2020 recipe's flag)"
    )
    shuffle_batch_order: bool = flag(
        False, "visit whole training batches in a seeded random order per epoch (rows stay as prepared)"
    )
    # model
    embedding_dim: int = flag(128, "embedding size; must equal the last bottom MLP size")
    bottom_mlp_sizes: list[int] = flag([512, 256, 128], "bottom MLP layer sizes")
    top_mlp_sizes: list[int] = flag(
        [1024, 1024, 512, 256, 1], "top MLP layer sizes; the last (1) is the logit"
    )
    interaction_op: Literal["dot", "cat"] = flag(
        "dot", "feature interaction (the seed's cuda_dot = dot)", seed_values={"cuda_dot": "dot"}
    )
    self_interaction: bool = flag(False, "dot interaction: also keep each vector's dot with itself")
    hash_indices: bool = flag(False, "take categorical ids modulo the table size (inside the model)")
    max_table_size: int | None = flag(
        None, "clip every table to at most this many rows; needs --hash_indices"
    )
    # optimisation
    batch_size: int = flag(
        32768, "GLOBAL training batch (split over ranks); the partial last batch is dropped"
    )
    test_batch_size: int = flag(32768, "GLOBAL evaluation batch")
    lr: float = flag(28.0, "SGD learning rate (MLPs and embeddings)")
    embedding_lr_scale: float = flag(
        1.0, "embedding rows train at lr x this (1: the reference); small data: 64 (README, Accuracy)"
    )
    warmup_steps: int = flag(6400, "linear warmup steps")
    warmup_factor: int = flag(0, "warmup starts at 1 - 1/2**warmup_factor of the way up (0: from ~0)")
    decay_start_step: int | None = flag(64000, "polynomial decay starts after this step; none = no decay")
    decay_steps: int = flag(80000, "polynomial decay length in steps; 0 = no decay (the LR stays at --lr)")
    decay_power: float = flag(2.0, "polynomial decay power")
    decay_end_lr: float = flag(0.0, "LR floor during decay and after it ends")
    epochs: int = flag(1, "training epochs")
    max_steps: int | None = flag(None, "stop after this many optimizer steps")
    # evaluation
    test_freq: int | None = flag(None, "evaluate every N steps (None: at the end of each epoch)")
    test_after: float = flag(0.0, "no evaluation before this many epochs are done (fractions allowed)")
    auc_threshold: float | None = flag(None, "stop as soon as the test AUC reaches this value")
    # parallelism and precision
    embedding_sharding: Literal["replicated", "table"] = flag(
        "replicated",
        "replicated: every rank holds all tables (MLPs via DDP, touched rows updated from all-gathered "
        "gradients); table: whole tables placed on ranks with an all-to-all exchange (dlrm.parallel)",
    )
    amp: bool = flag(False, "mixed precision autocast (bf16 where supported, else fp16 with loss scaling)")
    amp_dtype: Literal["auto", "bfloat16", "float16"] = flag("auto", "autocast dtype when --amp is on")
    loss_scale: float | None = flag(
        None, "fp16 (--amp_dtype float16 / --fp16): the loss scale starts here and never grows (the seed's "
        "static scale; it halves on overflow); none = start at 2**16",
    )  # fmt: skip
    tf32: bool = flag(
        True, "CUDA: fp32 matmuls on TF32 tensor cores, as NVIDIA's fp32 numbers; --no-tf32 = IEEE fp32"
    )
    device: Literal["auto", "cpu", "cuda"] = flag(
        "auto", "auto = the local rank's GPU when present, else CPU"
    )
    kernels: Literal["auto", "reference"] = flag("auto", KERNELS_HELP)
    seed: int = flag(12345, "random seed (model init, synthetic data, batch order)")
    # checkpoints and logging
    save_checkpoint_path: Path | None = flag(
        None, "checkpoint written at every evaluation and at the end (full state: resumable)"
    )
    load_checkpoint_path: Path | None = flag(
        None, "start from these model weights (step 0, fresh optimizer: not a resume, see --resume); "
        "--mode test / inference_benchmark: the model to evaluate",
    )  # fmt: skip
    resume: bool = flag(True, "resume from --save_checkpoint_path when that file exists (after a kill)")
    output_dir: Path | None = flag(
        None, "directory that relative --log_path and --save_checkpoint_path are under (the 2020 flag)"
    )
    log_path: Path | None = flag(Path("log.json"), "DLLogger JSON log (rank 0 only)")
    print_freq: int = flag(200, "log the training loss every N steps (also the NaN check)")
    progress: bool = flag(True, "show tqdm progress bars on rank 0")
    # the seed's inference benchmark (--mode inference_benchmark) and throughput warm-up
    benchmark_warmup_steps: int = flag(
        0, "steps left out of the throughput (train) or of the timed batches (inference_benchmark)"
    )
    inference_benchmark_batch_sizes: list[int] = flag([1, 64, 4096], "--mode inference_benchmark batch sizes")
    inference_benchmark_steps: int = flag(200, "--mode inference_benchmark: timed batches per batch size")

    # NVIDIA's DLRM flags that are not fields here (dlrm/README.md, "NVIDIA's flags").
    SEED_FLAGS: ClassVar[dict] = {
        "--fp16": {"amp": True, "amp_dtype": "float16"},
        "--nofp16": {"amp": False},
        "--cuda_graphs": Ignored(
            "training steps are not captured as CUDA graphs here; --mode inference_benchmark uses them on CUDA"
        ),
        "--optimized_mlp": Ignored("the MLPs are torch.nn.Linear (cuBLAS); there is no apex fused MLP"),
        "--auc_device": Ignored("the AUC is computed exactly on the training device"),
        "--backend": Ignored("nccl on CUDA, gloo on CPU, chosen from --device"),
        "--base_device": "use --device cuda|cpu",
        "--embedding_type": "tables are torch.nn.Embedding weights updated row-wise (no custom CUDA "
        "kernels); use --embedding_sharding replicated|table for placement",
        "--dataset_type": "use --dataset DIR (split binary + feature_spec.yaml) or --synthetic_dataset; "
        "a 2020 train_data.bin converts with python -m dlrm.convert_bin",
        "--num_numerical_features": "the numerical count comes from the dataset's feature spec",
        "--bottom_features_ordered": "not needed: the bottom MLP output is always the first interaction input",
        "--Adam_embedding_optimizer": "only plain SGD (the reference's default) is implemented",
        "--Adam_MLP_optimizer": "only plain SGD (the reference's default) is implemented",
        "--freeze_mlps": "not implemented",
        "--freeze_embeddings": "not implemented",
    }

    def resolve(self, path: Path | None) -> Path | None:
        """A relative output path under --output_dir (when set)."""
        return self.output_dir / path if path is not None and self.output_dir is not None else path

    def validate(self) -> None:
        positive = {
            "embedding_dim": self.embedding_dim, "batch_size": self.batch_size,
            "test_batch_size": self.test_batch_size, "lr": self.lr, "epochs": self.epochs,
            "print_freq": self.print_freq, "prefetch_batches": self.prefetch_batches,
            "synthetic_dataset_num_entries": self.synthetic_dataset_num_entries,
            "synthetic_dataset_test_entries": self.synthetic_dataset_test_entries,
        }  # fmt: skip
        positive["inference_benchmark_steps"] = self.inference_benchmark_steps
        for name in ("max_steps", "test_freq", "max_table_size", "dataset_subset", "loss_scale"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        if bad := [f"{k}={v}" for k, v in positive.items() if v <= 0]:
            raise ValueError(f"must be positive: {', '.join(bad)}")
        if self.max_table_size is not None and not self.hash_indices:
            raise ValueError("max_table_size needs hash_indices (ids above the clipped size must wrap)")
        if not self.bottom_mlp_sizes or self.bottom_mlp_sizes[-1] != self.embedding_dim:
            raise ValueError(
                f"bottom_mlp_sizes must end with embedding_dim={self.embedding_dim}, got {self.bottom_mlp_sizes}"
            )
        if not self.top_mlp_sizes or self.top_mlp_sizes[-1] != 1:
            raise ValueError(f"top_mlp_sizes must end with 1 (the logit), got {self.top_mlp_sizes}")
        if min(self.bottom_mlp_sizes + self.top_mlp_sizes) <= 0:
            raise ValueError("MLP sizes must be positive")
        if self.self_interaction and self.interaction_op != "dot":
            raise ValueError("self_interaction needs interaction_op dot")
        start = self.warmup_steps if self.decay_start_step is None else self.decay_start_step
        if self.warmup_steps < 0 or self.decay_steps < 0 or start < self.warmup_steps:
            raise ValueError(
                f"need 0 <= warmup_steps ({self.warmup_steps}) <= decay_start_step ({self.decay_start_step}) "
                f"and decay_steps >= 0 ({self.decay_steps})"
            )
        if self.dataset_subset is not None and self.dataset_subset > 1:
            raise ValueError(f"dataset_subset must be in (0, 1], got {self.dataset_subset}")
        if self.test_after < 0 or self.benchmark_warmup_steps < 0:
            raise ValueError("test_after and benchmark_warmup_steps must be >= 0")
        if not self.inference_benchmark_batch_sizes or min(self.inference_benchmark_batch_sizes) <= 0:
            raise ValueError(f"inference_benchmark_batch_sizes must be positive, got "
                             f"{self.inference_benchmark_batch_sizes}")  # fmt: skip
        if self.mode == "test" and self.load_checkpoint_path is None:
            raise ValueError("--mode test evaluates --load_checkpoint_path (a dlrm.train checkpoint)")
        if self.decay_end_lr < 0 or self.warmup_factor < 0:
            raise ValueError("decay_end_lr and warmup_factor must be >= 0")
        if not self.synthetic_dataset_table_sizes or min(self.synthetic_dataset_table_sizes) <= 0:
            raise ValueError(
                f"synthetic_dataset_table_sizes must be positive, got {self.synthetic_dataset_table_sizes}"
            )
        if self.auc_threshold is not None and not 0.0 < self.auc_threshold <= 1.0:
            raise ValueError(f"auc_threshold must be in (0, 1], got {self.auc_threshold}")
