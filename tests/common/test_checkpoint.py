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
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
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


def test_overwritten_weight_bytes_are_refused(tmp_path: Path) -> None:
    model = torch.nn.Linear(64, 64)
    path = checkpoint.save(tmp_path / "m.pt", model=model, hyperparams={}, recipe="ncf")
    raw = bytearray(path.read_bytes())
    weight = model.weight.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    at = bytes(raw).index(weight[:64])  # the weight's bytes are stored uncompressed in the zip
    raw[at + 100 : at + 104] = b"\x00\x00\xc0\x7f"
    path.write_bytes(bytes(raw))
    with pytest.raises(checkpoint.CheckpointError, match=r"m\.pt is corrupt"):
        checkpoint.load(path)


def test_recipe_mismatch_is_one_clear_error(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "sim.pt", model=_model(), hyperparams={}, recipe="sim")
    assert checkpoint.load(path, recipe="sim")["recipe"] == "sim"
    with pytest.raises(checkpoint.CheckpointError, match=r"sim\.pt is a sim checkpoint; dlrm needs one"):
        checkpoint.load(path, recipe="dlrm")


def test_refuses_to_save_non_finite_weights(tmp_path: Path) -> None:
    model = _model()
    with torch.no_grad():
        model[1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite .* 1\.bias"):
        checkpoint.save(tmp_path / "m.pt", model=model, hyperparams={})
    assert not list(tmp_path.iterdir())


def test_resume_refuses_changed_flags_listing_them(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "m.pt", model=_model(), hyperparams={},
                           config={"lr": 0.1, "batch_size": 8, "seed": 1, "log_path": "a", "sizes": [4, 2]})  # fmt: skip
    ckpt = checkpoint.load(path)
    same = {"lr": 0.1, "batch_size": 8, "seed": 1, "log_path": "b", "sizes": (4, 2)}
    checkpoint.check_resumable(path, ckpt, same, ignore={"log_path"}, fresh_hint="pass --no-resume")
    changed = {**same, "lr": 0.2, "seed": 2}
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.check_resumable(path, ckpt, changed, ignore={"log_path"}, fresh_hint="pass --no-resume")
    assert "--lr: 0.1 in the checkpoint, 0.2 now" in str(e.value) and "--seed: 1" in str(e.value)
    assert "batch_size" not in str(e.value) and "--no-resume" in str(e.value)


def test_a_flag_added_after_the_checkpoint_counts_as_its_default(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "m.pt", model=_model(), hyperparams={}, config={"lr": 0.1})
    ckpt = checkpoint.load(path)
    defaults = {"lr": 1.0, "tf32": True}
    checkpoint.check_resumable(path, ckpt, {"lr": 0.1, "tf32": True}, (), "x", defaults=defaults)
    with pytest.raises(checkpoint.CheckpointError, match="--tf32: True in the checkpoint, False now"):
        checkpoint.check_resumable(path, ckpt, {"lr": 0.1, "tf32": False}, (), "x", defaults=defaults)


def _two_optimizers(model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    table, linear = model[0], model[1]
    return [torch.optim.SGD(table.parameters(), lr=0.1, momentum=0.9), torch.optim.Adam(linear.parameters())]


def test_a_list_of_optimizers_resumes_exactly_in_the_indexed_layout(tmp_path: Path) -> None:
    """A list (sparse tables + dense MLP) is stored as {"0": state, "1": state}, the layout ncf and sim
    checkpoints always had, and restores into a new list; a list of another length is refused."""
    torch.manual_seed(1)
    model, gen = _model(), torch.Generator().manual_seed(5)
    opts = _two_optimizers(model)
    for _ in range(2):
        [_step(model, opt, gen) for opt in opts]
    path = checkpoint.save(tmp_path / "ck.pt", model=model, hyperparams={}, optimizer=opts)
    expected = [[_step(model, opt, gen) for opt in opts] for _ in range(2)]
    ckpt = checkpoint.load(path)
    assert sorted(ckpt["optimizer"]) == ["0", "1"] and "state" in ckpt["optimizer"]["1"]
    model2 = _model()
    opts2 = _two_optimizers(model2)
    checkpoint.restore(ckpt, model2, opts2, restore_rng=False)
    gen2 = torch.Generator().manual_seed(5)
    for _ in range(4):  # the 4 batches drawn before the save
        torch.randint(0, 10, (8,), generator=gen2)
    assert [[_step(model2, opt, gen2) for opt in opts2] for _ in range(2)] == expected
    with pytest.raises(ValueError, match="2 optimizer states; this run has 1"):
        checkpoint.restore(ckpt, _model(), [torch.optim.SGD(_model().parameters(), lr=1)], restore_rng=False)
