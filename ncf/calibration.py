"""Calibration of NeuMF's activation ranges for ncf.quantize: which test series, the observed (min, max) of
every activation that gets an 8-bit range, and the report of how many levels the GMF branch gets."""

from __future__ import annotations

import torch

from ncf.model import NeuMF
from ncf.quantized_model import SplitFinal, activation_qparams


def calibration_series(series: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded random choice of round(fraction * series) (at least 1) test series."""
    count = max(1, round(fraction * series))
    return torch.randperm(series, generator=torch.Generator().manual_seed(seed))[:count].sort().values


@torch.no_grad()
def calibrate(model: NeuMF, users: torch.Tensor, items: torch.Tensor, chunk_rows: int) -> dict:
    """Observed (min, max) of every activation that gets an 8-bit range, over the given candidate rows.

    Keys: "mlp.{i}" = input of model.mlp[i] ("mlp.0": the embedding concat); "gmf" / "mlp_out" = the GMF
    and MLP halves of the final layer's input; "final_gmf_out" / "final_mlp_out" = the split layers'
    outputs (reported only: the INT8 model adds them in fp32).
    """
    split = (
        model.final
        if isinstance(model.final, SplitFinal)
        else SplitFinal.from_linear(model.final, model.mf_dim)
    )
    ranges: dict[str, tuple[float, float]] = {}

    def observe(name: str, t: torch.Tensor) -> None:
        lo, hi = float(t.min()), float(t.max())
        old = ranges.get(name, (lo, hi))
        ranges[name] = (min(old[0], lo), max(old[1], hi))

    def final_input(_module, args) -> None:
        x = args[0]
        gmf, mlp = x[:, : model.mf_dim], x[:, model.mf_dim :]
        for name, t in (("gmf", gmf), ("mlp_out", mlp), ("final_gmf_out", split.final_gmf(gmf)),
                        ("final_mlp_out", split.final_mlp(mlp))):  # fmt: skip
            observe(name, t)

    hooks = [model.final.register_forward_pre_hook(final_input)]
    for i in range(len(model.mlp)):
        hooks.append(model.mlp[i].register_forward_pre_hook(lambda _m, a, i=i: observe(f"mlp.{i}", a[0])))
    try:
        u, it = users.reshape(-1), items.reshape(-1)
        for start in range(0, u.numel(), chunk_rows):
            model(u[start : start + chunk_rows], it[start : start + chunk_rows])
    finally:
        for h in hooks:
            h.remove()
    return ranges


def range_report(ranges: dict) -> dict[str, float]:
    """All ranges, and how many of the 256 activation levels the GMF branch spans without the split (one
    range for concat(GMF, MLP); the reference: ~10 at ml-20m) and with it (its own range: 255)."""
    out = {f"range_{key}_{end}": v for key, pair in ranges.items() for end, v in zip(("min", "max"), pair)}
    span = ranges["gmf"][1] - ranges["gmf"][0]
    joint = (min(ranges["gmf"][0], ranges["mlp_out"][0]), max(ranges["gmf"][1], ranges["mlp_out"][1]))
    out["gmf_levels_no_split"] = span / activation_qparams(*joint)[0]
    out["gmf_levels_split"] = span / activation_qparams(*ranges["gmf"])[0]
    return out
