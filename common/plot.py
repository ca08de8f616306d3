"""Draw loss, quality-metric and throughput curves from one or more DLLogger logs into a PNG.

  python -m common.plot runs/ncf/log.json runs/ncf_amp/log.json --out curves.png

Per-step records ([epoch] or [epoch, iteration]) become points; x is the record index within its log's
epoch records (epoch when the step is [epoch], epoch + iteration/steps otherwise).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common import cli, config
from common.config import flag
from common.errors import InputError
from common.logging import read_log

PANELS = (
    ("loss", lambda k: "loss" in k),
    ("quality", lambda k: k.startswith(("hr@", "ndcg@", "auc")) or k in ("accuracy",)),
    ("throughput (samples/s)", lambda k: k.endswith("throughput")),
)


def series(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """metric -> (x, y) from the per-step LOG records of one log."""
    try:
        log = read_log(path)
    except ValueError as e:  # a line that is not a DLLL record: the message names the file and line
        raise InputError(str(e)) from None
    records = [r for r in log if r.get("type") == "LOG" and isinstance(r.get("step"), list) and r["step"]]
    if not records:
        raise InputError(f"{path}: no per-step DLLL records (is it a DLLogger JSON log?)")
    max_iter = max((r["step"][1] for r in records if len(r["step"]) > 1), default=0) + 1
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in records:
        step = r["step"]
        x = step[0] + (step[1] / max_iter if len(step) > 1 else 0.0)
        for key, value in r["data"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                xs, ys = out.setdefault(key, ([], []))
                xs.append(x)
                ys.append(float(value))
    return out


def plot(paths: list[Path], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    data = {p: series(p) for p in paths}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.5), squeeze=False)
    for ax, (title, wanted) in zip(axes[0], PANELS):
        drawn = 0
        for p, metrics in data.items():
            for key, (xs, ys) in sorted(metrics.items()):
                if wanted(key):
                    label = key if len(paths) == 1 else f"{p.parent.name or p.name}:{key}"
                    ax.plot(xs, ys, marker="o", markersize=3, label=label)
                    drawn += 1
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@dataclass(frozen=True)
class PlotConfig:
    """python -m common.plot's arguments."""

    logs: list[Path] = flag([], "DLLogger JSON log files (DLLL lines)", positional=True)
    out: Path = flag(Path("curves.png"), "PNG to write")


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(PlotConfig, argv, prog="python -m common.plot", description=__doc__)
    for p in cfg.logs:
        if not p.is_file():
            raise InputError(f"log file {p} does not exist")
    out = plot(cfg.logs, cfg.out)
    print(f"wrote {out} from {len(cfg.logs)} log(s)", file=sys.stderr)
    return {"logs": float(len(cfg.logs))}


if __name__ == "__main__":
    cli.run(main)
