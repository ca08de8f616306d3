"""dlrm.benchmark: interleaved runs in separate processes, peers without our settings, the same work."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import peer_runs
from common.errors import InputError
from dlrm import benchmark
from dlrm import benchmark_peers as peers
from dlrm.model import DLRM, DlrmSizes

SHAPES = ["--synthetic_dataset_table_sizes", "50", "80", "--embedding_dim", "8", "--bottom_mlp_sizes", "16", "8",
          "--top_mlp_sizes", "16", "1", "--device", "cpu"]  # fmt: skip


def test_train_runs_ours_and_the_plain_loop_and_reports_medians(tmp_path: Path) -> None:
    """Two child processes (each imports torch: a few seconds)."""
    argv = ["--mode", "train", *SHAPES, "--batch_sizes", "64", "--steps", "2", "--warmup", "1", "--repeats", "1",
            "--threads", "1", "--log_path", str(tmp_path / "b.json")]  # fmt: skip
    result = benchmark.main(argv)
    for name in ("ours", "plain"):
        key = f"batch_64_{name}_train_throughput"
        assert result[f"{key}_min"] <= result[key] <= result[f"{key}_max"] and result[key] > 0
        assert result[f"batch_64_{name}_peak_rss_gib"] > 0
    assert result["batch_64_speedup_vs_plain"] == pytest.approx(
        result["batch_64_ours_train_throughput"] / result["batch_64_plain_train_throughput"]
    )
    assert result["peak_memory_gib"] > 0 and (tmp_path / "b.json").exists()


def test_peers_run_without_our_settings_in_their_own_process() -> None:
    assert os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"  # `import dlrm` set it in this process
    cfg = benchmark.config.parse(benchmark.BenchmarkConfig, ["--compare_torchrec"])
    runs = benchmark._runs(cfg, {"batch": 8})
    assert set(runs) == {"ours", "plain", "torchrec"}
    assert runs["ours"][1]["THP_MEM_ALLOC_ENABLE"] == "1"
    for name in ("plain", "torchrec"):
        command, env = runs[name]
        assert "THP_MEM_ALLOC_ENABLE" not in env and command[1:3] == ["-P", str(benchmark.PEERS_SCRIPT)]
        assert json.loads(command[3])["peer"] == name
    # the peer script imports no recipe module (importing dlrm would set our settings again)
    tree = ast.parse(benchmark.PEERS_SCRIPT.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {n for n in names if n.split(".")[0] in ("dlrm", "ncf", "sim")}
    assert {n for n in names if n.startswith("common")} == {"common.peer_runs"}


def test_ids_are_uniform_over_each_table() -> None:
    (_, ids, _), *_ = peers.uniform_batches([1000, 10], 13, 8192, 1)
    assert ids[:, 0].min() >= 0 and ids[:, 0].max() < 1000 and set(ids[:, 1].tolist()) == set(range(10))
    assert abs(ids[:, 0].float().mean().item() - 499.5) < 15  # skewed ids (u**3) would average ~250


def test_plain_peer_computes_the_same_function_as_ours() -> None:
    """Same work per sample: with our weights the plain DLRM gives our logits (our padding column is 0)."""
    sizes = DlrmSizes(table_sizes=(50, 80), embedding_dim=4, bottom_mlp_sizes=(8, 4), top_mlp_sizes=(8, 1))
    ours = DLRM(sizes, sparse=False)
    spec = {"tables": [50, 80], "embedding_dim": 4, "num_numerical": 13, "bottom_mlp_sizes": [8, 4],
            "top_mlp_sizes": [8, 1]}  # fmt: skip
    plain = peers.PlainDLRM(spec)
    state = ours.state_dict()
    with torch.no_grad():
        for i in (0, 2):
            plain.bottom[i].weight.copy_(state[f"dense.bottom_mlp.{i}.weight"])
            plain.bottom[i].bias.copy_(state[f"dense.bottom_mlp.{i}.bias"])
            width = plain.top[i].weight.shape[1]
            plain.top[i].weight.copy_(state[f"dense.top_mlp.{i}.weight"][:, :width])
            plain.top[i].bias.copy_(state[f"dense.top_mlp.{i}.bias"])
        for i, table in enumerate(plain.tables):
            table.weight.copy_(state[f"embeddings.{i}.weight"])
    (numerical, ids, _), *_ = peers.uniform_batches([50, 80], 13, 32, 1)
    torch.testing.assert_close(plain(numerical, ids), ours(numerical, ids), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("torchrec") is None, reason="needs torchrec + fbgemm-gpu-cpu")
def test_torchrec_peer_trains() -> None:
    spec = {"peer": "torchrec", "tables": [20, 30], "num_numerical": 13, "embedding_dim": 4,
            "bottom_mlp_sizes": [8, 4], "top_mlp_sizes": [8, 1], "batch": 16, "distinct_batches": 2, "warmup": 2,
            "steps": 2, "lr": 0.1, "amp": False, "threads": 1, "device": "cpu"}  # fmt: skip
    out = subprocess.run([sys.executable, "-P", str(benchmark.PEERS_SCRIPT), json.dumps(spec)], capture_output=True,
                         text=True, env=peer_runs.peer_env(), check=True)  # fmt: skip
    assert json.loads(out.stdout.splitlines()[-1])["train_throughput"] > 0


def test_inference_and_config_errors(tmp_path: Path) -> None:
    result = benchmark.main(
        ["--mode", "inference", *SHAPES, "--batch_sizes", "1", "64", "--num_batches", "5"]
    )
    for b in (1, 64):
        lat = [result[f"batch_{b}_{k}_latency"] for k in ("p50", "p90", "p95", "p99")]
        assert lat == sorted(lat) and result[f"batch_{b}_mean_throughput"] > 0
    with pytest.raises(InputError, match="nope.pt does not exist"):
        benchmark.main(["--mode", "inference", "--checkpoint", str(tmp_path / "nope.pt"), "--device", "cpu"])
    with pytest.raises(SystemExit):  # argparse-style usage error naming the flag
        benchmark.main(["--repeats", "0"])


def test_help_documents_every_flag_with_its_default(capsys) -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["--help"])
    out = capsys.readouterr().out
    for flag in (
        "--compare_torchrec",
        "--repeats",
        "--distinct_batches",
        "--cuda_graph_max_batch",
        "--threads",
    ):
        assert flag in out
    assert "(default: 3)" in out and "(default: 512 256 16)" in out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_inference_matches_eager() -> None:
    sizes = DlrmSizes(
        table_sizes=(100, 1000, 10), embedding_dim=16, bottom_mlp_sizes=(32, 16), top_mlp_sizes=(32, 1)
    )
    model = DLRM(sizes, sparse=False).cuda().eval()
    amp = benchmark.amp_lib.setup(False, torch.device("cuda"))
    make = lambda: (torch.rand(64, 13, device="cuda"), torch.randint(0, 10, (64, 3), device="cuda"))  # noqa: E731
    with torch.no_grad():
        num, cat = make()
        replay = benchmark._cuda_graph(model, num, cat, amp)
        for _ in range(3):
            num, cat = make()
            torch.testing.assert_close(replay(num, cat), torch.sigmoid(model(num, cat)))
    result = benchmark.main(["--mode", "inference", "--synthetic_dataset_table_sizes", "100", "1000",
                             "--batch_sizes", "1", "64", "--num_batches", "5", "--device", "cuda"])  # fmt: skip
    assert result["batch_64_cuda_graph"] == 1.0


def test_prepare_benchmark_failed_run_is_a_run_error_and_bad_sizes_a_usage_error(
    tmp_path: Path, capsys
) -> None:
    from common.errors import RunError
    from dlrm import benchmark_prepare

    with pytest.raises(RunError, match="failed with exit status 3"):
        benchmark_prepare.run_prepare([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path)
    with pytest.raises(SystemExit) as e:
        benchmark_prepare.main(["--days", "0", "--workdir", str(tmp_path)])
    assert e.value.code == 2 and "--days" in capsys.readouterr().err and not list(tmp_path.glob("raw_*"))
