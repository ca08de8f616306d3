"""NeuMF for INT8 inference: the split final layer (float) and the statically quantized model (int8).

Notation: B = batch, F = mf_dim, M = mlp_layers[0] // 2, L = mlp_layers[-1], U/I = users/items.

Quantization scheme (IntelLabs Distiller's asym_u PTQ, examples/ncf; per-row tables):
- embedding tables are STORED as int8 with an fp32 scale and offset per row and per logical table (the
  GMF and MLP halves of the fused table each get their own, like the reference's four tables); a lookup
  gathers 1 byte per value (error <= scale / 2);
- activations entering a Linear are uint8 with an asymmetric per-tensor (scale, zero point) whose range
  comes from calibration; weights are symmetric int8, per tensor or per output channel;
- every Linear is an int8 x int8 GEMM with int32 accumulation; hidden layers apply bias and ReLU and
  requantize straight to the next layer's uint8 grid (no fp32 activation in between); the final layer(s)
  output fp32 logits (a 256-level logit would create ties in the top-10 ranking);
- fp32 remains for: mapping gathered rows (GMF half dequantized, MLP half onto the first layer's uint8
  grid), the GMF product, and the add of the two split final layers.

Kernels: where it is exact (x86 CPUs with VNNI; checked once per process), the fused int8 GEMM + bias +
ReLU + requantize kernel `torch.ops.onednn.qlinear_pointwise` (what PT2E / torchao's X86InductorQuantizer
graphs lower to under torch.compile), weights prepacked once. Elsewhere, with `reference=True` and under
`--kernels reference` (common.kernels), the same math in plain ops: `torch._int_mm` on CPU, an exact fp32
emulation of the int8 GEMM on other devices. The paths are tested to agree.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from common.kernels import fast
from ncf.model import NeuMF, NeuMFSizes

QMAX = 255  # activations: uint8 [0, 255]


class SplitFinal(nn.Module):
    """Linear(F + L -> 1) on concat(GMF, MLP) as two layers whose outputs add (Distiller's NeuMF split).

    forward(x [B, F + L]) -> [B, 1]; the same function as the original layer up to float summation order,
    and each branch can get its own activation range when quantized.
    """

    def __init__(self, mf_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.mf_dim = mf_dim
        self.final_gmf = nn.Linear(mf_dim, 1)
        self.final_mlp = nn.Linear(mlp_dim, 1)

    @classmethod
    def from_linear(cls, final: nn.Linear, mf_dim: int) -> SplitFinal:
        """GMF columns first (the concat order); the bias is split 50/50 (halving is exact in binary)."""
        split = cls(mf_dim, final.in_features - mf_dim).to(final.weight.device)
        with torch.no_grad():
            split.final_gmf.weight.copy_(final.weight[:, :mf_dim])
            split.final_mlp.weight.copy_(final.weight[:, mf_dim:])
            split.final_gmf.bias.copy_(final.bias / 2)
            split.final_mlp.bias.copy_(final.bias / 2)
        return split

    def forward(self, x: Tensor) -> Tensor:
        return self.final_gmf(x[:, : self.mf_dim]) + self.final_mlp(x[:, self.mf_dim :])


def split_final(model: NeuMF) -> NeuMF:
    """Replace `model.final` by a SplitFinal in place (any NeuMF checkpoint converts at load time)."""
    if not isinstance(model.final, SplitFinal):
        model.final = SplitFinal.from_linear(model.final, model.mf_dim)
    return model


def activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric uint8 (scale, zero point) covering [min(lo, 0), max(hi, 0)]; 0 is exactly representable.

    x ~ scale * (q - zero_point), q in [0, 255].
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / QMAX if hi > lo else 1.0
    return scale, int(min(max(round(-lo / scale), 0), QMAX))


def quantize_activation(x: Tensor, scale: float, zero_point: int) -> Tensor:
    """uint8 round-half-up(x / scale) + zero_point, clamped: 3 passes (the cast floors values >= 0)."""
    return torch.add(x, zero_point * scale + scale / 2).div_(scale).clamp_(0, QMAX).to(torch.uint8)


def quantize_weight(weight: Tensor, per_channel: bool) -> tuple[Tensor, Tensor]:
    """Symmetric int8 [-127, 127]: weight [N, K] -> (q [N, K] int8, scale [N] fp32, repeated if per tensor)."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1) if per_channel else w.abs().amax().expand(len(w))
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def quantize_rows(table: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row asymmetric int8: table [R, D] -> (q [R, D] int8, scale [R], offset [R]).

    row ~ scale * q + offset with q in [-128, 127] and offset = row_min + 128 * scale; the error is at most
    scale / 2 = (row_max - row_min) / 510.
    """
    table = table.detach().float()
    lo, hi = table.amin(dim=1), table.amax(dim=1)
    scale = torch.where(hi > lo, (hi - lo) / QMAX, torch.ones_like(lo))
    q = torch.round((table - lo[:, None]) / scale[:, None]).clamp(0, QMAX) - 128
    return q.to(torch.int8), scale, lo + 128 * scale


def int_mm(a: Tensor, b: Tensor) -> Tensor:
    """int8 [B, K] @ int8 [K, N] -> int32 [B, N]: torch._int_mm on CPU; on other devices (CUDA's _int_mm
    needs B > 16 and K, N multiples of 8) the exact fp32 emulation."""
    return torch._int_mm(a, b) if a.device.type == "cpu" else int_mm_fp32(a, b)


def int_mm_fp32(a: Tensor, b: Tensor) -> Tensor:
    """The int8 GEMM in fp32, exact: every partial sum is an integer below 2^24 when K <= 1032."""
    if a.shape[1] > 1032:
        raise ValueError(f"exact fp32 emulation of an int8 GEMM needs K <= 1032, got {a.shape[1]}")
    return (a.float() @ b.float()).to(torch.int32)


def onednn_available(device: torch.device) -> bool:
    """Whether QuantLinear may use the fused oneDNN int8 kernel on `device` (CPU builds with mkldnn)."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and _onednn_works()


@functools.lru_cache(maxsize=1)
def _onednn_works() -> bool:
    """One small fused GEMM checked against exact integer math: catches a missing op or changed schema,
    and CPUs without VNNI, where uint8 x int8 pair products saturate int16 (these take the reference path)."""
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(200, 256, (4, 64), dtype=torch.uint8, generator=g)
        w = torch.randint(100, 128, (8, 64), dtype=torch.int8, generator=g)
        packed = torch.ops.onednn.qlinear_prepack(w, None)
        y = torch.ops.onednn.qlinear_pointwise(
            x, 1.0, 0, packed, torch.ones(8), torch.zeros(8, dtype=torch.int64), None, 1.0, 0, torch.float32,
            "none", [], "",
        )  # fmt: skip
        return torch.equal(y, (x.double() @ w.double().t()).float())  # sums < 2^24: exact in fp32
    except (AttributeError, RuntimeError, TypeError):
        return False


class QuantLinear(nn.Module):
    """Static INT8 Linear. forward(xq [B, K] uint8 on the input grid) -> relu(y) requantized to uint8 on
    the output grid (hidden layers), or y [B, N] fp32 (final layers); y = x @ W^T + b."""

    def __init__(self, in_features: int, out_features: int, uint8_output: bool) -> None:
        super().__init__()
        self.uint8_output = uint8_output
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features))
        # [input scale, input zero point, output scale, output zero point]; zero points are integers
        self.register_buffer("qparams", torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
        self._packed: tuple | None = None

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        grid_in: tuple[float, int],
        grid_out: tuple[float, int] | None,
        per_channel: bool,
    ) -> QuantLinear:
        m = cls(linear.in_features, linear.out_features, uint8_output=grid_out is not None)
        m.weight, m.weight_scale = quantize_weight(linear.weight, per_channel)
        m.bias.copy_(linear.bias.detach())
        m.qparams = torch.tensor([*grid_in, *(grid_out or (1.0, 0))], dtype=torch.float64)
        return m

    def __getstate__(self) -> dict:
        return {
            **self.__dict__,
            "_packed": None,
        }  # the prepacked weight is an opaque cache (deepcopy, pickle)

    def forward(self, xq: Tensor, reference: bool = False) -> Tensor:
        s_in, z_in, s_out, z_out = self.qparams.tolist()
        if not reference and fast() and onednn_available(xq.device):
            key = (self.weight.data_ptr(), self.weight._version)
            if self._packed is None or self._packed[0] != key:  # prepack once per weight version
                zeros = torch.zeros(len(self.weight), dtype=torch.int64)
                self._packed = (key, torch.ops.onednn.qlinear_prepack(self.weight, None), zeros)
            out = (
                (torch.uint8, s_out, int(z_out), "relu")
                if self.uint8_output
                else (torch.float32, 1.0, 0, "none")
            )
            return torch.ops.onednn.qlinear_pointwise(
                xq, s_in, int(z_in), self._packed[1], self.weight_scale, self._packed[2], self.bias,
                out[1], out[2], out[0], out[3], [], "",
            )  # fmt: skip
        # x = s_in * (xq - z_in): shift to int8 for torch._int_mm, correct with the weight row sums
        acc = int_mm((xq.to(torch.int16) - 128).to(torch.int8), self.weight.t())
        acc -= (int(z_in) - 128) * self.weight.to(torch.int32).sum(dim=1)
        y = torch.addcmul(self.bias, acc.float(), s_in * self.weight_scale)
        return quantize_activation(torch.relu(y), s_out, int(z_out)) if self.uint8_output else y


class QuantizedNeuMF(nn.Module):
    """INT8 NeuMF. forward(user [B] int, item [B] int) -> logits [B] fp32, like NeuMF.

    Built empty from (sizes, split_final) so a saved state dict reloads; filled by `from_float`.
    `reference=True` runs the plain-op path instead of the fused oneDNN kernels (tests compare the two).
    """

    def __init__(self, sizes: NeuMFSizes, split_final: bool) -> None:
        super().__init__()
        layers = list(sizes.mlp_layers)
        self.sizes, self.mf_dim, self.split, self.reference = sizes, sizes.mf_dim, split_final, False
        width = sizes.mf_dim + layers[0] // 2
        for side, rows in (("user", sizes.num_users), ("item", sizes.num_items)):
            self.register_buffer(f"{side}_table", torch.zeros(rows, width, dtype=torch.int8))
            # per row: [GMF scale, GMF offset, MLP scale / s, MLP offset / s + z + 1/2] with (s, z) the first
            # MLP layer's input grid, so a gathered MLP row maps onto that uint8 grid in one multiply-add
            self.register_buffer(f"{side}_row_qparams", torch.zeros(rows, 4))
        self.register_buffer("gmf_qparams", torch.tensor([1.0, 0.0], dtype=torch.float64))
        self.mlp = nn.ModuleList(QuantLinear(a, b, True) for a, b in zip(layers[:-1], layers[1:]))
        if split_final:
            self.final_gmf, self.final_mlp = (
                QuantLinear(sizes.mf_dim, 1, False),
                QuantLinear(layers[-1], 1, False),
            )
        else:
            self.final = QuantLinear(sizes.mf_dim + layers[-1], 1, False)

    @classmethod
    def from_float(cls, model: NeuMF, ranges: dict, split_final: bool, per_channel: bool) -> QuantizedNeuMF:
        """ranges (calibrated min, max): "mlp.{i}" = input of model.mlp[i] ("mlp.0": the embedding concat),
        "gmf" / "mlp_out" = the GMF and MLP halves of the final layer's input."""
        q = cls(model.sizes, split_final)
        joint = (min(ranges["gmf"][0], ranges["mlp_out"][0]), max(ranges["gmf"][1], ranges["mlp_out"][1]))
        # one grid for the whole concat without the split: the narrower branch loses resolution
        gmf_grid = activation_qparams(*(ranges["gmf"] if split_final else joint))
        mlp_grid = activation_qparams(*(ranges["mlp_out"] if split_final else joint))
        grids = [activation_qparams(*ranges[f"mlp.{i}"]) for i in range(len(model.mlp))] + [mlp_grid]
        q.gmf_qparams = torch.tensor(gmf_grid, dtype=torch.float64)
        s, z = grids[0]
        for side, emb in (("user", model.user_embedding), ("item", model.item_embedding)):
            gmf, mlp = (quantize_rows(cols) for cols in emb.weight.split(model.split_sizes, dim=1))
            getattr(q, f"{side}_table").copy_(torch.cat([gmf[0], mlp[0]], dim=1))
            row_qparams = [gmf[1], gmf[2], mlp[1] / s, mlp[2] / s + (z + 0.5)]
            getattr(q, f"{side}_row_qparams").copy_(torch.stack(row_qparams, dim=1))
        for i, layer in enumerate(model.mlp):
            q.mlp[i] = QuantLinear.from_float(layer, grids[i], grids[i + 1], per_channel)
        final = (
            model.final
            if isinstance(model.final, SplitFinal)
            else SplitFinal.from_linear(model.final, q.mf_dim)
        )
        if split_final:
            q.final_gmf = QuantLinear.from_float(final.final_gmf, gmf_grid, None, per_channel)
            q.final_mlp = QuantLinear.from_float(final.final_mlp, mlp_grid, None, per_channel)
        else:
            whole = nn.Linear(final.final_gmf.in_features + final.final_mlp.in_features, 1)
            with torch.no_grad():
                whole.weight.copy_(torch.cat([final.final_gmf.weight, final.final_mlp.weight], dim=1))
                whole.bias.copy_(final.final_gmf.bias + final.final_mlp.bias)
            q.final = QuantLinear.from_float(whole, gmf_grid, None, per_channel)
        return q

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        f, ref = self.mf_dim, self.reference
        u, i = self.user_table[user], self.item_table[item]  # [B, F + M] int8
        up, ip = self.user_row_qparams[user], self.item_row_qparams[item]  # [B, 4]
        gmf = torch.addcmul(up[:, 1:2], u[:, :f], up[:, 0:1]) * torch.addcmul(
            ip[:, 1:2], i[:, :f], ip[:, 0:1]
        )
        # MLP rows onto the first layer's uint8 grid: x / s + z + 1/2 = q * row_qparams[2] + row_qparams[3],
        # written into one buffer (no fp32 concat), then clamped and floored by the cast
        half = u.shape[1] - f
        x = torch.empty(len(u), 2 * half, device=u.device)
        torch.addcmul(up[:, 3:4], u[:, f:], up[:, 2:3], out=x[:, :half])
        torch.addcmul(ip[:, 3:4], i[:, f:], ip[:, 2:3], out=x[:, half:])
        x = x.clamp_(0, QMAX).to(torch.uint8)  # [B, 2M]
        for layer in self.mlp:
            x = layer(x, reference=ref)  # uint8 -> uint8: int8 GEMM, bias, ReLU, requantize
        g = quantize_activation(gmf, *self._grid(self.gmf_qparams))  # [B, F] uint8
        if self.split:
            return (self.final_gmf(g, reference=ref) + self.final_mlp(x, reference=ref)).squeeze(1)
        return self.final(torch.cat([g, x], dim=1), reference=ref).squeeze(1)

    @staticmethod
    def _grid(qparams: Tensor) -> tuple[float, int]:
        scale, zero_point = qparams.tolist()
        return scale, int(zero_point)
