"""DLRM (Naumov et al., 2019) as NVIDIA's reference builds it: bottom MLP, one table per categorical feature,
dot (or cat) interaction, top MLP to one logit (NVIDIA's DLRM layout).

Notation: B = batch, F = categorical features, D = embedding dim, I = interaction output width.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from dlrm.embeddings import gather_rows, lookup, make_table
from dlrm.interactions import make_interaction
from dlrm.mlp import Mlp

# Criteo Terabyte, frequency threshold 15: cardinalities of cat_0..cat_25 (DLE tests/feature_specs/criteo_f15.yaml).
CRITEO_FL15_TABLE_SIZES: tuple[int, ...] = (
    7912889, 33823, 17139, 7339, 20046, 4, 7105, 1382, 63, 5554114, 582469, 245828, 11, 2209, 10667, 104,
    4, 968, 15, 8165896, 2675940, 7156453, 302516, 12022, 97, 35,
)  # fmt: skip


@dataclass(frozen=True)
class DlrmSizes:
    """Everything the constructor needs; stored in checkpoints so a model rebuilds from the file alone.

    table_sizes are the rows actually allocated (after --max_table_size). With hash_indices the model takes
    every id modulo its table's rows (NVIDIA's `--hash_indices`), so ids beyond a clipped
    table are valid input; without it ids must already be in [0, table_sizes[i]).
    """

    num_numerical: int = 13
    table_sizes: tuple[int, ...] = CRITEO_FL15_TABLE_SIZES
    embedding_dim: int = 128
    bottom_mlp_sizes: tuple[int, ...] = (512, 256, 128)
    top_mlp_sizes: tuple[int, ...] = (1024, 1024, 512, 256, 1)
    interaction_op: str = "dot"
    self_interaction: bool = False
    hash_indices: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        return {**d, **{k: list(d[k]) for k in ("table_sizes", "bottom_mlp_sizes", "top_mlp_sizes")}}

    @classmethod
    def from_dict(cls, d: dict) -> DlrmSizes:
        tuples = {
            k: tuple(int(v) for v in d[k])
            for k in ("table_sizes", "bottom_mlp_sizes", "top_mlp_sizes")
            if k in d
        }
        return cls(**{**d, **tuples})

    def validate(self) -> None:
        if not self.bottom_mlp_sizes or self.bottom_mlp_sizes[-1] != self.embedding_dim:
            raise ValueError(
                f"the bottom MLP's last size must equal embedding_dim {self.embedding_dim} (its output is one of "
                f"the interacting vectors), got bottom_mlp_sizes={list(self.bottom_mlp_sizes)}"
            )
        if not self.top_mlp_sizes or self.top_mlp_sizes[-1] != 1:
            raise ValueError(
                f"the top MLP's last size is the logit and must be 1, got {list(self.top_mlp_sizes)}"
            )
        if self.num_numerical <= 0 or not self.table_sizes or min(self.table_sizes) <= 0:
            raise ValueError(
                f"need num_numerical > 0 and positive table sizes, got {self.num_numerical}, {list(self.table_sizes)}"
            )


class DenseArch(nn.Module):
    """Everything after the lookup: forward(numerical [B, num_numerical], embedded [B, F, D]) -> logits [B]
    = top_mlp(interaction(bottom_mlp(numerical), embedded)).squeeze(1).

    The one data-parallel part of DLRM: both training runtimes (replicated tables, dlrm.train; sharded
    tables, dlrm.parallel) wrap exactly this module in DDP, so its gradients are the only ones all-reduced.
    Parts: bottom_mlp [B, 13] -> [B, D] (ReLU on every layer); interaction [B, D], [B, F, D] -> [B, I];
    top_mlp [B, I] -> [B, 1] (ReLU on all but the last layer: the logit).
    """

    def __init__(self, sizes: DlrmSizes) -> None:
        super().__init__()
        self.bottom_mlp = Mlp(sizes.num_numerical, sizes.bottom_mlp_sizes, relu_last=True)
        self.interaction = make_interaction(
            sizes.interaction_op, len(sizes.table_sizes), sizes.embedding_dim, sizes.self_interaction
        )
        self.top_mlp = Mlp(self.interaction.output_width, sizes.top_mlp_sizes, relu_last=False)
        if self.interaction.padding:
            # The padding column's input is always 0, so its weights never get a gradient: start them at 0
            # as the reference does, making the padded model the same function as the unpadded one.
            with torch.no_grad():
                self.top_mlp.linears[0].weight[:, -self.interaction.padding :] = 0.0

    def forward(self, numerical: Tensor, embedded: Tensor) -> Tensor:
        return self.top_mlp(self.interaction(self.bottom_mlp(numerical), embedded)).squeeze(1)


def init_parts(
    sizes: DlrmSizes, sparse: bool, tables: Iterable[int]
) -> tuple[DenseArch, Iterator[tuple[int, nn.Embedding]]]:
    """The initial weights of a DLRM, the only place they are drawn: the DenseArch from the global RNG,
    then one seed drawn from it for the tables, and a lazy iterator of (t, table t) for the requested
    tables, table t from its own generator seeded with that seed + t. `DLRM(sizes)` takes every table; a
    table-sharded rank takes only its own (dlrm.parallel) and gets the same values for them under the
    same torch.manual_seed, without ever allocating another rank's table."""
    sizes.validate()
    dense = DenseArch(sizes)
    seed = int(torch.randint(0, 2**62, ()))

    def build() -> Iterator[tuple[int, nn.Embedding]]:
        for t in tables:
            yield t, make_table(sizes.table_sizes[t], sizes.embedding_dim, sparse, seed + t)

    return dense, build()


# Checkpoints written before the DenseArch existed name its parts at the top level (e.g. "bottom_mlp.0.weight").
_LEGACY_DENSE_PREFIXES = ("bottom_mlp.", "interaction.", "top_mlp.")


def upgrade_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A DLRM state dict with today's keys: an old checkpoint's "bottom_mlp.*" / "interaction.*" /
    "top_mlp.*" become "dense.*"; anything else is returned as it is."""
    return {f"dense.{k}" if k.startswith(_LEGACY_DENSE_PREFIXES) else k: v for k, v in state.items()}


class DLRM(nn.Module):
    """Args:
        sizes: see DlrmSizes.
        sparse: the tables emit sparse COO gradients through autograd (for torch.optim.SGD/SparseAdam).
            dlrm.train's replicated path does not use autograd for the tables at all (see `embed_rows`).

    forward(numerical [B, num_numerical] float, categorical [B, F] int) -> logits [B]
        = dense(numerical, embed(categorical))

    Parts: embeddings: nn.ModuleList of F plain nn.Embedding tables (whole tables, so a sharding wrapper
    can place them on ranks); dense: the DenseArch (bottom MLP, interaction, top MLP). Initial weights come
    from `init_parts`. load_state_dict also takes checkpoints with the pre-DenseArch keys.
    """

    def __init__(self, sizes: DlrmSizes, sparse: bool = True) -> None:
        super().__init__()
        self.sizes = sizes
        self.dense, tables = init_parts(sizes, sparse, range(len(sizes.table_sizes)))
        self.embeddings = nn.ModuleList(table for _, table in tables)
        self.register_buffer(
            "table_rows", torch.tensor(sizes.table_sizes, dtype=torch.int64), persistent=False
        )
        self.register_load_state_dict_pre_hook(_upgrade_keys)

    def indices(self, categorical: Tensor) -> Tensor:
        """[B, F] any int dtype -> [B, F] int64 row ids (modulo the table rows when hash_indices).

        Never in place: the reference's in-place modulo corrupts reused inputs (CUDA-graph static buffers).
        """
        categorical = categorical.long()
        if self.sizes.hash_indices:
            categorical = torch.remainder(categorical, self.table_rows)
        return categorical

    def embed(self, categorical: Tensor) -> Tensor:
        """[B, F] int -> [B, F, D], through autograd (sparse or dense table gradients)."""
        return lookup(self.embeddings, self.indices(categorical))

    def embed_rows(self, indices: Tensor) -> Tensor:
        """[B, F] int64 from `indices` -> [B, F, D] detached; for a training step that updates the touched
        rows itself (dlrm.embeddings.sgd_rows_) instead of building sparse gradients."""
        return gather_rows(self.embeddings, indices)

    def forward(self, numerical: Tensor, categorical: Tensor) -> Tensor:
        return self.dense(numerical, self.embed(categorical))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _upgrade_keys(module: nn.Module, state: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: rename pre-DenseArch keys in place (load_state_dict passes its own copy)."""
    for key in [
        k for k in state if k.startswith(prefix) and k[len(prefix) :].startswith(_LEGACY_DENSE_PREFIXES)
    ]:
        state[f"{prefix}dense.{key[len(prefix) :]}"] = state.pop(key)
