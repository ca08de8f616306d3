from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common import checkpoint


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 1))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> float:
    ids = torch.randint(0, 10, (8,), generator=gen)
    loss = model(ids).pow(2).mean() + torch.rand(()) * 0  # draws from the global RNG too
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_resume_is_exact(tmp_path: Path) -> None:
    """Train 3 steps, checkpoint, 3 more; a fresh process restoring the checkpoint gives identical steps."""
    torch.manual_seed(1)
    model, gen = _model(), torch.Generator().manual_seed(5)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        _step(model, opt, gen)
    path = checkpoint.save(
        tmp_path / "ck" / "last.pt",
        model=model,
        hyperparams={"n": 10},
        config={"lr": 0.1},
        optimizer=opt,
        progress={"epoch": 3},
        generators={"data": gen},
    )
    expected = [_step(model, opt, gen) for _ in range(3)]

    torch.manual_seed(99)
    model2, gen2 = _model(), torch.Generator().manual_seed(0)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    ckpt = checkpoint.load(path)
    assert ckpt["hyperparams"] == {"n": 10} and ckpt["config"] == {"lr": 0.1}
    assert checkpoint.restore(ckpt, model2, opt2, generators={"data": gen2}) == {"epoch": 3}
    assert [_step(model2, opt2, gen2) for _ in range(3)] == expected
    assert not list(path.parent.glob("*.tmp"))


def test_loads_with_weights_only_and_strips_wrapper_prefixes(tmp_path: Path) -> None:
    model = _model()
    wrapped = torch.nn.Module()
    wrapped.module = model  # what DDP's state dict keys look like
    path = checkpoint.save(tmp_path / "m.pt", model=wrapped, hyperparams={})
    raw = torch.load(path, weights_only=True)
    assert set(raw["model"]) == set(model.state_dict())
    fresh = _model()
    checkpoint.restore(checkpoint.load(path), fresh, restore_rng=False)
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be loaded"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a recsys-recipes checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    path = checkpoint.save(tmp_path / "m.pt", model=_model(), hyperparams={})
    with pytest.raises(ValueError, match="no optimizer state"):
        checkpoint.restore(checkpoint.load(path), _model(), torch.optim.SGD(_model().parameters(), lr=1))
