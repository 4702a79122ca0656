"""The two-tower model (DESIGN §3): feature embeddings → MLP tower → L2-normalized vector.

Speed comes from layout, not tricks: all sparse features of an entity live in ONE embedding table
(each feature owns a block of rows; row 0 is the shared padding row), and a batch is ONE
`(N, S)` id tensor — the features' padded id columns side by side, already offset into the table.
One `embedding_bag` call (mean over non-pad values, sparse gradient) embeds every feature of every
row; masked or missing features are then swapped for their learned default embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslkit.schema import FeatureSpec
from sslkit.store import EntityTable


@dataclass(frozen=True)
class Layout:
    """Where each sparse feature sits in the fused id tensor and the fused table."""

    names: tuple[str, ...]  # sparse features, in spec order
    dense: tuple[str, ...]  # dense numeric features
    lengths: tuple[int, ...]  # max_len per sparse feature
    table_offsets: tuple[int, ...]  # first table row of each feature (value id v -> offset + v - 1)
    table_rows: int

    @classmethod
    def from_specs(cls, specs: dict[str, FeatureSpec]) -> "Layout":
        sparse = [s for s in specs.values() if not s.dense]
        offsets, row = [], 1  # row 0 = shared padding row
        for s in sparse:
            offsets.append(row)
            row += s.num_embeddings - 1  # ids 1.. (OOV, values, hash buckets); id 0 = pad
        return cls(names=tuple(s.name for s in sparse), dense=tuple(s.name for s in specs.values() if s.dense),
                   lengths=tuple(s.max_len for s in sparse), table_offsets=tuple(offsets), table_rows=row)

    @property
    def num_features(self) -> int:
        return len(self.names)

    @property
    def width(self) -> int:
        return sum(self.lengths)

    def starts(self) -> list[int]:
        return list(np.cumsum([0, *self.lengths[:-1]]))

    def multi_columns(self) -> Tensor:
        """Bool (S,): columns of multi-valued features (targets of value dropout)."""
        return torch.tensor([length > 1 for length in self.lengths for _ in range(length)], dtype=torch.bool)

    def column_feature(self) -> Tensor:
        """Long (S,): the feature index of each column."""
        return torch.tensor([f for f, length in enumerate(self.lengths) for _ in range(length)])


@dataclass
class FusedTable:
    """An entity's features as tensors in the fused layout (kept on the training device)."""

    ids: Tensor  # long (rows, S), offset into the fused table, 0 = pad
    dense: Tensor  # float (rows, n_dense)

    def gather(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        return self.ids.index_select(0, rows), self.dense.index_select(0, rows)

    def to(self, device: torch.device) -> "FusedTable":
        return FusedTable(ids=self.ids.to(device), dense=self.dense.to(device))


def fuse(table: EntityTable, layout: Layout) -> FusedTable:
    """Encoded store arrays → one fused id tensor (+ dense floats)."""
    cols = []
    for name, offset in zip(layout.names, layout.table_offsets):
        ids = torch.from_numpy(np.asarray(table.features[name], dtype=np.int64))
        cols.append(torch.where(ids > 0, ids + (offset - 1), 0))
    ids = torch.cat(cols, 1) if cols else torch.zeros((table.rows, 0), dtype=torch.long)
    dense = [torch.from_numpy(np.array(table.features[n], dtype=np.float32)) for n in layout.dense]
    return FusedTable(ids=ids.contiguous(),
                      dense=torch.cat(dense, 1) if dense else torch.zeros((table.rows, 0)))


class FeatureEmbedding(nn.Module):
    """All sparse features of an entity: fused table + per-feature default embeddings."""

    def __init__(self, layout: Layout, dim: int, *, sparse: bool = True) -> None:
        super().__init__()
        self.layout, self.dim = layout, dim
        self.table = nn.Embedding(layout.table_rows, dim, padding_idx=0, sparse=sparse)
        self.default = nn.Parameter(torch.empty(layout.num_features, dim))
        nn.init.normal_(self.table.weight, std=0.1)
        nn.init.normal_(self.default, std=0.1)
        with torch.no_grad():
            self.table.weight[0].zero_()
        starts = torch.tensor(layout.starts(), dtype=torch.long)
        self.register_buffer("starts", starts, persistent=False)
        onehot = torch.zeros(layout.width, layout.num_features)
        onehot[torch.arange(layout.width), layout.column_feature()] = 1.0
        self.register_buffer("col_to_feature", onehot, persistent=False)  # (S, F)

    def present(self, ids: Tensor) -> Tensor:
        """Bool (N, F): the feature has at least one value in the row."""
        return ((ids != 0).to(self.col_to_feature.dtype) @ self.col_to_feature) > 0

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Embed every feature: ids long (N, S), mask bool (N, F) (True → default) → (N, F·D)."""
        n, width = ids.shape
        f = self.layout.num_features
        offsets = (torch.arange(n, device=ids.device) * width).unsqueeze(1) + self.starts  # (N, F)
        bags = F.embedding_bag(ids.reshape(-1), self.table.weight, offsets.reshape(-1), mode="mean",
                               sparse=self.table.sparse, padding_idx=0)  # (N·F, D)
        use_default = ~self.present(ids)
        if mask is not None:
            use_default = use_default | mask
        emb = torch.where(use_default.unsqueeze(-1), self.default, bags.view(n, f, self.dim))
        return emb.reshape(n, f * self.dim)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TwoTower(nn.Module):
    """Query tower and item tower; item-to-item mode may share the embedding tables."""

    def __init__(self, *, item_layout: Layout, query_layout: Layout | None, dim: int, hidden: list[int],
                 share_embeddings: bool = True, sparse: bool = True) -> None:
        super().__init__()
        self.item_embedding = FeatureEmbedding(item_layout, dim, sparse=sparse)
        if query_layout is None and share_embeddings:
            self.query_embedding = self.item_embedding
        else:
            self.query_embedding = FeatureEmbedding(query_layout or item_layout, dim, sparse=sparse)
        self.shared = self.query_embedding is self.item_embedding
        q_in = self.query_embedding.layout.num_features * dim + len(self.query_embedding.layout.dense)
        i_in = item_layout.num_features * dim + len(item_layout.dense)
        self.query_mlp, self.item_mlp = mlp([q_in, *hidden]), mlp([i_in, *hidden])

    @property
    def output_dim(self) -> int:
        return int(self.item_mlp[-1].out_features)  # type: ignore[union-attr]

    def item_vectors(self, ids: Tensor, dense: Tensor, mask: Tensor | None = None) -> Tensor:
        """(N, S), (N, n_dense), (N, F) → L2-normalized (N, d)."""
        x = self.item_embedding(ids, mask)
        return F.normalize(self.item_mlp(torch.cat([x, dense], 1) if dense.shape[1] else x), dim=-1)

    def query_vectors(self, ids: Tensor, dense: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.query_embedding(ids, mask)
        return F.normalize(self.query_mlp(torch.cat([x, dense], 1) if dense.shape[1] else x), dim=-1)

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [m.table.weight for m in {id(m): m for m in (self.item_embedding, self.query_embedding)}.values()]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]


@torch.inference_mode()
def embed_all(model: TwoTower, table: FusedTable, *, queries: bool = False, batch_size: int = 8192) -> Tensor:
    """Vectors for every row of a fused table, in row order: float (rows, d)."""
    fn = model.query_vectors if queries else model.item_vectors
    out = []
    for start in range(0, table.ids.shape[0], batch_size):
        out.append(fn(table.ids[start:start + batch_size], table.dense[start:start + batch_size]))
    return torch.cat(out) if out else torch.zeros((0, model.output_dim))
