"""Distributed ring: 2 gloo processes must reproduce the single-process metrics exactly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from common import cli, distributed, metrics
from common.errors import UsageError
from tests.distributed_helpers import run_distributed

SERIES, CANDIDATES, K = 37, 11, 5  # 37 series over 2 ranks: uneven shards (19 + 18)


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(SERIES, CANDIDATES, generator=g)
    labels = torch.zeros(SERIES, CANDIDATES)
    labels[torch.arange(SERIES), torch.randint(0, CANDIDATES, (SERIES,), generator=g)] = 1
    return scores, labels, torch.rand(SERIES * CANDIDATES, generator=g).round(decimals=1)


def _metrics(env: distributed.DistEnv) -> dict[str, float]:
    scores, labels, flat = _data()
    start, stop = distributed.shard_range(SERIES, env)
    counts = metrics.topk_position_counts(scores[start:stop], labels[start:stop], None, K)
    hits, ndcg = metrics.hit_ndcg_from_counts(distributed.all_reduce_sum(counts, env))
    lo, hi = distributed.shard_range(flat.numel(), env)
    all_scores = distributed.all_gather_cat(flat[lo:hi], env)
    all_labels = distributed.all_gather_cat(labels.flatten()[lo:hi], env)
    return {
        "hr": float(hits / SERIES),
        "ndcg": float(ndcg / SERIES),
        "auc": float(metrics.roc_auc(all_scores, all_labels)),
        "rows": stop - start,
    }


def _worker() -> dict[str, float]:
    env = distributed.init(device="cpu")
    try:
        assert env.world_size == 2 and torch.distributed.get_backend() == "gloo"
        return _metrics(env)
    finally:
        distributed.shutdown(env)


def test_two_gloo_ranks_match_one_process() -> None:
    single = _metrics(distributed.DistEnv(0, 0, 1, torch.device("cpu")))
    ranks = run_distributed(_worker, world_size=2)
    assert [r["rows"] for r in ranks] == [19, 18]
    for r in ranks:
        assert {k: r[k] for k in ("hr", "ndcg", "auc")} == {k: single[k] for k in ("hr", "ndcg", "auc")}
    assert 0 < single["hr"] < 1 and 0 < single["auc"] < 1


def test_single_process_env_without_torchrun(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    env = distributed.init(device="cpu")
    assert (env.rank, env.world_size, env.is_main, env.distributed) == (0, 1, True, False)
    assert not torch.distributed.is_initialized()
    model = torch.nn.Linear(2, 1)
    assert distributed.wrap_ddp(model, env) is model


def test_shard_range_covers_everything_once() -> None:
    for total in (0, 1, 5, 37):
        for world in (1, 2, 3, 8):
            parts = [
                distributed.shard_range(total, distributed.DistEnv(r, r, world, torch.device("cpu")))
                for r in range(world)
            ]
            assert parts[0][0] == 0 and parts[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


@pytest.mark.parametrize("backend", ["None", "'gloo'", "'nccl'"])
def test_cli_run_flushes_and_exits_zero(backend: str) -> None:
    """gloo workers skip interpreter finalisation (os._exit) but still flush their output."""
    code = (
        "import atexit, sys\n"
        "from common import cli, distributed\n"
        "atexit.register(lambda: print('finalised'))\n"
        f"distributed._BACKEND_USED[0] = {backend}  # what distributed.init records\n"
        "cli.run(lambda argv: print('done', end=''), [])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("done" if backend == "'gloo'" else "donefinalised\n")


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [
        ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
          "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, ("3", "4", "1")),
        ({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"}, ("1", "2", "1")),
        ({"HOROVOD_RANK": "0", "HOROVOD_SIZE": "2", "HOROVOD_LOCAL_RANK": "0", "HOROVOD_LOCAL_SIZE": "2"},
         ("0", "2", "0")),
        ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}, ("0", "1", "0")),
    ],
)  # fmt: skip
def test_mpi_and_horovod_variables_become_torchrun_ones(launcher: dict, expected: tuple) -> None:
    env = dict(launcher)
    assert distributed.adopt_launcher_env(env) == int(expected[1])
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == expected
    if expected[1] != "1":  # one node: rank 0 is local
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", "29500")
    ours = {"WORLD_SIZE": "2", **launcher}  # torchrun's variables win over an outer launcher's
    assert distributed.adopt_launcher_env(ours) == 2 and "RANK" not in ours
    assert distributed.adopt_launcher_env({}) == 1


def test_mpi_launch_that_cannot_work_is_refused() -> None:
    two_nodes = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
                 "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}  # fmt: skip
    with pytest.raises(UsageError, match="across nodes: pass MASTER_ADDR"):
        distributed.adopt_launcher_env(dict(two_nodes))
    env = {**two_nodes, "MASTER_ADDR": "node0"}
    assert distributed.adopt_launcher_env(env) == 4 and env["MASTER_ADDR"] == "node0"
    with pytest.raises(UsageError, match="MPI_LOCALRANKID is not set"):
        distributed.adopt_launcher_env({"PMI_RANK": "0", "PMI_SIZE": "2"})


def test_local_rank_argument_is_stripped_for_every_entry_point(monkeypatch) -> None:
    """cli.run removes torch.distributed.launch's --local-rank before an entry point's own argparse."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert cli.strip_local_rank(["--data", "d", "--local-rank=1", "-k", "5"]) == [
        "--data",
        "d",
        "-k",
        "5",
    ]
    assert os.environ["LOCAL_RANK"] == "1"
    assert cli.strip_local_rank(["--local_rank", "1", "--x"]) == ["--x"]
