"""sim.layers' hand-written backwards (`_Gather`, `_DotAttention`) against their plain-autograd references
(`--kernels reference`): outputs and gradients on random inputs, with padding masks, empty histories,
repeated ids and several lookups sharing one gradient buffer."""

from __future__ import annotations

import pytest
import torch

from common import kernels
from sim.layers import ActivationUnitAttention, FeatureEmbedding, dot_attention, dot_attention_reference


def _uses(t: torch.Tensor, name: str) -> bool:
    """Whether autograd node `name` is in t's backward graph."""
    todo, seen = [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name().startswith(name):
            return True
        todo.extend(n for n, _ in node.next_functions)
    return False


def _lookup(table: FeatureEmbedding, ids: list[torch.Tensor], upstream: list[torch.Tensor], policy: str):
    table.weight.grad = None
    with kernels.use(policy):
        outs = table(*ids)
    outs = outs if isinstance(outs, tuple) else (outs,)
    sum((o * u).sum() for o, u in zip(outs, upstream)).backward()
    return outs, table.weight.grad.clone()


@pytest.mark.parametrize("lookups", [1, 3])
def test_gather_backward_matches_reference(lookups: int) -> None:
    torch.manual_seed(0)
    table = FeatureEmbedding((7, 3, 11), 4)
    ids = [torch.randint(0, 4, (5, 6, 3), dtype=torch.int32) for _ in range(lookups)]  # 0 = padding, repeats
    upstream = [torch.randn(5, 6, 12) for _ in range(lookups)]
    fast_out, fast_grad = _lookup(table, ids, upstream, "auto")
    ref_out, ref_grad = _lookup(table, ids, upstream, "reference")
    assert _uses(fast_out[0], "_Gather") and not _uses(ref_out[0], "_Gather")
    for a, b in zip(fast_out, ref_out):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-5, atol=1e-6)


def _attention(query, keys, mask, upstream, fn):
    q, k = query.clone().requires_grad_(), keys.clone().requires_grad_()
    pooled, raw = fn(q, k, mask)
    grads = torch.autograd.grad((pooled * upstream).sum(), (q, k))
    return pooled, raw, grads


@pytest.mark.parametrize("strided_keys", [False, True])
def test_dot_attention_matches_reference(strided_keys: bool) -> None:
    """Padding masks, a row with no real position, one with all; non-contiguous keys (a history slice)."""
    torch.manual_seed(0)
    query = torch.randn(6, 8)
    keys = torch.randn(6, 12, 8)[:, 2:9] if strided_keys else torch.randn(6, 7, 8)
    mask = torch.rand(6, 7) > 0.4
    mask[0], mask[1] = True, False
    upstream = torch.randn(6, 8)
    pooled, raw, (d_q, d_k) = _attention(query, keys, mask, upstream, dot_attention)
    with kernels.use("reference"):
        via_policy = dot_attention(query, keys.clone().requires_grad_(), mask)[0]
    assert not _uses(via_policy, "_DotAttention") and _uses(pooled, "_DotAttention")
    ref_pooled, ref_raw, (ref_q, ref_k) = _attention(query, keys, mask, upstream, dot_attention_reference)
    torch.testing.assert_close(pooled, ref_pooled)
    torch.testing.assert_close(raw, ref_raw)
    assert not raw.requires_grad and not ref_raw.requires_grad
    torch.testing.assert_close(d_q, ref_q, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d_k, ref_k, rtol=1e-5, atol=1e-6)
    assert torch.all(d_k[~mask] == 0) and torch.all(ref_k[~mask] == 0)


def test_activation_unit_split_first_layer_matches_the_concat_form() -> None:
    """DIN's activation unit: the fast path (q term once per row, no [B, T, 4E] concat) against the literal
    MLP([q, k, q-k, q*k]) of `--kernels reference`: outputs, input and parameter gradients; padded keys get
    gradient exactly 0 either way. 16 rows reach the oneDNN products of common.linear."""
    torch.manual_seed(0)
    unit = ActivationUnitAttention(8, (80, 40))
    query, keys = torch.randn(16, 8), torch.randn(16, 7, 8)
    mask = torch.rand(16, 7) > 0.4
    mask[0], mask[1] = True, False
    upstream = torch.randn(16, 8)
    results = []
    for policy in ("auto", "reference"):
        unit.zero_grad()
        q, k = query.clone().requires_grad_(), keys.clone().requires_grad_()
        with kernels.use(policy):
            pooled = unit(q, k, mask)
        (pooled * upstream).sum().backward()
        results.append([pooled, q.grad, k.grad, *(p.grad.clone() for p in unit.parameters())])
        assert torch.all(k.grad[~mask] == 0) and torch.all(pooled[1] == 0)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_dot_attention_under_autocast_stays_in_the_keys_dtype() -> None:
    """Forward under bf16 autocast, backward outside it (as sim.train runs): both paths compute in fp32.
    A backward() inside autocast keeps the fast path in fp32 too (autograd's own backward would not)."""
    torch.manual_seed(0)
    query, keys, mask = torch.randn(4, 8).bfloat16(), torch.randn(4, 5, 8), torch.rand(4, 5) > 0.3
    upstream = torch.randn(4, 8)
    results = []
    for fn in (dot_attention, dot_attention_reference):
        q, k = query.clone().requires_grad_(), keys.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pooled, _ = fn(q, k, mask)
        assert pooled.dtype == torch.float32
        results.append([pooled, *torch.autograd.grad((pooled * upstream).sum(), (q, k))])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    q, k = query.clone().requires_grad_(), keys.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = torch.autograd.grad((dot_attention(q, k, mask)[0] * upstream).sum(), (q, k))
    for a, b in zip(inside, results[0][1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_paths_match_reference_on_cuda() -> None:
    torch.manual_seed(0)
    table = FeatureEmbedding((50, 20), 16).cuda()
    ids = [torch.randint(0, 20, (64, 30, 2), device="cuda") for _ in range(2)]
    upstream = [torch.randn(64, 30, 32, device="cuda") for _ in range(2)]
    fast_out, fast_grad = _lookup(table, ids, upstream, "auto")
    ref_out, ref_grad = _lookup(table, ids, upstream, "reference")
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-5, atol=1e-5)
    query, keys = torch.randn(64, 16, device="cuda"), torch.randn(64, 30, 16, device="cuda")
    mask = torch.rand(64, 30, device="cuda") > 0.3
    mask[0] = False
    up = torch.randn(64, 16, device="cuda")
    fast = _attention(query, keys, mask, up, dot_attention)
    ref = _attention(query, keys, mask, up, dot_attention_reference)
    for a, b in zip([fast[0], *fast[2]], [ref[0], *ref[2]]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
