"""Process-group setup from the launcher's variables and the few collectives the recipes need.

The `DistEnv` value is passed explicitly (no module-level "is main" state). Without a launcher's variables
in the environment the program is a single process and no process group is created, so the same entry
point runs as `python -m ...`, under `torchrun` / `python -m torch.distributed.launch`, and under the
seed's `mpiexec -np N` / `horovodrun` (Open MPI, MPICH/Intel MPI and Horovod variables are translated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from common.errors import UsageError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # this init created the process group (a caller's group is left to the caller)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(local_rank: int = 0, device: str = "auto") -> torch.device:
    """'auto' = the local rank's GPU when CUDA is present, else CPU; 'cpu' / 'cuda' force it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device("cpu")


# (rank, world size, local rank, local size) variables per launcher; torchrun's own come first.
_LAUNCHERS = {
    "Open MPI mpiexec / horovodrun": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                      "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    "MPICH / Intel MPI mpiexec": ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    "horovodrun (gloo)": ("HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"),
}  # fmt: skip


def adopt_launcher_env(environ: dict[str, str] | None = None) -> int:
    """Translate an MPI / Horovod launcher's variables into torchrun's (RANK, WORLD_SIZE, LOCAL_RANK and,
    on one node, MASTER_ADDR/PORT = 127.0.0.1:29500); returns the world size. Left alone under torchrun.

    Why: the SIM seed runs `mpiexec -np N python main.py`; without this every process saw no WORLD_SIZE,
    ran a full single-process job on GPU 0 and wrote the same log. Across nodes MASTER_ADDR must be passed
    (mpiexec -x MASTER_ADDR=<rank 0 host> -x MASTER_PORT=<port>); without it this refuses.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env:
        return int(env["WORLD_SIZE"])
    for launcher, (rank, size, local_rank, local_size) in _LAUNCHERS.items():
        if size not in env:
            continue
        world = int(env[size])
        if world > 1 and local_rank not in env:
            raise UsageError(f"started by {launcher} ({size}={world}) but {local_rank} is not set, so the "
                     "GPU of each process is unknown; launch with torchrun --nproc_per_node instead")  # fmt: skip
        if world > 1 and "MASTER_ADDR" not in env:
            if int(env.get(local_size, world)) != world:
                raise UsageError(f"{launcher} across nodes: pass MASTER_ADDR (the rank 0 host) and MASTER_PORT, "
                         "e.g. mpiexec -x MASTER_ADDR=node0 -x MASTER_PORT=29500 ...")  # fmt: skip
            env["MASTER_ADDR"] = "127.0.0.1"
        env.setdefault("MASTER_PORT", "29500")
        env.update(RANK=env[rank], WORLD_SIZE=str(world), LOCAL_RANK=env.get(local_rank, "0"))
        return world
    return 1


_BACKEND_USED: list[str | None] = [None]  # the one piece of module state: common.cli.run reads it at exit


def used_backend() -> str | None:
    """The backend of the process group this process created ('gloo' / 'nccl'), even after shutdown."""
    return _BACKEND_USED[0]


def init(device: str = "auto", timeout_s: float = 1800.0) -> DistEnv:
    """Read RANK/LOCAL_RANK/WORLD_SIZE (torchrun's, or translated from mpiexec's) and join the process group.

    nccl on GPU, gloo on CPU. `torch.cuda.set_device` runs before the group is created: NCCL binds each
    process to the current device at init, and without it every rank would open a context on GPU 0.
    """
    world_size = adopt_launcher_env()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(local_rank, device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
        _BACKEND_USED[0] = backend
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, owns_group=owns_group)


def shutdown(env: DistEnv) -> None:
    """Leave the process group if this process's init created it (tests and --mode test call a main
    inside a group they own)."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        if env.device.type == "cuda":
            dist.barrier(device_ids=[env.device.index])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum over ranks (a new tensor; the input is left alone). Identity on one process."""
    out = tensor.clone()
    if env.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_max(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    out = tensor.clone()
    if env.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def all_gather_cat(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate every rank's tensor along dim 0, in rank order; ranks may hold different lengths.

    Used for exact metrics (AUC) that cannot be computed from per-rank sums.
    """
    if not env.distributed:
        return tensor
    tensor = tensor.contiguous()
    length = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.int64)
    lengths = [torch.zeros_like(length) for _ in range(env.world_size)]
    dist.all_gather(lengths, length)
    sizes = [int(n.item()) for n in lengths]
    padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(env.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def broadcast_(tensor: torch.Tensor, env: DistEnv, src: int = 0) -> torch.Tensor:
    """In-place broadcast from `src` (e.g. a shared random seed or permutation)."""
    if env.distributed:
        dist.broadcast(tensor, src=src)
    return tensor


def wrap_ddp(model: torch.nn.Module, env: DistEnv, **kwargs) -> torch.nn.Module:
    """DDP when there is more than one process; the model itself otherwise (build unwrapped, wrap last)."""
    if not env.distributed:
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **kwargs)


def shard_range(total: int, env: DistEnv) -> tuple[int, int]:
    """[start, stop) of this rank's share of `total` whole units; the first `total % W` ranks get one more.

    Units are whole evaluation series (users), never flat rows: torch.chunk may return fewer chunks than
    ranks on small data, and a series split across ranks would be ranked incorrectly.
    """
    base, extra = divmod(total, env.world_size)
    start = env.rank * base + min(env.rank, extra)
    return start, start + base + (1 if env.rank < extra else 0)
