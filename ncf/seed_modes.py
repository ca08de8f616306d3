"""The seed's `python -m ncf.train --mode test` as the command it stands for: `python -m ncf.evaluate` with
the flags translated (one implementation, so the two spellings cannot drift apart; as dlrm/seed_modes.py)."""

from __future__ import annotations

from ncf import evaluate as ncf_evaluate
from ncf.config import NcfConfig


def evaluate_argv(cfg: NcfConfig) -> list[str]:
    """`--mode test` as the python -m ncf.evaluate command line it stands for."""
    argv = ["--data", str(cfg.data), "--checkpoint", str(cfg.load_checkpoint_path), "--topk", str(cfg.topk),
            "--feature_spec_file", cfg.feature_spec_file, "--valid_batch_size", str(cfg.valid_batch_size),
            "--device", cfg.device, "--kernels", cfg.kernels]  # fmt: skip
    return argv + (["--log_path", str(cfg.log_path)] if cfg.log_path else [])


def run_test(cfg: NcfConfig) -> dict[str, float]:
    return ncf_evaluate.main(evaluate_argv(cfg))
