"""SIM, DIN and DIEN: one batch type, one output type and one factory, shared by the three models.

Notation in every model file: B = batch, T = history length (L, left-padded, newest at T-1),
S = short history length (T - long_seq_length), K = GSU top-k, F = item features per item (item id,
category, ...; feature k of the target and of both histories shares embedding table k), U = user
features, D = embedding dim, E = F*D (one item's vector), H = DIEN hidden size (6*D, as the reference).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

MODEL_TYPES = ("sim", "din", "dien")
AUGRU_VARIANTS = ("paper", "nvidia_tf1")
DIN_ATTENTIONS = ("mlp", "dot")


@dataclass
class SimBatch:
    """One batch, feature names already resolved (sim.data builds it); ids are int32 or int64.

    user: [B, U]; target: [B, F]; history: [B, T, F] positive behaviours, left-padded with id 0;
    neg_history: [B, S', F] sampled negatives aligned with the NEWEST S' history positions, or None
    (no auxiliary loss: DIN, or inference); label: [B] float32 0/1.
    """

    user: Tensor
    target: Tensor
    history: Tensor
    neg_history: Tensor | None
    label: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SimBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return SimBatch(*(move(getattr(self, f.name)) for f in dataclasses.fields(self)))


@dataclass
class SimOutput:
    """logits: [B] fp32, the prediction (SIM: the stage-two head).
    aux_loss: DIEN auxiliary loss, the mean over valid (h_t, e_t+1) pairs (scalar), or None.
    aux_pairs: how many pairs that mean covers (scalar), so evaluation can weight batches exactly.
    stage_one_logits: [B] SIM's GSU head, trained with its own BCE but never used for the prediction.
    """

    logits: Tensor
    aux_loss: Tensor | None = None
    aux_pairs: Tensor | None = None
    stage_one_logits: Tensor | None = None


@dataclass(frozen=True)
class SimSizes:
    """Everything a model constructor needs; stored in checkpoints as `hyperparams`.

    Cardinalities are counts of ids 1..card (0 = padding), so every table has card + 1 rows.
    """

    model_type: str
    user_cardinalities: tuple[int, ...]
    item_cardinalities: tuple[int, ...]
    embedding_dim: int = 16
    long_seq_length: int = 90
    gsu_topk: int = 50
    stage_one_mlp_dims: tuple[int, ...] = (200,)
    stage_two_mlp_dims: tuple[int, ...] = (200, 80)
    aux_mlp_dims: tuple[int, ...] = (100, 50)
    dropout_rate: float = 0.0
    augru_variant: str = "paper"
    din_attention: str = "mlp"

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.augru_variant not in AUGRU_VARIANTS:
            raise ValueError(f"augru_variant must be one of {AUGRU_VARIANTS}, got {self.augru_variant!r}")
        if self.din_attention not in DIN_ATTENTIONS:
            raise ValueError(f"din_attention must be one of {DIN_ATTENTIONS}, got {self.din_attention!r}")
        if not self.item_cardinalities:
            raise ValueError("at least one item feature (the item id) is needed")

    @property
    def item_width(self) -> int:
        """E: an item's embedding width (D per item feature, features concatenated)."""
        return self.embedding_dim * len(self.item_cardinalities)

    @property
    def user_width(self) -> int:
        """U*D: the user's embedding width."""
        return self.embedding_dim * len(self.user_cardinalities)

    @property
    def uses_negatives(self) -> bool:
        """DIEN and SIM split the history at long_seq_length; their auxiliary loss reads the negative
        history of the short (newest) part. DIN uses the whole positive history and no negatives."""
        return self.model_type != "din"

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimSizes:
        """Checkpoints written before din_attention existed hold a dot-attention DIN: they load as "dot"."""
        d = {"din_attention": "dot", **d}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def embedding_tables(sizes: SimSizes, sparse: bool) -> tuple[nn.Module, nn.Module]:
    """(user table, item table) every model starts with; created in this order, so the same seed gives
    the same initial weights (and optimizer states follow the same parameter order) as before."""
    from sim.layers import FeatureEmbedding

    user = FeatureEmbedding(sizes.user_cardinalities, sizes.embedding_dim, sparse)
    return user, FeatureEmbedding(sizes.item_cardinalities, sizes.embedding_dim, sparse)


def build_model(sizes: SimSizes, sparse_embeddings: bool = False) -> nn.Module:
    """The model for sizes.model_type; sparse_embeddings gives the tables sparse gradients (lazy Adam)."""
    from sim.models.dien import DIEN
    from sim.models.din import DIN
    from sim.models.sim import SIM

    cls = {"din": DIN, "dien": DIEN, "sim": SIM}[sizes.model_type]
    return cls(sizes, sparse_embeddings=sparse_embeddings)
