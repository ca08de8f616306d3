"""NVIDIA's `main.py --mode test | inference_benchmark` as the commands they stand for here.

`python -m dlrm.train --mode test --load_checkpoint_path C ...` runs `python -m dlrm.evaluate --checkpoint C`,
and `--mode inference_benchmark` runs `python -m dlrm.benchmark --mode inference`, with the seed's flags
translated; one implementation each, so the two spellings cannot drift apart.
"""

from __future__ import annotations

from dlrm.config import DlrmConfig

# NVIDIA drops the first 10 latencies after --benchmark_warmup_steps (main.py, inference_benchmark).
SEED_DROPPED_LATENCIES = 10


def _common(cfg: DlrmConfig) -> list[str]:
    log = cfg.resolve(cfg.log_path)
    return ["--device", cfg.device, "--kernels", cfg.kernels, "--amp" if cfg.amp else "--no-amp"] + (
        ["--log_path", str(log)] if log else []
    )


def test_argv(cfg: DlrmConfig) -> list[str]:
    argv = ["--checkpoint", str(cfg.load_checkpoint_path), "--test_batch_size", str(cfg.test_batch_size),
            "--prefetch_batches", str(cfg.prefetch_batches), "--progress" if cfg.progress else "--no-progress"]  # fmt: skip
    if cfg.dataset is not None and not cfg.synthetic_dataset:
        argv += ["--dataset", str(cfg.dataset), "--feature_spec", cfg.feature_spec]
    return argv + _common(cfg)


def inference_benchmark_argv(cfg: DlrmConfig) -> list[str]:
    argv = ["--mode", "inference", "--batch_sizes", *map(str, cfg.inference_benchmark_batch_sizes),
            "--num_batches", str(cfg.inference_benchmark_steps),
            "--warmup", str(cfg.benchmark_warmup_steps + SEED_DROPPED_LATENCIES),
            "--embedding_dim", str(cfg.embedding_dim),
            "--bottom_mlp_sizes", *map(str, cfg.bottom_mlp_sizes), "--top_mlp_sizes", *map(str, cfg.top_mlp_sizes)]  # fmt: skip
    if cfg.load_checkpoint_path is not None:
        argv += ["--checkpoint", str(cfg.load_checkpoint_path)]
    if cfg.dataset is not None and not cfg.synthetic_dataset:
        argv += ["--dataset", str(cfg.dataset)]
    elif cfg.synthetic_dataset:
        argv += ["--synthetic_dataset_table_sizes", *map(str, cfg.synthetic_dataset_table_sizes)]
    return argv + _common(cfg)


def run(cfg: DlrmConfig) -> dict[str, float]:
    from dlrm import benchmark  # lazy: benchmark imports dlrm.train, which imports this module
    from dlrm import evaluate as dlrm_evaluate

    if cfg.mode == "test":
        return dlrm_evaluate.main(test_argv(cfg))
    return benchmark.main(inference_benchmark_argv(cfg))
