"""Run a function in N gloo processes with the torchrun environment variables set, on CPU."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable, world_size: int, port: int, queue: Any, args: tuple) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "CUDA_VISIBLE_DEVICES": "",
        }
    )
    import torch

    from common import cli

    torch.set_num_threads(1)
    cli.run(lambda _argv: queue.put((rank, fn(*args))), [])  # ends with os._exit: see cli._exit (gloo)


def run_distributed(fn: Callable, *args: Any, world_size: int = 2) -> list[Any]:
    """Spawn `world_size` processes running fn(*args) (fn must be importable); returns results by rank."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(
        _entry, args=(fn, world_size, free_port(), queue, args), nprocs=world_size, start_method="spawn"
    )
    results = dict(queue.get() for _ in range(world_size))
    return [results[r] for r in range(world_size)]


def run_like_open_mpi(cmd: list[str], env: dict[str, str], world_size: int = 2) -> list[tuple[str, str]]:
    """Start `cmd` world_size times with only the variables `mpiexec -np N` (Open MPI) sets, no torchrun
    ones; asserts every process exits 0 and returns each one's (stdout, stderr)."""
    port, procs = str(free_port()), []
    for rank in range(world_size):
        rank_env = {**env, "MASTER_PORT": port, "OMPI_COMM_WORLD_RANK": str(rank),
                    "OMPI_COMM_WORLD_SIZE": str(world_size), "OMPI_COMM_WORLD_LOCAL_RANK": str(rank),
                    "OMPI_COMM_WORLD_LOCAL_SIZE": str(world_size)}  # fmt: skip
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
            rank_env.pop(name, None)
        procs.append(
            subprocess.Popen(cmd, env=rank_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * world_size, "".join(err[-2000:] for _, err in outs)
    return outs
