"""Atomic checkpoints that rebuild the model from the file alone and resume a run exactly.

A checkpoint is a plain dict of tensors and Python scalars/strings/lists/dicts, so it loads with
`torch.load(weights_only=True)` (no pickled code runs on load). It carries:
  model          state dict without DDP's `module.` / torch.compile's `_orig_mod.` prefixes
  hyperparams    what the model constructor needs (so evaluate/inference need no flags)
  config         the resolved run config (provenance)
  optimizer, scaler   states, for resuming
  rng            torch CPU (+ CUDA) generator states, plus any extra generators the recipe names
  progress       e.g. {"epoch": 3, "best_hr": 0.61}: where to resume and what has been seen
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_PREFIXES = ("module.", "_orig_mod.")


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes so a checkpoint from DDP or torch.compile loads into the bare model."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        out[key] = value
    return out


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, gen in (generators or {}).items():
        state[f"gen.{name}"] = gen.get_state()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in (generators or {}).items():
        if f"gen.{name}" not in state:
            raise KeyError(f"checkpoint has no state for generator '{name}'")
        gen.set_state(state[f"gen.{name}"])


def save(
    path: str | Path,
    *,
    model: torch.nn.Module,
    hyperparams: dict[str, Any],
    config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: dict[str, Any] | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> Path:
    """Write to a temp file in the same directory, then rename: a crash never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": 1,
        "model": clean_state_dict(model.state_dict()),
        "hyperparams": dict(hyperparams),
        "config": dict(config or {}),
        "progress": dict(progress or {}),
        "rng": rng_state(generators),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None and scaler.is_enabled():
        payload["scaler"] = scaler.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True; a missing or foreign file gets an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/foreign files
        raise ValueError(f"checkpoint {path} could not be loaded: {e}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "hyperparams" not in ckpt:
        raise ValueError(f"{path} is not a recsys-recipes checkpoint (no 'model'/'hyperparams' entries)")
    return ckpt


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load states into live objects (the model unwrapped); returns the saved progress dict."""
    model.load_state_dict(clean_state_dict(ckpt["model"]))
    if optimizer is not None:
        if "optimizer" not in ckpt:
            raise ValueError("checkpoint has no optimizer state; it cannot resume training")
        optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        set_rng_state(ckpt["rng"], generators)
    return dict(ckpt.get("progress", {}))
