"""The DLRM peers `dlrm.benchmark` times ours against, each run as a script in a process of its own:

  python -P dlrm/benchmark_peers.py '{"peer": "plain", "tables": [100000, ...], ...}'   # -> one JSON line

This file imports torch (torchrec for that peer) and the shared timer (common/peer_runs.py, which changes
no setting), never `dlrm`: a peer runs without our process settings (`THP_MEM_ALLOC_ENABLE` from
common/cpu_env.py, which `import dlrm` sets) and without our kernels (common/linear.py); `-P` keeps this
directory off sys.path. Every variant, ours included, trains
on the same batches from `uniform_batches`: ids uniform over [0, cardinality) as TorchRec's
`RandomRecDataset` draws them, one id per table and sample.

- plain: the DLRM a PyTorch user writes: `nn.Embedding(sparse=True)` per table (autograd's sparse COO
  gradients), `nn.Linear` + ReLU MLPs, the dot interaction (lower-triangle pairs, no padding),
  `torch.optim.SGD` on everything.
- torchrec: TorchRec's own trainer, as its examples/dlrm/dlrm_main.py drives it (that script is not in the
  pip package): `DLRMTrain(DLRM(EmbeddingBagCollection on meta))`, `apply_optimizer_in_backward(SGD)` on the
  sparse arch (FBGEMM's table-batched embedding with SGD fused into the backward), `DistributedModelParallel`
  with its default planner on a 1-process gloo group, `KeyedOptimizerWrapper(SGD)` for the dense part,
  `CombinedOptimizer`, and `TrainPipelineSparseDist.progress()` per step. Needs torchrec + a matching
  fbgemm-gpu-cpu (torch 2.13: torchrec 1.8.0 + fbgemm-gpu-cpu 1.8.0, installed --no-deps).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.peer_runs import time_steps

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # numerical [B, 13], ids [B, F] int64, label [B]


def uniform_batches(
    tables: list[int], num_numerical: int, batch: int, count: int, seed: int = 0
) -> list[Batch]:
    """`count` batches on the CPU: ids uniform over each table, numerical features uniform in [0, 4)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.stack([torch.randint(0, n, (batch,), generator=g) for n in tables], dim=1)
        numerical = torch.rand(batch, num_numerical, generator=g) * 4.0
        out.append((numerical, ids, torch.randint(0, 2, (batch,), generator=g).float()))
    return out


def _mlp(sizes: list[int], relu_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if relu_last or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PlainDLRM(nn.Module):
    """DLRM in plain PyTorch: bottom MLP, one sparse nn.Embedding per table, dot interaction, top MLP."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        d, f = spec["embedding_dim"], len(spec["tables"]) + 1
        self.tables = nn.ModuleList(nn.Embedding(n, d, sparse=True) for n in spec["tables"])
        self.bottom = _mlp([spec["num_numerical"], *spec["bottom_mlp_sizes"]], relu_last=True)
        self.register_buffer("pairs", torch.tril_indices(f, f, offset=-1), persistent=False)
        self.top = _mlp([d + f * (f - 1) // 2, *spec["top_mlp_sizes"]], relu_last=False)

    def forward(self, numerical: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x = self.bottom(numerical)
        vectors = torch.stack([x, *(t(ids[:, i]) for i, t in enumerate(self.tables))], dim=1)  # [B, F, D]
        z = torch.bmm(vectors, vectors.transpose(1, 2))
        return self.top(torch.cat([x, z[:, self.pairs[0], self.pairs[1]]], dim=1)).squeeze(1)


def _plain_step(spec: dict, batches: list[Batch], device) -> Callable[[int], torch.Tensor]:
    model = PlainDLRM(spec).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec["lr"])
    amp = _autocast(spec, device)

    def step(i: int) -> torch.Tensor:
        numerical, ids, label = batches[i % len(batches)]
        with amp():
            logits = model(numerical, ids)
        loss = F.binary_cross_entropy_with_logits(logits.float(), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _autocast(spec: dict, device) -> Callable:
    """bf16 autocast when the run compares under --amp (TorchRec's example has no mixed precision)."""
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["amp"])


def _torchrec_step(spec: dict, batches: list[Batch], device) -> Callable[[int], torch.Tensor]:
    import torch.distributed as dist
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
    from torchrec.datasets.utils import Batch as TorchRecBatch
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
    from torchrec.models.dlrm import DLRM, DLRMTrain
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    with socket.socket() as s:  # a free port for the 1-process group
        s.bind(("127.0.0.1", 0))
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]))
    dist.init_process_group("gloo" if device.type == "cpu" else "nccl", rank=0, world_size=1)
    names = [f"cat_{i}" for i in range(len(spec["tables"]))]
    configs = [EmbeddingBagConfig(name=f"t_{name}", embedding_dim=spec["embedding_dim"], num_embeddings=n,
                                  feature_names=[name]) for name, n in zip(names, spec["tables"])]  # fmt: skip
    model = DLRMTrain(DLRM(embedding_bag_collection=EmbeddingBagCollection(tables=configs, device=torch.device("meta")),
                           dense_in_features=spec["num_numerical"], dense_arch_layer_sizes=spec["bottom_mlp_sizes"],
                           over_arch_layer_sizes=spec["top_mlp_sizes"], dense_device=device))  # fmt: skip
    apply_optimizer_in_backward(torch.optim.SGD, model.model.sparse_arch.parameters(), {"lr": spec["lr"]})
    dmp = DistributedModelParallel(module=model, device=device)
    dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                  lambda params: torch.optim.SGD(params, lr=spec["lr"]))  # fmt: skip
    pipeline = TrainPipelineSparseDist(dmp, CombinedOptimizer([dmp.fused_optimizer, dense]), device)
    ones = torch.ones(len(batches[0][2]) * len(names), dtype=torch.int32)
    prepared = [  # the KeyedJaggedTensor is input preparation (TorchRec's data loader builds it)
        TorchRecBatch(dense_features=numerical, labels=label, sparse_features=KeyedJaggedTensor.from_lengths_sync(
            keys=names, values=ids.t().reshape(-1), lengths=ones))
        for numerical, ids, label in batches
    ]  # fmt: skip
    stream = itertools.cycle(prepared)
    amp = _autocast(spec, device)

    def step(_: int) -> torch.Tensor:
        with amp():
            loss = pipeline.progress(stream)[0]  # its (loss, logits, labels), all detached
        return loss

    return step


def run_peer(spec: dict) -> dict:
    """Build the peer named spec["peer"] on spec's shapes and time it (see the module docstring)."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    batches = uniform_batches(spec["tables"], spec["num_numerical"], spec["batch"], spec["distinct_batches"])
    batches = [tuple(t.to(device) for t in b) for b in batches]
    torch.manual_seed(0)
    build = {"plain": _plain_step, "torchrec": _torchrec_step}[spec["peer"]]
    step = build(spec, batches, device)
    return time_steps(step, spec["batch"], spec["warmup"], spec["steps"], device)


if __name__ == "__main__":
    print(json.dumps(run_peer(json.loads(sys.argv[1]))))
