"""Atomic checkpoints that rebuild the model from the file alone and resume a run exactly.

A checkpoint is a plain dict of tensors and Python scalars/strings/lists/dicts, so it loads with
`torch.load(weights_only=True)` (no pickled code runs on load). It carries:
  model          state dict without DDP's `module.` / torch.compile's `_orig_mod.` prefixes
  hyperparams    what the model constructor needs (so evaluate/inference need no flags)
  config         the resolved run config (provenance)
  optimizer, scaler   states, for resuming (a list of optimizers is stored as {"0": state, "1": ...})
  rng            torch CPU (+ CUDA) generator states, plus any extra generators the recipe names
  progress       e.g. {"epoch": 3, "best_hr": 0.61}: where to resume and what has been seen
  recipe         "ncf" | "dlrm" | "sim": an evaluate given another recipe's checkpoint says so in one line
  dataset        facts about the training data (e.g. feature cardinalities) checked against the data given
  checksum       SHA-256 over every tensor byte and value of the payload, verified on load, so a file
                 whose weight bytes were overwritten is refused instead of silently scoring garbage

`save` refuses a model with a NaN/inf weight: a diverged run never replaces a good checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from common.errors import InputError

_PREFIXES = ("module.", "_orig_mod.")
Optimizers = torch.optim.Optimizer | Sequence[torch.optim.Optimizer]
FORMAT = 2  # 2: recipe, dataset, checksum


class CheckpointError(InputError):
    """A checkpoint that cannot be used as asked; the message names the file and what is wrong."""


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
    optimizer: Optimizers | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: dict[str, Any] | None = None,
    generators: dict[str, torch.Generator] | None = None,
    recipe: str | None = None,
    dataset: dict[str, Any] | None = None,
) -> Path:
    """Write to a temp file in the same directory, then rename: a crash never leaves a torn checkpoint."""
    path = Path(path)
    state = clean_state_dict(model.state_dict())
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(
            f"refusing to write {path}: non-finite (NaN/inf) values in {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "recipe": recipe,
        "dataset": dict(dataset or {}),
        "model": state,
        "hyperparams": dict(hyperparams),
        "config": dict(config or {}),
        "progress": dict(progress or {}),
        "rng": rng_state(generators),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer_state(optimizer)
    if scaler is not None and scaler.is_enabled():
        payload["scaler"] = scaler.state_dict()
    payload["checksum"] = checksum(payload)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(
    path: str | Path, map_location: str | torch.device = "cpu", recipe: str | None = None
) -> dict[str, Any]:
    """Load with weights_only=True and verify the checksum; a missing, foreign, corrupt or other-recipe
    file gets an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/foreign files
        raise CheckpointError(f"checkpoint {path} could not be loaded: {_first_line(e)}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "hyperparams" not in ckpt:
        raise CheckpointError(f"{path} is not a recsys-recipes checkpoint (no 'model'/'hyperparams' entries)")
    if ckpt.get("format", 1) >= 2:
        stored = ckpt.pop("checksum", None)
        if stored != checksum(ckpt):
            raise CheckpointError(
                f"checkpoint {path} is corrupt: its contents do not match the checksum written with it"
            )
    if recipe is not None and ckpt.get("recipe") not in (None, recipe):  # None: saved without a recipe
        raise CheckpointError(
            f"{path} is a {ckpt['recipe']} checkpoint; {recipe} needs one written by {recipe}.train"
        )
    return ckpt


def checksum(payload: Any) -> str:
    """SHA-256 over the payload tree: keys, scalar values and every tensor's dtype, shape and bytes."""
    digest = hashlib.sha256()
    _feed(digest, payload)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.is_sparse:
            _feed(digest, [t._indices(), t._values()])
        elif t.numel():
            digest.update(memoryview(t.view(-1).view(torch.uint8).numpy()))
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{value!r}".encode())


def config_differences(
    saved: dict[str, Any],
    current: dict[str, Any],
    ignore: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
) -> list[str]:
    """'--name: saved -> now' for every config value that differs (keys in `ignore` are not compared).

    A flag the checkpoint does not record (it was added after the checkpoint was written) counts as its
    default in `defaults`: that is the value the older run had, so adding a flag never blocks a resume."""
    skip = set(ignore)
    known = {**(defaults or {}), **saved}
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in skip:
            continue
        before, now = known.get(key, "<unset>"), current.get(key, "<unset>")
        if _plain(before) != _plain(now):
            out.append(f"--{key}: {before!r} in the checkpoint, {now!r} now")
    return out


def check_resumable(
    path: Path | str,
    ckpt: dict[str, Any],
    current: dict[str, Any],
    ignore: Iterable[str],
    fresh_hint: str,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Refuse to resume a run whose result-changing flags differ from the checkpoint's, listing them."""
    diffs = config_differences(ckpt.get("config", {}), current, ignore, defaults)
    if diffs:
        raise CheckpointError(
            f"cannot resume from {path}: it was written with different flags that change the result:\n  "
            + "\n  ".join(diffs)
            + f"\nRerun with the checkpoint's flags to continue it, or {fresh_hint}"
        )


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: Optimizers | None = None,
    scaler: torch.amp.GradScaler | None = None,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load states into live objects (the model unwrapped); returns the saved progress dict."""
    model.load_state_dict(clean_state_dict(ckpt["model"]))
    if optimizer is not None:
        if "optimizer" not in ckpt:
            raise ValueError("checkpoint has no optimizer state; it cannot resume training")
        load_optimizer_state(optimizer, ckpt["optimizer"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        set_rng_state(ckpt["rng"], generators)
    return dict(ckpt.get("progress", {}))


def optimizer_state(optimizer: Optimizers) -> dict[str, Any]:
    """One optimizer's state dict, or {"0": ..., "1": ...} for a list (e.g. sparse tables + dense MLPs)."""
    if not isinstance(optimizer, (list, tuple)):
        return optimizer.state_dict()
    return {str(i): opt.state_dict() for i, opt in enumerate(optimizer)}


def load_optimizer_state(optimizer: Optimizers, state: dict[str, Any]) -> None:
    """The inverse of optimizer_state; a list must have as many optimizers as were saved."""
    if not isinstance(optimizer, (list, tuple)):
        optimizer.load_state_dict(state)
        return
    if sorted(state) != [str(i) for i in range(len(optimizer))]:
        raise ValueError(f"checkpoint holds {len(state)} optimizer states; this run has {len(optimizer)}")
    for i, opt in enumerate(optimizer):
        opt.load_state_dict(state[str(i)])


def model_from(
    ckpt: dict[str, Any], build: Callable[[dict[str, Any]], torch.nn.Module], path: Path | str, what: str
) -> torch.nn.Module:
    """`build(hyperparams)` with the checkpoint's weights loaded (CPU, train mode as built). `build` may
    refuse a file with its own CheckpointError; hyperparameters it cannot take, or weights that do not fit
    the model it builds (another recipe's older file), are one CheckpointError naming the file."""
    hyper = dict(ckpt["hyperparams"])
    try:
        model = build(dict(hyper))
        restore(ckpt, model, restore_rng=False)
    except CheckpointError:
        raise
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} does not hold {what} (its hyperparams: {sorted(hyper)}): {e}"
        ) from None
    return model


def load_model(
    path: str | Path,
    build: Callable[[dict[str, Any]], torch.nn.Module],
    recipe: str | None = None,
    what: str = "a model of this recipe",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(the checkpoint's model on CPU with its weights, the checkpoint): `load` (checksum, recipe) then
    `model_from`. The recipe's own checks (dataset facts against the data given) stay with the caller."""
    ckpt = load(path, recipe=recipe)
    return model_from(ckpt, build, path, what), ckpt
