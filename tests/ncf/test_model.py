from __future__ import annotations

import math

import pytest
import torch

from ncf.model import NeuMF, NeuMFSizes


def test_parameter_count_matches_the_reference() -> None:
    """ml-20m defaults: (138,493 + 26,744) x 192 embeddings + 106,944 MLP + 129 final = 31,832,577
    parameters; 1,978,305 for ml-1m."""
    assert NeuMF(NeuMFSizes(138_493, 26_744)).num_parameters() == 31_832_577
    assert NeuMF(NeuMFSizes(6_040, 3_706)).num_parameters() == 1_978_305


def test_forward_shapes_and_gradients_reach_every_parameter() -> None:
    model = NeuMF(NeuMFSizes(20, 30, mf_dim=4, mlp_layers=(8, 6, 4), dropout=0.2))
    users, items = torch.randint(0, 20, (16,)), torch.randint(0, 30, (16,), dtype=torch.int32)
    logits = model(users, items)
    assert logits.shape == (16,) and logits.dtype == torch.float32
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_reference_initialisation() -> None:
    torch.manual_seed(0)
    model = NeuMF(NeuMFSizes(5000, 4000, mf_dim=16, mlp_layers=(64, 32, 16)))
    assert abs(model.user_embedding.weight.std().item() - 0.01) < 5e-4
    for layer in model.mlp:  # Glorot uniform bound
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    assert model.final.weight.abs().max() <= math.sqrt(3 / model.final.in_features)  # LeCun uniform


def test_forward_is_gmf_plus_mlp_as_specified() -> None:
    """Recompute NeuMF by hand from the four logical tables: concat(GMF, MLP) -> final, GMF first."""
    model = NeuMF(NeuMFSizes(7, 9, mf_dim=3, mlp_layers=(4, 2), dropout=0.0)).eval()
    u, i = torch.tensor([0, 6, 3]), torch.tensor([8, 1, 1])
    gmf = model.user_embedding_gmf[u] * model.item_embedding_gmf[i]
    mlp = torch.relu(model.mlp[0](torch.cat([model.user_embedding_mlp[u], model.item_embedding_mlp[i]], 1)))
    expected = model.final(torch.cat([gmf, mlp], 1)).squeeze(1)
    torch.testing.assert_close(model(u, i), expected)


@pytest.mark.parametrize("layers", [(7, 4), ()])
def test_bad_sizes_are_refused(layers) -> None:
    with pytest.raises(ValueError, match="mlp_layers"):
        NeuMF(NeuMFSizes(3, 3, mlp_layers=layers))
