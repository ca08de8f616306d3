"""Time and memory of ncf.prepare_data on a synthetic ml-20m-sized ratings.csv (real layout).

  full size : python -m ncf.benchmark_prepare                       (20,000,263 ratings, ~530 MB csv)
  small     : python -m ncf.benchmark_prepare --ratings 1000000 --users 7000 --items 3000
  reuse     : python -m ncf.benchmark_prepare --workdir /tmp/ncf_bench --keep   (csv kept and reused)

Generates userId,movieId,rating,timestamp rows sorted by user then movie like the real file (every user
>= 20 ratings, Zipf-like item popularity, distinct (user, movie) pairs, some equal timestamps), runs
`python -m ncf.prepare_data` in a subprocess and reports its wall time, ratings/s and peak RSS
(getrusage(RUSAGE_CHILDREN).ru_maxrss: only the child is measured, not this generator).
Targets on a 2-core machine: under 60 s and under 4 GB for the ml-20m size.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from common import cli, config
from common.config import flag
from common.errors import RunError, UsageError
from common.logging import log_run

TARGET_SECONDS, TARGET_GB = 60.0, 4.0
_RATINGS = pa.array([f"{r / 2:.1f}" for r in range(1, 11)])  # "0.5" .. "5.0", as in ml-20m


def _user_counts(rng: np.random.Generator, ratings: int, users: int, cap: int) -> np.ndarray:
    """Ratings per user: >= 20, heavy-tailed (lognormal weights), <= cap, summing to `ratings`."""
    if ratings < 20 * users or cap < 20 or ratings > cap * users:
        raise ValueError(f"cannot give {users} users >= 20 and <= {cap} ratings each, {ratings} in total")
    weights = rng.lognormal(0.0, 1.5, users)
    counts = 20 + rng.multinomial(ratings - 20 * users, weights / weights.sum())
    while (excess := int(np.maximum(counts - cap, 0).sum())) > 0:  # a few rounds: move the overflow
        counts = np.minimum(counts, cap)
        room = np.where(counts < cap, weights, 0.0)
        counts += rng.multinomial(excess, room / room.sum())
    return counts


def _distinct_items(rng: np.random.Generator, users: np.ndarray, num_items: int) -> np.ndarray:
    """Item per row from a Zipf-like popularity, redrawing the rows that repeat a (user, item) pair."""
    popularity = 1.0 / (np.arange(num_items) + 10.0) ** 0.9
    cdf = np.cumsum(popularity / popularity.sum())
    ranked = rng.permutation(num_items)  # popularity rank -> item slot

    def draw(n: int, zipf: bool) -> np.ndarray:
        if not zipf:  # late rounds: uniform, so users holding most popular items still finish quickly
            return rng.integers(0, num_items, n)
        return ranked[np.minimum(np.searchsorted(cdf, rng.random(n)), num_items - 1)]

    items = draw(len(users), True)
    for round_ in range(200):
        keys = users.astype(np.int64) * num_items + items
        order = np.argsort(keys, kind="stable")
        repeat = np.zeros(len(keys), bool)
        repeat[order[1:]] = keys[order[1:]] == keys[order[:-1]]
        if not repeat.any():
            return items
        items[repeat] = draw(int(repeat.sum()), round_ < 8)
    raise RuntimeError("could not draw distinct items; lower --ratings or raise --items")


def generate(path: Path, num_ratings: int, num_users: int, num_items: int, seed: int = 0) -> None:
    """Write an ml-20m-layout ratings.csv, vectorised (pyarrow's csv writer, no Python row loop)."""
    rng = np.random.default_rng(seed)
    counts = _user_counts(rng, num_ratings, num_users, cap=max(20, num_items // 4))
    users = np.repeat(np.arange(num_users, dtype=np.int32), counts)
    items = _distinct_items(rng, users, num_items)
    gaps = rng.exponential(4 * 3600.0, num_ratings).astype(np.int64)
    gaps[rng.random(num_ratings) < 0.05] = 0  # equal timestamps within a user, as in the real data
    clock = np.cumsum(gaps)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    first = rng.integers(946_684_800, 1_400_000_000, num_users)  # 2000-01-01 .. 2014
    timestamps = np.repeat(first - clock[starts], counts) + clock  # user u starts at first[u]
    movie_ids = np.sort(rng.choice(131_262, num_items, replace=False) + 1)
    order = np.lexsort((movie_ids[items], users))  # the real file is sorted by userId, then movieId
    table = pa.table(
        {
            "userId": users[order] + 1,
            "movieId": movie_ids[items[order]],
            "rating": _RATINGS.take(pa.array(rng.integers(0, 10, num_ratings, dtype=np.int8))),
            "timestamp": timestamps[order],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:  # pyarrow always quotes header names: write the real header by hand
        stream.write(b"userId,movieId,rating,timestamp\n")
        options = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=1 << 20)
        pacsv.write_csv(table, stream, options)


def run_prepare(csv: Path, output: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one `python -m ncf.prepare_data` child process."""
    command = [sys.executable, "-m", "ncf.prepare_data", "--input", str(csv), "--output", str(output)]
    start = time.perf_counter()
    if subprocess.run([*command, "--overwrite"]).returncode:
        raise RunError(f"benchmark_prepare: {' '.join(command)} failed")
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return wall, peak_kb / 2**20


@dataclass(frozen=True)
class PrepareBenchmarkConfig:
    ratings: int = flag(20_000_263, "rows (ml-20m: 20000263)")
    users: int = flag(138_493, "users (ml-20m: 138493)")
    items: int = flag(26_744, "items (ml-20m: 26744)")
    seed: int = flag(0, "generator seed")
    workdir: Path | None = flag(None, "where to write (None: a temp dir, removed at the end)")
    keep: bool = flag(False, "keep the csv (reused next time) and the output")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run (None: none)")


def _csv(cfg: PrepareBenchmarkConfig, csv: Path, params_file: Path) -> None:
    """Write the synthetic ratings.csv, or reuse the one a run with the same parameters kept."""
    params = {"ratings": cfg.ratings, "users": cfg.users, "items": cfg.items, "seed": cfg.seed}
    if csv.exists() and params_file.exists() and json.loads(params_file.read_text()) == params:
        print(f"reusing {csv}", file=sys.stderr)
        return
    start = time.perf_counter()
    try:
        generate(csv, cfg.ratings, cfg.users, cfg.items, cfg.seed)
    except ValueError as e:  # sizes that cannot hold >= 20 distinct ratings per user
        raise UsageError(str(e)) from None
    params_file.write_text(json.dumps(params))
    size = csv.stat().st_size / 2**20
    print(f"generated {csv} ({size:.0f} MiB) in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(
        PrepareBenchmarkConfig, argv, prog="python -m ncf.benchmark_prepare", description=__doc__
    )
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="ncf_bench_"))
    csv, params_file = workdir / "ratings.csv", workdir / "ratings.json"
    try:
        _csv(cfg, csv, params_file)
        wall, peak_gb = run_prepare(csv, workdir / "prepared")
    finally:
        if not cfg.keep:
            for path in (csv, params_file, workdir / "prepared"):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            if cfg.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    rate = cfg.ratings / wall
    ok = wall < TARGET_SECONDS and peak_gb < TARGET_GB
    print(f"prepare_data: wall {wall:.1f} s, {rate:,.0f} samples/s (ratings/s), peak RSS {peak_gb:.2f} GiB")
    print(
        f"benchmark_prepare: ratings={cfg.ratings} wall_s={wall:.1f} samples_per_s={rate:.3e} "
        f"peak_rss_gib={peak_gb:.2f} targets(<{TARGET_SECONDS:.0f} s, <{TARGET_GB:.0f} GiB)={'PASS' if ok else 'FAIL'}"
    )
    return log_run(cfg.log_path, config.to_dict(cfg), {"ratings": cfg.ratings, "seconds": wall,
                                                        "samples_per_s": rate, "peak_rss_gib": peak_gb})  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
