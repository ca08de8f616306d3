"""DLRM model unit tests: shapes, reference init, dot interaction vs a naive loop, row-wise SGD, LR schedule."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dlrm.embeddings import sgd_rows_
from dlrm.evaluate import load_model
from dlrm.interactions import CatInteraction, DotInteraction, dot_output_width
from dlrm.lr_schedule import LrSchedule
from dlrm.model import DLRM, DlrmSizes, init_parts

FIXTURES = Path(__file__).parent / "fixtures"

SIZES = DlrmSizes(
    table_sizes=(5, 17, 3, 40), embedding_dim=8, bottom_mlp_sizes=(16, 8), top_mlp_sizes=(12, 6, 1)
)


def _inputs(sizes: DlrmSizes, batch: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    numerical = torch.randn(batch, sizes.num_numerical)
    categorical = torch.stack([torch.randint(0, n, (batch,)) for n in sizes.table_sizes], dim=1)
    return numerical, categorical


def test_shapes_and_the_documented_composition() -> None:
    model = DLRM(SIZES)
    numerical, categorical = _inputs(SIZES)
    logits = model(numerical, categorical)
    assert logits.shape == (6,) and logits.dtype == torch.float32
    embedded = model.embed(categorical)
    assert embedded.shape == (6, 4, 8)
    dense = model.dense
    inter = dense.interaction(dense.bottom_mlp(numerical), embedded)
    assert inter.shape == (6, dense.interaction.output_width) == (6, 24)  # 8 + 10 pairs = 18 -> 24
    torch.testing.assert_close(logits, dense.top_mlp(inter).squeeze(1), rtol=0, atol=0)
    assert isinstance(model.embeddings[1], torch.nn.Embedding) and model.embeddings[1].sparse
    assert [t.num_embeddings for t in model.embeddings] == list(SIZES.table_sizes)
    # the bottom MLP ends in ReLU, the top MLP in a bare Linear (the logit)
    assert isinstance(dense.bottom_mlp[-1], torch.nn.ReLU) and isinstance(dense.top_mlp[-1], torch.nn.Linear)
    assert DlrmSizes.from_dict(SIZES.as_dict()) == SIZES


def test_gradients_reach_every_parameter() -> None:
    model = DLRM(SIZES, sparse=False)
    numerical, categorical = _inputs(SIZES, 64)
    model(numerical, categorical).sum().backward()
    first_top = model.dense.top_mlp.linears[0].weight
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.all(first_top.grad[:, -6:] == 0) and torch.all(first_top[:, -6:] == 0)  # the padding column


def test_reference_initialisation() -> None:
    torch.manual_seed(0)
    sizes = DlrmSizes(
        table_sizes=(4, 10000), embedding_dim=64, bottom_mlp_sizes=(256, 64), top_mlp_sizes=(300, 1)
    )
    model = DLRM(sizes)
    for table, n in zip(model.embeddings, sizes.table_sizes):
        assert table.weight.abs().max() <= math.sqrt(1 / n) and table.weight.abs().max() > 0.9 * math.sqrt(
            1 / n
        )
    linear = model.dense.bottom_mlp.linears[1]  # 256 -> 64
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / (256 + 64)), rel=0.05)
    assert linear.bias.std().item() == pytest.approx(math.sqrt(1 / 64), rel=0.3)


def test_a_tables_initial_values_depend_only_on_the_seed_and_its_index() -> None:
    """What lets a sharded rank build only its own tables and still start from DLRM(sizes)'s values."""
    torch.manual_seed(0)
    model = DLRM(SIZES)
    torch.manual_seed(0)
    other_rows = DLRM(replace(SIZES, table_sizes=(9, 17, 3, 40)))  # only table 0 differs
    for t in (1, 2, 3):
        assert torch.equal(model.embeddings[t].weight, other_rows.embeddings[t].weight)
    assert not torch.equal(model.embeddings[1].weight, model.embeddings[3].weight[:17])  # own seeds
    huge = replace(SIZES, table_sizes=(5, 10**13, 3, 40))  # table 1 alone would be 320 TB
    torch.manual_seed(0)
    dense, tables = init_parts(huge, sparse=True, tables=[0, 2, 3])  # never allocates table 1
    built = dict(tables)
    assert sorted(built) == [0, 2, 3] and built[2].sparse
    for t in (0, 2, 3):
        assert torch.equal(built[t].weight, model.embeddings[t].weight)
    for (name, a), (_, b) in zip(dense.state_dict().items(), model.dense.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_checkpoint_from_before_the_dense_arch_still_loads() -> None:
    """The fixture was written by commit 002e637 (top-level "bottom_mlp.*" / "top_mlp.*" keys) together with
    that code's logits for these inputs; today's DLRM (keys "dense.*") must load it and give the same."""
    model, ckpt = load_model(FIXTURES / "dlrm_checkpoint_002e637.pt", torch.device("cpu"))
    assert any(k.startswith("bottom_mlp.") for k in ckpt["model"])
    g = torch.Generator().manual_seed(0)
    numerical = torch.randn(6, 13, generator=g)
    categorical = torch.stack([torch.randint(0, n, (6,), generator=g) for n in model.sizes.table_sizes], 1)
    with torch.no_grad():
        logits = model.eval()(numerical, categorical)
    torch.testing.assert_close(logits, ckpt["progress"]["fixture_logits"], rtol=0, atol=1e-6)
    assert all(k.startswith(("dense.", "embeddings.")) for k in model.state_dict())


def _naive_dot(dense: torch.Tensor, embedded: torch.Tensor, self_interaction: bool) -> torch.Tensor:
    vectors = [dense, *embedded.unbind(1)]
    rows = []
    for b in range(dense.shape[0]):
        pairs = [dense[b]]
        for i in range(len(vectors)):
            for j in range(i + 1 if self_interaction else i):
                pairs.append((vectors[i][b] * vectors[j][b]).sum().reshape(1))
        rows.append(torch.cat(pairs))
    return torch.stack(rows)


@pytest.mark.parametrize("self_interaction", [False, True])
@pytest.mark.parametrize("features,dim", [(26, 128), (3, 8), (4, 5)])
def test_dot_interaction_matches_a_naive_loop(self_interaction: bool, features: int, dim: int) -> None:
    dense, embedded = (
        torch.randn(3, dim, dtype=torch.float64),
        torch.randn(3, features, dim, dtype=torch.float64),
    )
    op = DotInteraction(features, dim, self_interaction)
    out = op(dense, embedded)
    expected = _naive_dot(dense, embedded, self_interaction)
    assert out.shape[1] % 8 == 0 and out.shape[1] - expected.shape[1] == op.padding < 8
    torch.testing.assert_close(out[:, : expected.shape[1]], expected)
    assert torch.all(out[:, expected.shape[1] :] == 0)


def test_reference_widths() -> None:
    assert dot_output_width(27, 128, False) == (480, 1)  # 128 + 351 = 479 -> 480, NVIDIA's padding
    assert dot_output_width(27, 128, True) == (512, 6)  # 128 + 378 = 506 -> 512
    criteo_shapes = DlrmSizes(table_sizes=(3,) * 26)  # FL15 widths, tiny tables (FL15 itself is 16 GB)
    assert DLRM(criteo_shapes).dense.top_mlp.linears[0].in_features == 480
    cat = CatInteraction(26, 128)
    assert (
        cat(torch.randn(2, 128), torch.randn(2, 26, 128)).shape == (2, 27 * 128) and cat.output_width == 3456
    )


def test_hash_indices_wraps_ids_without_touching_the_input() -> None:
    sizes = DlrmSizes(
        table_sizes=(5, 7), embedding_dim=4, bottom_mlp_sizes=(4,), top_mlp_sizes=(1,), hash_indices=True
    )
    model = DLRM(sizes)
    categorical = torch.tensor([[12, 7], [-1, 100]])
    kept = categorical.clone()
    torch.testing.assert_close(model.indices(categorical), torch.tensor([[2, 0], [4, 2]]))
    torch.testing.assert_close(model.embed(categorical), model.embed(torch.tensor([[2, 0], [4, 2]])))
    assert torch.equal(categorical, kept)


def test_row_wise_sgd_equals_torch_sgd_on_sparse_gradients() -> None:
    torch.manual_seed(1)
    ref, ours = DLRM(SIZES, sparse=True), DLRM(SIZES, sparse=True)
    ours.load_state_dict(ref.state_dict())
    numerical, categorical = _inputs(SIZES, 32)
    categorical[:, 2] = 1  # repeated ids: their gradients must add up
    opt = torch.optim.SGD(ref.parameters(), lr=0.7)
    torch.nn.functional.binary_cross_entropy_with_logits(
        ref(numerical, categorical), torch.ones(32)
    ).backward()
    opt.step()
    idx = ours.indices(categorical)
    rows = ours.embed_rows(idx).requires_grad_()
    torch.nn.functional.binary_cross_entropy_with_logits(
        ours.dense(numerical, rows), torch.ones(32)
    ).backward()
    sgd_rows_(ours.embeddings, idx, rows.grad, 0.7)
    for a, b in zip(ref.embeddings, ours.embeddings):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="embedding_dim"):
        DLRM(DlrmSizes(table_sizes=(3,), embedding_dim=8, bottom_mlp_sizes=(16,), top_mlp_sizes=(1,)))
    with pytest.raises(ValueError, match="logit"):
        DLRM(DlrmSizes(table_sizes=(3,), embedding_dim=8, bottom_mlp_sizes=(8,), top_mlp_sizes=(4,)))
    with pytest.raises(ValueError, match="self_interaction"):
        DLRM(DlrmSizes(table_sizes=(3,), embedding_dim=8, bottom_mlp_sizes=(8,), interaction_op="cat",
                       self_interaction=True))  # fmt: skip


def test_lr_schedule_at_key_steps() -> None:
    s = LrSchedule(28.0, warmup_steps=6400, decay_start_step=64000, decay_steps=80000)  # the 2020 recipe
    assert s.lr(1) == pytest.approx(28 / 6400)
    assert s.lr(200) == pytest.approx(28 * 200 / 6400)
    assert s.lr(6400) == 28.0 and s.lr(6401) == 28.0 and s.lr(64000) == 28.0
    assert s.lr(128027) == pytest.approx(28 * ((144000 - 128027) / 80000) ** 2)  # ~1.12 at the epoch end
    assert s.lr(144000) == 0.0 and s.lr(200000) == 0.0
    new = LrSchedule(24.0, 8000, 0, 48000, 24000, 2.0, 0.0)  # the 64k recipe
    assert new.lr(64013) == pytest.approx(24 * ((72000 - 64013) / 24000) ** 2)  # ~2.66
    half = LrSchedule(10.0, warmup_steps=100, warmup_factor=1, decay_start_step=200, decay_steps=100,
                      decay_power=1.0, decay_end_lr=2.0)  # fmt: skip
    assert half.lr(1) == pytest.approx(10 * (1 - 99 / 200)) and half.lr(100) == 10.0
    assert half.lr(250) == pytest.approx(5.0) and half.lr(290) == 2.0 and half.lr(1000) == 2.0
    with pytest.raises(ValueError):
        LrSchedule(1.0, warmup_steps=10, decay_start_step=5)
