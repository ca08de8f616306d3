"""Throughput and peak memory of dlrm.prepare_data on synthetic Terabyte-layout day files, at several sizes.

  default   : python -m dlrm.benchmark_prepare                        (24 days x 100k and x 400k lines)
  one size  : python -m dlrm.benchmark_prepare --lines_per_day 1000000 --memory_limit 1GB
  reuse     : python -m dlrm.benchmark_prepare --workdir /tmp/dlrm_bench --keep   (day files kept, reused)

Writes day_0 .. day_{D-1} in the real raw format (label, 13 integers with missing values and some
negatives, 26 8-hex-digit categoricals from fixed per-feature vocabularies of 10 .. 1M values with a
Zipf-like head and a long tail), vectorised through pyarrow's CSV writer (1.0-1.6 s per 100k lines here
vs 3.8 s for dlrm.synthetic.write_criteo_days, which builds Python strings; day files are reused when
the parameters match). Then runs `python -m dlrm.prepare_data` in a subprocess per size and
reports rows/s and peak memory two ways: the largest single process (getrusage RUSAGE_CHILDREN ru_maxrss)
and the sum over the whole process tree (main + workers, /proc sampled every 0.2 s). With a fixed
vocabulary, peak memory should stay flat while the number of lines grows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from common import cli, config
from common.config import ConfigError, flag
from common.errors import RunError
from common.logging import log_run

# Per-feature vocabulary sizes: a few huge, several mid, many small features, like Criteo.
VOCABULARY = [1_000_000, 500_000, 200_000] * 2 + [50_000, 20_000, 5_000, 1_000] * 3 + [300, 100, 30, 10] * 2
_NIBBLES = np.frombuffer(b"0123456789abcdef", np.uint8)


def _hex_strings(values: np.ndarray, valid: np.ndarray) -> pa.StringArray:
    """uint32 -> 8 lowercase hex digits, built as raw Arrow buffers (no Python strings)."""
    n = len(values)
    octets = values.astype(">u4").view(np.uint8).reshape(n, 4)
    digits = np.empty((n, 8), np.uint8)
    digits[:, 0::2], digits[:, 1::2] = _NIBBLES[octets >> 4], _NIBBLES[octets & 15]
    offsets = pa.py_buffer(np.arange(0, 8 * n + 1, 8, dtype=np.int32))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(digits), bitmap)


def write_day(path: Path, lines: int, seed: int, day: int) -> None:
    """One day file; every day shares the per-feature vocabularies (seeded by `seed` only)."""
    rng = np.random.default_rng([seed, day])
    columns = {"label": pa.array((rng.random(lines) < 0.25).astype(np.int8))}
    for i in range(13):
        values = np.floor(np.exp(rng.normal(1.0 + 0.3 * i, 1.5, lines))).astype(np.int64) - 1
        if i == 1:  # I2 has small negative values in the real logs (-3 exercises the ln(x + 3) guard)
            negative = rng.random(lines) < 0.1
            values[negative] = -rng.integers(1, 4, int(negative.sum()))
        columns[f"I{i + 1}"] = pa.array(values, mask=rng.random(lines) < 0.2)
    for j, size in enumerate(VOCABULARY):
        salt = np.random.default_rng([seed, 1000 + j]).integers(0, 2**32, dtype=np.uint64)
        rank = (rng.zipf(1.2, lines) - 1) % size  # Zipf head, the tail wraps over the whole vocabulary
        raw = ((rank.astype(np.uint64) * np.uint64(2654435761) + salt) % np.uint64(2**32)).astype(np.uint32)
        columns[f"C{j + 1}"] = _hex_strings(raw, rng.random(lines) >= 0.1)
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    pacsv.write_csv(pa.table(columns), path, options)


def _tree_rss(root: int) -> int:
    """Bytes of resident memory of `root` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stream:
                    ppid = int(stream.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as stream:
                total += int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total


# Runs the command and reports ITS children's peak (getrusage is cumulative per process, so every size
# gets a fresh measuring parent; prepare_data's workers are waited for by it, so they count too).
_MEASURE = (
    "import json, resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(json.dumps([usage.ru_maxrss, usage.ru_utime + usage.ru_stime])); "
    "sys.exit(code)"
)


def run_prepare(command: list[str], workdir: Path) -> tuple[float, float, float, float]:
    """(wall s, CPU s of all its processes, largest process peak GiB, sampled whole-tree peak GiB)."""
    report = workdir / "maxrss.json"
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _MEASURE, str(report), *command])
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_rss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if code:
        raise RunError(f"benchmark_prepare: {' '.join(command)} failed with exit status {code}")
    maxrss, cpu = json.loads(report.read_text())
    return wall, cpu, maxrss / 2**20, peak[0] / 2**30  # ru_maxrss is in KiB


def _generate(directory: Path, days: int, lines: int, seed: int) -> None:
    params = {"days": days, "lines_per_day": lines, "seed": seed, "vocabulary": VOCABULARY}
    stamp = directory / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        print(f"reusing {directory}", file=sys.stderr)
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    start = time.perf_counter()
    for day in range(days):
        write_day(directory / f"day_{day}", lines, seed, day)
    stamp.write_text(json.dumps(params))
    size = sum(f.stat().st_size for f in directory.glob("day_*")) / 2**30
    print(
        f"generated {days} x {lines:,} lines ({size:.2f} GiB) in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )


@dataclass(frozen=True)
class PrepareBenchmarkConfig:
    days: int = flag(24, "day files per size")
    lines_per_day: list[int] = flag([100_000, 400_000], "sizes to run (lines per day file)")
    workers: int = flag(2, "prepare_data --workers")
    memory_limit: str = flag("256MB", "prepare_data --memory_limit")
    frequency_threshold: int = flag(15, "prepare_data --frequency_threshold")
    seed: int = flag(0, "generator seed")
    workdir: Path | None = flag(None, "where to write (None: a temp dir, removed at the end)")
    keep: bool = flag(False, "keep the day files (reused next time) and the outputs")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run (None: none)")

    def validate(self) -> None:
        if self.days < 1 or min(self.lines_per_day) < 1 or self.workers < 1:
            raise ConfigError("--days, --lines_per_day and --workers must be >= 1")


def _measure_size(cfg: PrepareBenchmarkConfig, workdir: Path, lines: int) -> dict[str, float]:
    """Generate (or reuse) one size's day files, run prepare_data on them, print and return its numbers."""
    raw, out = workdir / f"raw_{lines}", workdir / f"prepared_{lines}"
    _generate(raw, cfg.days, lines, cfg.seed)
    command = [sys.executable, "-m", "dlrm.prepare_data", "--input", str(raw), "--output", str(out),
               "--days", str(cfg.days), "--workers", str(cfg.workers), "--memory_limit", cfg.memory_limit,
               "--frequency_threshold", str(cfg.frequency_threshold), "--overwrite", "--no-progress"]  # fmt: skip
    wall, cpu, largest, tree = run_prepare(command, workdir)
    if not cfg.keep:
        shutil.rmtree(out, ignore_errors=True)
    total = cfg.days * lines
    print(
        f"benchmark_prepare: {cfg.days} days x {lines:,} lines = {total:,} rows: wall {wall:.1f} s, "
        f"{total / wall:,.0f} rows/s, CPU {cpu:.0f} s = {cpu / total * 1e6:.1f} us per row (all "
        f"processes; {total / cpu:,.0f} rows per CPU-second), peak RSS largest process {largest:.2f} "
        f"GiB, whole tree {tree:.2f} GiB (--workers {cfg.workers} --memory_limit {cfg.memory_limit})"
    )
    return {"rows": total, "seconds": wall, "rows_per_s": total / wall, "cpu_us_per_row": cpu / total * 1e6,
            "peak_process_gib": largest, "peak_tree_gib": tree}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(
        PrepareBenchmarkConfig, argv, prog="python -m dlrm.benchmark_prepare", description=__doc__
    )
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="dlrm_bench_"))
    try:
        results = {lines: _measure_size(cfg, workdir, lines) for lines in cfg.lines_per_day}
    finally:
        if not cfg.keep:
            for lines in cfg.lines_per_day:
                shutil.rmtree(workdir / f"raw_{lines}", ignore_errors=True)
            if cfg.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    small, large = results[min(results)], results[max(results)]
    growth = large["peak_tree_gib"] / small["peak_tree_gib"]
    if len(results) > 1:
        print(
            f"benchmark_prepare: rows x{large['rows'] / small['rows']:.1f} -> whole-tree peak memory x{growth:.2f}"
        )
    summary = {
        key: large[key] for key in ("rows_per_s", "cpu_us_per_row", "peak_process_gib", "peak_tree_gib")
    }
    return log_run(cfg.log_path, config.to_dict(cfg), summary | {"memory_growth": growth})


if __name__ == "__main__":
    cli.run(main)
