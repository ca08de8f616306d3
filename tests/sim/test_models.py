"""SIM/DIN/DIEN model unit tests: shapes, gradients, padding invariance, masking, AUGRU cells, aux loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sim import checkpoint_rules
from sim.layers import FeatureEmbedding, dot_attention, masked_softmax
from sim.losses import training_losses
from sim.models import SimBatch, SimSizes, build_model
from sim.models.dien import AUGRU, AuxiliaryNet, InterestExtractor, VecAttGRU

ITEMS, CATEGORIES, USERS = 50, 7, 30
VARIANTS = [  # (model_type, variant): DIN's variant is its attention, DIEN's and SIM's their AUGRU cell
    ("din", "mlp"),
    ("din", "dot"),
    ("dien", "paper"),
    ("dien", "nvidia_tf1"),
    ("sim", "paper"),
    ("sim", "nvidia_tf1"),
]


def sizes(model_type: str, variant: str = "paper", long: int = 9, gsu_topk: int = 4) -> SimSizes:
    return SimSizes(model_type, (USERS,), (ITEMS, CATEGORIES), embedding_dim=4, long_seq_length=long,
                    gsu_topk=gsu_topk, stage_one_mlp_dims=(8,), stage_two_mlp_dims=(8, 4), aux_mlp_dims=(6, 3),
                    augru_variant="paper" if model_type == "din" else variant,
                    din_attention=variant if model_type == "din" else "mlp")  # fmt: skip


def random_batch(
    batch: int = 6, steps: int = 14, seed: int = 0, lengths: list[int] | None = None
) -> SimBatch:
    """Left-padded histories of the given real lengths (default: 0, full, and random ones)."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [0, steps, *torch.randint(1, steps + 1, (batch - 2,), generator=g).tolist()]
    item = torch.randint(1, ITEMS + 1, (batch, steps), generator=g)
    history = torch.stack([item, item % CATEGORIES + 1], -1)
    real = torch.arange(steps) >= steps - torch.tensor(lengths).unsqueeze(1)
    negatives = torch.randint(1, ITEMS + 1, (batch, steps), generator=g)
    target = torch.randint(1, ITEMS + 1, (batch,), generator=g)
    return SimBatch(
        user=torch.randint(1, USERS + 1, (batch, 1), generator=g),
        target=torch.stack([target, target % CATEGORIES + 1], -1),
        history=history * real.unsqueeze(-1),
        neg_history=torch.stack([negatives, negatives % CATEGORIES + 1], -1) * real.unsqueeze(-1),
        label=torch.randint(0, 2, (batch,), generator=g).float(),
    )


def left_pad(batch: SimBatch, extra: int) -> SimBatch:
    pad = lambda t: None if t is None else F.pad(t, (0, 0, extra, 0))  # noqa: E731 - [B, T, F] -> [B, T+extra, F]
    return dataclasses.replace(batch, history=pad(batch.history), neg_history=pad(batch.neg_history))


@pytest.mark.parametrize(("model_type", "variant"), VARIANTS)
def test_shapes_and_every_parameter_gets_a_gradient(model_type: str, variant: str) -> None:
    model = build_model(sizes(model_type, variant))
    batch = random_batch()
    out = model(batch)
    assert out.logits.shape == (6,) and out.logits.dtype == torch.float32
    assert (out.aux_loss is None) == (model_type == "din")
    assert (out.stage_one_logits is not None) == (model_type == "sim")
    training_losses(out, batch.label).total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    without_negatives = model(dataclasses.replace(batch, neg_history=None))
    assert without_negatives.aux_loss is None  # inference batches carry no negatives


@pytest.mark.parametrize("part", ["long", "short"])
@pytest.mark.parametrize(("model_type", "variant"), VARIANTS)
def test_more_left_padding_changes_nothing(model_type: str, variant: str, part: str) -> None:
    """The same histories with 7 more left-padding positions give the same logits and auxiliary loss.

    part "long": the padding lands in the long part (long_seq_length + 7, the short part unchanged).
    part "short": histories hold at most S real items and the short part grows by 7 padded positions,
    so the DIEN recurrences and the auxiliary loss see more padding.
    """
    torch.manual_seed(1)
    model = build_model(sizes(model_type, variant)).eval()
    with torch.no_grad():  # non-zero biases everywhere: a recurrence stepping over padding would drift
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    padded_model = build_model(sizes(model_type, variant, long=9 + 7 if part == "long" else 9)).eval()
    padded_model.load_state_dict(model.state_dict())
    lengths = None if part == "long" else [0, 1, 2, 3, 4, 5, 5, 3]
    batch = random_batch(batch=8, lengths=lengths)
    with torch.no_grad():
        a, b = model(batch), padded_model(left_pad(batch, 7))
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    if a.aux_loss is not None:
        torch.testing.assert_close(a.aux_loss, b.aux_loss, atol=1e-5, rtol=0)
        assert int(a.aux_pairs) == int(b.aux_pairs)


def test_reference_parameter_counts() -> None:
    """Non-embedding parameters at the Amazon Books defaults equal the counts of DLE-SIM's layer shapes."""
    books = {"user_cardinalities": (105_925,), "item_cardinalities": (1_209_081, 2_330)}
    dense = lambda m: sum(p.numel() for n, p in m.named_parameters() if "embedding" not in n)  # noqa: E731
    dot = 32_641
    activation_unit = (4 * 32 * 80 + 80) + (80 * 40 + 40) + (40 + 1)  # [q, k, q-k, q*k] (4E) -> 80 -> 40 -> 1
    assert dense(build_model(SimSizes("din", **books, din_attention="dot"))) == dot
    assert dense(build_model(SimSizes("din", **books))) == dot + activation_unit == 46_242
    assert dense(build_model(SimSizes("dien", **books, augru_variant="nvidia_tf1"))) == 193_811
    embeddings = build_model(SimSizes("din", **books))
    assert embeddings.item_embedding.weight.shape == (1_209_082 + 2_331, 16)


def test_checkpoint_without_din_attention_loads_the_dot_din_it_was_trained_with() -> None:
    """Checkpoints written before --din_attention existed hold a dot-product DIN; a new one keeps its own."""
    old = build_model(sizes("din", "dot"))
    hyperparams = {k: v for k, v in old.sizes.as_dict().items() if k != "din_attention"}
    loaded = checkpoint_rules.model_builder("old.pt")(hyperparams)
    assert loaded.sizes.din_attention == "dot" and loaded.attention is None
    loaded.load_state_dict(old.state_dict())  # strict: the same parameters
    batch = random_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, old(batch).logits)
    new = build_model(sizes("din", "mlp"))
    assert checkpoint_rules.model_builder("new.pt")(new.sizes.as_dict()).sizes.din_attention == "mlp"


def test_attention_ignores_masked_positions_and_survives_empty_rows() -> None:
    query, keys = torch.randn(3, 5), torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    keys = keys * mask.unsqueeze(-1)
    pooled, scores = dot_attention(query, keys, mask)
    weights = masked_softmax(scores, mask)
    assert torch.all(weights[~mask] == 0) and torch.allclose(weights[0].sum(), torch.tensor(1.0))
    assert torch.all(pooled[1] == 0) and torch.isfinite(pooled).all()  # no real item: zeros, not NaN
    torch.testing.assert_close(pooled[2], keys[2, 3])  # one real item takes all the weight
    expected = torch.softmax(keys[0, [0, 1, 3]] @ query[0], 0) @ keys[0, [0, 1, 3]]
    torch.testing.assert_close(pooled[0], expected)
    changed = keys.clone()
    changed[~mask] = 100.0  # garbage at padded positions must not leak in
    torch.testing.assert_close(dot_attention(query, changed, mask)[0][[0, 2]], pooled[[0, 2]])


def test_dot_attention_backward_matches_autograd() -> None:
    """The hand-written backward equals autograd through bmm + masked softmax + bmm, and padded keys get
    exactly zero gradient (so they need not be zeroed before attention)."""
    torch.manual_seed(0)
    query = torch.randn(4, 6, requires_grad=True)
    keys = torch.randn(4, 5, 6, requires_grad=True)
    mask = torch.rand(4, 5) > 0.4
    mask[0], mask[1] = True, False
    upstream = torch.randn(4, 6)
    pooled, scores = dot_attention(query, keys, mask)
    assert not scores.requires_grad
    d_query, d_keys = torch.autograd.grad((pooled * upstream).sum(), (query, keys))

    raw = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(raw, -1)) * mask
    reference = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
    torch.testing.assert_close(pooled, reference)
    want_query, want_keys = torch.autograd.grad((reference * upstream).sum(), (query, keys))
    torch.testing.assert_close(d_query, want_query)
    torch.testing.assert_close(d_keys, want_keys)
    assert torch.all(d_keys[~mask] == 0)


def test_feature_embedding_offsets_and_gradient() -> None:
    table = FeatureEmbedding((3, 5), 2)
    ids = torch.tensor([[1, 5], [3, 1]], dtype=torch.int32)
    out = table(ids)
    torch.testing.assert_close(out[0], torch.cat([table.weight[1], table.weight[4 + 5]]))
    more = torch.tensor([[[1, 2]]])
    a, b = table(ids, more)  # several lookups share one gradient buffer
    (a.sum() + 2 * b.sum()).backward()
    expected = torch.zeros(10, 2)
    for row, weight in ((1, 1), (9, 1), (3, 1), (5, 1), (1, 2), (6, 2)):
        expected[row] += weight
    torch.testing.assert_close(table.weight.grad, expected)
    assert FeatureEmbedding((), 4)(torch.zeros(3, 0, dtype=torch.long)).shape == (3, 0)


def _augru_step(cell, x, h, a):
    """Hand-written AUGRU steps (DIEN paper eq. (4))."""
    if isinstance(cell, AUGRU):
        gx = x @ cell.weight_ih.T + cell.bias_ih
        gh = h @ cell.weight_hh.T + cell.bias_hh
        n = cell.weight_hh.shape[1]
        r = torch.sigmoid(gx[:, :n] + gh[:, :n])
        u = torch.sigmoid(gx[:, n : 2 * n] + gh[:, n : 2 * n])
        c = torch.tanh(gx[:, 2 * n :] + r * gh[:, 2 * n :])
        u = a[:, None] * u
        return (1 - u) * h + u * c
    gates = torch.sigmoid(torch.cat([x, h], 1) @ cell.gate.weight.T + cell.gate.bias)
    r, u = gates.chunk(2, 1)
    c = torch.tanh(torch.cat([x, r * h], 1) @ cell.candidate.weight.T + cell.candidate.bias)
    u = (1 - a[:, None]) * u
    return u * h + (1 - u) * c


@pytest.mark.parametrize("cell_type", [AUGRU, VecAttGRU])
def test_augru_matches_hand_written_steps(cell_type) -> None:
    torch.manual_seed(0)
    cell = cell_type(3, 4)
    x, a = torch.randn(2, 3, 3), torch.rand(2, 3)
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    h = torch.zeros(2, 4)
    for t in range(3):
        step = _augru_step(cell, x[:, t], h, a[:, t])
        h = torch.where(mask[:, t, None], step, h)  # padded steps carry the state
    torch.testing.assert_close(cell(x, a, mask), h)
    if cell_type is AUGRU:  # paper form: zero attention keeps the state; the reference's cell would step
        torch.testing.assert_close(
            cell(x, torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)), torch.zeros(2, 4)
        )
    else:
        assert cell.gate.bias.eq(1).all()  # the reference's gate bias initialisation


def test_interest_extractor_runs_only_over_real_items() -> None:
    torch.manual_seed(0)
    extractor = InterestExtractor(3, 5)
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    states = extractor(x * mask.unsqueeze(-1), mask)
    alone, _ = extractor.gru(x[:1, 3:])  # the three real items on their own
    torch.testing.assert_close(states[0, 3:], alone[0])
    assert torch.all(states[0, :3] == 0)


def test_auxiliary_loss_on_a_hand_computed_case() -> None:
    """Mean over pairs (h_t, e_t+1) whose positions are both real, of -log p(pos) - log(1 - p(neg))."""
    torch.manual_seed(0)
    net = AuxiliaryNet(hidden=3, item_size=2, dims=(4,), dropout=0.0)
    states, pos, neg = torch.randn(2, 4, 3), torch.randn(2, 4, 2), torch.randn(2, 4, 2)
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)  # row 1 has no pair at all
    loss, pairs = net.loss(states, pos, neg, mask)
    p = lambda h, e: torch.sigmoid(net.mlp(torch.cat([h, e])))  # noqa: E731
    cells = [
        -torch.log(p(states[0, t], pos[0, t + 1])) - torch.log(1 - p(states[0, t], neg[0, t + 1]))
        for t in (1, 2)
    ]
    assert int(pairs) == 2
    torch.testing.assert_close(loss, (cells[0] + cells[1]) / 2)


def test_sim_esu_only_sees_the_top_k_long_items() -> None:
    """With gsu_topk = 1 the ESU attends over the single best-scoring long item: changing any other long
    item's id in a way that keeps it out of the top 1 leaves the ESU input unchanged."""
    torch.manual_seed(0)
    model = build_model(sizes("sim", gsu_topk=1)).eval()
    batch = random_batch(batch=1, steps=14, lengths=[14])
    captured = []
    model.stage_two.register_forward_pre_hook(lambda m, args: captured.append(args[0][:, :8].clone()))
    with torch.no_grad():
        model(batch)
        target = model.item_embedding(batch.target)
        long = model.item_embedding(batch.history[:, :9])
        best = int((long @ target[0]).argmax())
        attended = captured[0][0, :8]
    torch.testing.assert_close(attended, long[0, best])
