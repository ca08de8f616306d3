"""Time and memory of sim.prepare_data on synthetic Amazon-2014-format files shaped like Books, scaled down.

  default : python -m sim.benchmark_prepare                      (3,000,000 reviews, ~2.7 GB of json)
  small   : python -m sim.benchmark_prepare --reviews 300000
  reuse   : python -m sim.benchmark_prepare --workdir /tmp/sim_bench --keep   (input kept and reused)

Books 2014: 22.5M reviews by 8.0M users on 2.33M items (2.37M metadata lines); users with
>= 20 reviews are 1.3% of users holding ~27% of reviews (105,925 users, ~57 reviews each). The generator
keeps those ratios at any size: heavy users get 20 + lognormal-weighted extra reviews, the rest 1-19,
items are Zipf-popular, days span 1996-2014 (many same-day ties), lines carry the other review fields
with ~700 characters of reviewText (~900 B per line) and metadata lines carry `related` lists like the
real ones (~1.5 KB). Lines are written sorted by asin, like the SNAP files. The input is generated here
(vectorised numpy + string templates, not sim.synthetic.write_amazon, whose per-user x per-item
matrix does not fit at this size), then `python -m sim.prepare_data` runs in a subprocess; reported:
wall time, reviews/s, per-stage times, peak RSS of the preparing process (getrusage) and of its whole
process tree (sampled /proc, metadata workers included).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import cli, config
from common.config import flag
from common.errors import RunError
from common.logging import log_run

BOOKS = {
    "reviews": 22_507_155,
    "users": 8_026_324,
    "items": 2_330_066,
    "meta": 2_370_585,
    "kept_users": 105_925,
}
HEAVY_USER_SHARE, HEAVY_REVIEW_SHARE = BOOKS["kept_users"] / BOOKS["users"], 0.27
_WORDS = (
    "the a of book story read author characters plot great love life time world well written series "
    "first novel ending recommend enjoyed pages really"
)


def _alnum(rng: np.random.Generator, n: int, width: int, prefix: str) -> list[str]:
    """n distinct-ish ids like 'A1B2...' (collisions are harmless: they merge users/items)."""
    digits = rng.integers(0, 36**6, (n, -(-width // 6)))
    text = np.vectorize(lambda v: np.base_repr(v, 36).rjust(6, "0"))(digits)
    return [prefix + "".join(row)[:width] for row in text]


def _counts(rng: np.random.Generator, reviews: int) -> np.ndarray:
    """Reviews per user: heavy users (>= 20, lognormal-weighted extra), light users 1..19 (geometric)."""
    users = max(2, round(reviews * BOOKS["users"] / BOOKS["reviews"]))
    heavy = max(1, round(users * HEAVY_USER_SHARE))
    heavy_total = max(20 * heavy, round(reviews * HEAVY_REVIEW_SHARE))
    weights = rng.lognormal(0.0, 1.0, heavy)
    heavy_counts = 20 + rng.multinomial(heavy_total - 20 * heavy, weights / weights.sum())
    light_mean = (reviews - heavy_total) / (users - heavy)
    light_counts = np.minimum(rng.geometric(1.0 / max(light_mean, 1.0), users - heavy), 19)
    return rng.permutation(np.concatenate([heavy_counts, light_counts]))


def generate(directory: Path, reviews: int, seed: int) -> dict:
    """Write reviews_Books.json and meta_Books.json; returns their sizes and the generator's counts."""
    rng = np.random.default_rng(seed)
    counts = _counts(rng, reviews)
    n = int(counts.sum())
    num_items = max(10, round(n * BOOKS["items"] / BOOKS["reviews"]))
    user_names = _alnum(rng, len(counts), 13, "A")
    asins = sorted(set(_alnum(rng, num_items, 9, "0")))
    num_items = len(asins)
    popularity = 1.0 / (np.arange(num_items) + 10.0) ** 0.9
    item = rng.permutation(num_items)[
        np.searchsorted(np.cumsum(popularity / popularity.sum()), rng.random(n))
    ]
    item = np.minimum(item, num_items - 1)
    user = np.repeat(np.arange(len(counts)), counts)
    directory.mkdir(parents=True, exist_ok=True)
    reviews_path, meta_path = directory / "reviews_Books.json", directory / "meta_Books.json"
    _write_reviews(reviews_path, rng, (user_names, user), (asins, item))
    meta_lines = _write_metadata(meta_path, rng, asins)
    return {
        "reviews": n,
        "users": len(counts),
        "users_ge_20": int((counts >= 20).sum()),
        "reviews_of_users_ge_20": int(counts[counts >= 20].sum()),
        "review_bytes": reviews_path.stat().st_size,
        "meta_lines": meta_lines,
        "meta_bytes": meta_path.stat().st_size,
    }


def _write_reviews(path: Path, rng: np.random.Generator, users: tuple, items: tuple) -> None:
    """One line per review (users/items = (names, index per review)), grouped by asin like the SNAP files,
    with the other fields and a lognormal-length reviewText cut from a word soup (~900 B per line)."""
    (user_names, user), (asins, item) = users, items
    n = len(user)
    day = rng.integers(9_600, 16_250, n)  # 1996-04 .. 2014-07
    order = np.argsort(item, kind="stable")  # the SNAP files are grouped by asin
    text = " ".join(rng.choice(np.array(_WORDS.split()), 2_000_000))
    lengths = np.minimum(rng.lognormal(6.3, 0.8, n).astype(np.int64), 20_000)
    starts = rng.integers(0, len(text) - 20_001, n)
    with path.open("w") as f:
        for lo in range(0, n, 200_000):
            rows = order[lo : lo + 200_000]
            f.writelines(
                f'{{"reviewerID": "{user_names[u]}", "asin": "{asins[i]}", "reviewerName": "Reader {u % 997}", '
                f'"helpful": [{u % 3}, {u % 5}], "reviewText": "{text[s : s + ln]}", "overall": {1 + i % 5}.0, '
                f'"summary": "{text[s : s + 30]}", "unixReviewTime": {d * 86400}, "reviewTime": "01 1, 2000"}}\n'
                for u, i, d, s, ln in zip(
                    user[rows].tolist(),
                    item[rows].tolist(),
                    day[rows].tolist(),
                    starts[rows].tolist(),
                    lengths[rows].tolist(),
                )
            )


def _write_metadata(path: Path, rng: np.random.Generator, asins: list[str]) -> int:
    """Metadata dict literals for every reviewed asin plus unreviewed ones (Books' ratio), with `related`
    lists like the real ones (~1.5 KB per line); every 11th has no categories. Returns the line count."""
    num_items = len(asins)
    meta_items = max(num_items, round(num_items * BOOKS["meta"] / BOOKS["items"]))
    categories = [f"Genre {k}" for k in range(max(2, num_items // 1000))]
    cat_of = rng.integers(0, len(categories), meta_items)
    related = rng.integers(0, num_items, (meta_items, 100))
    with path.open("w") as f:
        for k in range(meta_items):
            asin = asins[k] if k < num_items else f"X{k:09d}"
            quoted = [f"'{asins[j]}'" for j in related[k, : 30 + k % 70]]
            also, viewed, after = ", ".join(quoted), ", ".join(quoted[:15]), ", ".join(quoted[:4])
            cats = "" if k % 11 == 0 else f", 'categories': [['Books', 'Fiction', '{categories[cat_of[k]]}']]"
            f.write(
                f"{{'asin': '{asin}', 'title': \"Book {k}'s title\", 'price': {k % 50}.99, "
                f"'imUrl': 'http://ecx.images-amazon.com/images/I/{asin}.jpg', "
                f"'related': {{'also_bought': [{also}], 'also_viewed': [{viewed}], 'buy_after_viewing': [{after}]}}, "
                f"'salesRank': {{'Books': {k * 7 + 1}}}{cats}}}\n"
            )
    return meta_items


def _tree_rss_bytes(pid: int) -> int:
    """Summed VmRSS of pid and its descendants (Linux /proc), 0 once it has exited."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def run_prepare(raw: Path, out: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "sim.prepare_data",
        "--amazon_dataset_path",
        str(raw),
        "--output_path",
        str(out),
    ]
    cmd += ["--overwrite", "--no_progress", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RunError(f"sim.prepare_data failed (exit status {proc.returncode}):\n{stderr.strip()}")
    stages = re.search(r"stages: (.*)", stderr)
    return {
        "wall_s": wall,
        "cpu_s": (usage.ru_utime - before.ru_utime) + (usage.ru_stime - before.ru_stime),
        "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
        "peak_tree_rss_gb": peak[0] / 1e9,
        "stages": stages.group(1) if stages else "",
        "summary": stderr.strip().splitlines()[-1],
        "out_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }


@dataclass(frozen=True)
class PrepareBenchConfig:
    reviews: int = flag(3_000_000, "reviews to generate")
    seed: int = flag(0, "generator seed")
    workdir: Path | None = flag(None, "where input/output go (None: a temp dir, removed afterwards)")
    keep: bool = flag(False, "keep (and reuse) the generated input; the prepared output is always removed")
    prepare_args: str = flag("", "extra flags for sim.prepare_data, e.g. '--prebatch_train_size 4096'")
    log_path: Path | None = flag(None, "DLLogger JSON log of the run (None: none)")

    def validate(self) -> None:
        if self.reviews < 1:
            raise config.ConfigError(f"--reviews must be >= 1, got {self.reviews}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(PrepareBenchConfig, argv, prog="python -m sim.benchmark_prepare", description=__doc__)
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="sim_bench_"))
    raw, out = workdir / f"amazon_{cfg.reviews}_{cfg.seed}", workdir / "prepared"
    try:
        info = _input(raw, cfg.reviews, cfg.seed)
        result = run_prepare(raw, out, cfg.prepare_args.split())
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not cfg.keep:
            shutil.rmtree(raw, ignore_errors=True)
            if cfg.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    _report(info, result)
    n = info["reviews"]
    summary = {"reviews": n, "wall_s": result["wall_s"], "cpu_s": result["cpu_s"], "reviews_per_s": n / result["wall_s"],
               "peak_rss_gb": result["peak_rss_gb"], "peak_tree_rss_gb": result["peak_tree_rss_gb"]}  # fmt: skip
    return log_run(cfg.log_path, config.to_dict(cfg), summary)


def _input(raw: Path, reviews: int, seed: int) -> dict:
    """The generator's counts: reused from raw/generator.json when a kept input is there, else generated."""
    info_path = raw / "generator.json"
    if info_path.is_file():
        print(f"reusing {raw}", file=sys.stderr)
        return json.loads(info_path.read_text())
    start = time.perf_counter()
    info = generate(raw, reviews, seed)
    info_path.write_text(json.dumps(info))
    print(f"generated {raw} in {time.perf_counter() - start:.0f} s: {info}", file=sys.stderr)
    return info


def _report(info: dict, result: dict) -> None:
    n = info["reviews"]
    print(result["summary"])
    print(f"stages: {result['stages']}")
    print(
        f"{n:,} reviews ({info['review_bytes'] / 1e9:.2f} GB) + {info['meta_lines']:,} metadata lines "
        f"({info['meta_bytes'] / 1e9:.2f} GB) on {os.cpu_count()} cores: {result['wall_s']:.1f} s wall, "
        f"{result['cpu_s']:.1f} s CPU, {n / result['wall_s']:,.0f} reviews/s, peak RSS {result['peak_rss_gb']:.2f} GB "
        f"(process tree {result['peak_tree_rss_gb']:.2f} GB), output {result['out_bytes'] / 1e9:.2f} GB"
    )


if __name__ == "__main__":
    cli.run(main)
