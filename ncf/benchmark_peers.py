"""The plain PyTorch NeuMF loop `ncf.benchmark` times ours against, run as a script in its own process:

  python -P ncf/benchmark_peers.py '{"users": 138493, "items": 26744, "train_rows": 19861770, ...}'   # -> JSON

This file imports torch and the shared timer (common/peer_runs.py, which changes no setting), never `ncf`:
the loop runs without our process settings (`THP_MEM_ALLOC_ENABLE` from common/cpu_env.py, which
`import ncf` sets) and without our kernels (common/linear.py); `-P` keeps this directory off sys.path.

The same work per sample as ours: the same positives (`synthetic_positives`, which ours trains on too),
`negatives` uniform random negatives per positive, one shuffled epoch cut into batches of `batch`
(user, item, label) rows, NeuMF with the reference sizes (same math and init as ncf.model.NeuMF), the
mean binary cross-entropy and Adam with the recipe's hyperparameters. Written as most tutorials write
it: four nn.Embedding tables, nn.Dropout, torch.optim.Adam (its default implementation), zero_grad.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F
from torch import nn

from common.peer_runs import time_steps


def synthetic_positives(users: int, items: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) int32 of `rows` training positives, uniform over both id ranges (seeded)."""
    g = torch.Generator().manual_seed(0)
    return (
        torch.randint(0, users, (rows,), generator=g, dtype=torch.int32),
        torch.randint(0, items, (rows,), generator=g, dtype=torch.int32),
    )


class PlainNeuMF(nn.Module):
    """NeuMF as most tutorials write it: GMF (user * item) and an MLP over [user; item], one final layer."""

    def __init__(self, users: int, items: int, mf_dim: int, mlp_layers: list[int], dropout: float) -> None:
        super().__init__()
        half = mlp_layers[0] // 2
        self.mf_user, self.mf_item = nn.Embedding(users, mf_dim), nn.Embedding(items, mf_dim)
        self.mlp_user, self.mlp_item = nn.Embedding(users, half), nn.Embedding(items, half)
        layers: list[nn.Module] = []
        for a, b in zip(mlp_layers[:-1], mlp_layers[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers)
        self.final = nn.Linear(mf_dim + mlp_layers[-1], 1)
        for emb in (self.mf_user, self.mf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, 0, 0.01)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        gmf = self.mf_user(user) * self.mf_item(item)
        mlp = self.mlp(torch.cat([self.mlp_user(user), self.mlp_item(item)], dim=1))
        return self.final(torch.cat([gmf, mlp], dim=1)).squeeze(1)


def run_peer(spec: dict) -> dict:
    """Train the plain loop for spec["warmup"] + spec["steps"] batches of one epoch and time the last ones."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    sizes = spec["sizes"]
    positives = synthetic_positives(sizes["num_users"], sizes["num_items"], spec["train_rows"])
    users, items = (t.to(device) for t in positives)
    n, neg = users.numel(), spec["negatives"]
    g = torch.Generator(device=device).manual_seed(1)
    epoch_users = users.long().repeat(1 + neg)  # the epoch: positives, then `neg` negatives per positive
    epoch_items = torch.cat(
        [items.long(), torch.randint(0, sizes["num_items"], (n * neg,), generator=g, device=device)]
    )
    epoch_labels = torch.cat([torch.ones(n, device=device), torch.zeros(n * neg, device=device)])
    order = torch.randperm(n * (1 + neg), generator=g, device=device)
    torch.manual_seed(0)
    model = PlainNeuMF(*(sizes[k] for k in ("num_users", "num_items", "mf_dim", "mlp_layers", "dropout")))
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.0045, betas=(0.25, 0.5))
    batch = spec["batch"]
    if (spec["warmup"] + spec["steps"]) * batch > order.numel():
        raise ValueError(
            f"{order.numel()} rows give fewer than {spec['warmup'] + spec['steps']} batches of {batch}"
        )

    def step(i: int) -> torch.Tensor:
        idx = order[i * batch : (i + 1) * batch]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["amp"]):
            logits = model(epoch_users[idx], epoch_items[idx])
        loss = F.binary_cross_entropy_with_logits(logits.float(), epoch_labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    return time_steps(step, batch, spec["warmup"], spec["steps"], device)


if __name__ == "__main__":
    print(json.dumps(run_peer(json.loads(sys.argv[1]))))
