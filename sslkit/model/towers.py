"""The two-tower model (DESIGN §3): feature embeddings → MLP tower → L2-normalized vector.

Speed comes from layout, not tricks: all sparse features of an entity live in ONE embedding table
(each feature owns a block of rows; row 0 is the shared padding row; the last F rows are the
features' learned default embeddings), and a batch is ONE `(N, S)` id tensor — the features' padded
id columns side by side, already offset into the table. A feature that is masked or missing is
written as the bag ``[default row, pad, …]``, so one `embedding_bag` call (mean over non-pad values,
sparse gradient) embeds every feature of every row, defaults included, with no per-element select.
`fuse` writes missing features that way once; masks are applied to the ids (`augment.with_defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslkit.model.augment import FusedColumns
from sslkit.data.schema import FeatureSpec
from sslkit.data.store import EntityTable


@dataclass(frozen=True)
class Layout:
    """Where each sparse feature sits in the fused id tensor and the fused table."""

    names: tuple[str, ...]  # sparse features, in spec order
    dense: tuple[str, ...]  # dense numeric features
    lengths: tuple[int, ...]  # max_len per sparse feature
    table_offsets: tuple[int, ...]  # first table row of each feature (value id v -> offset + v - 1)
    table_rows: int  # padding row + value rows; the F default rows follow them

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

    @property
    def default_ids(self) -> tuple[int, ...]:
        """The table row of each feature's default embedding."""
        return tuple(range(self.table_rows, self.table_rows + self.num_features))

    def columns(self, device: torch.device | None = None) -> FusedColumns:
        """Column maps of the fused id tensor, for masking and value dropout (`sslkit.model.augment`)."""
        return FusedColumns.build(self.lengths, self.default_ids, device)


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
    """Encoded store arrays → one fused id tensor (+ dense floats); missing features → [default, 0, …]."""
    cols = []
    for name, offset, default in zip(layout.names, layout.table_offsets, layout.default_ids):
        ids = torch.from_numpy(np.asarray(table.features[name], dtype=np.int64))
        col = torch.where(ids > 0, ids + (offset - 1), 0)
        col[:, 0] = torch.where((ids > 0).any(1), col[:, 0], default)
        cols.append(col)
    ids = torch.cat(cols, 1) if cols else torch.zeros((table.rows, 0), dtype=torch.long)
    dense = [torch.from_numpy(np.array(table.features[n], dtype=np.float32)) for n in layout.dense]
    return FusedTable(ids=ids.contiguous(),
                      dense=torch.cat(dense, 1) if dense else torch.zeros((table.rows, 0)))


class FeatureEmbedding(nn.Module):
    """All sparse features of an entity: one fused table, value rows then per-feature default rows.

    The state dict keeps the value rows (``table.weight``) and the defaults (``default``) apart, as
    separate tensors, so checkpoints do not depend on where the defaults are stored.
    """

    def __init__(self, layout: Layout, dim: int, *, sparse: bool = True) -> None:
        super().__init__()
        self.layout, self.dim = layout, dim
        self.table = nn.Embedding(layout.table_rows + layout.num_features, dim, padding_idx=0, sparse=sparse)
        nn.init.normal_(self.table.weight, std=0.1)
        with torch.no_grad():
            self.table.weight[0].zero_()
        columns = layout.columns()
        self.register_buffer("starts", torch.tensor(layout.starts(), dtype=torch.long), persistent=False)
        self.register_buffer("column_feature", columns.feature, persistent=False)  # (S,)
        self.register_buffer("default_columns", columns.default_ids, persistent=False)  # (S,)
        self.register_state_dict_post_hook(_split_defaults)
        self.register_load_state_dict_pre_hook(_join_defaults)

    @property
    def default(self) -> Tensor:
        """(F, D) the learned default embeddings (a view of the table's last F rows)."""
        return self.table.weight[self.layout.table_rows:]

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Embed every feature: ids long (N, S) from `fuse`, mask bool (N, F) (True → default) → (N, F·D)."""
        if mask is not None:
            ids = torch.where(mask.index_select(1, self.column_feature), self.default_columns, ids)
        n, width = ids.shape
        if width == self.layout.num_features:  # one id per feature, never padding (`fuse`): a plain gather
            weight = self.table.weight
            rows = (F.embedding(ids.reshape(-1), weight, sparse=True) if self.table.sparse
                    else weight.index_select(0, ids.reshape(-1)))  # dense gradient: one index_add
            return rows.view(n, width * self.dim)
        offsets = (torch.arange(n, device=ids.device) * width).unsqueeze(1) + self.starts  # (N, F)
        bags = F.embedding_bag(ids.reshape(-1), self.table.weight, offsets.reshape(-1), mode="mean",
                               sparse=self.table.sparse, padding_idx=0)  # (N·F, D)
        return bags.view(n, self.layout.num_features * self.dim)


def _split_defaults(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    key, rows = prefix + "table.weight", module.layout.table_rows  # type: ignore[union-attr]
    if key in state:
        weight = state[key]
        state[key], state[prefix + "default"] = weight[:rows].clone(), weight[rows:].clone()


def _join_defaults(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    key, default = prefix + "table.weight", prefix + "default"
    if key in state and default in state:
        state[key] = torch.cat([state[key], state.pop(default)])


class _L2Normalize(torch.autograd.Function):
    """``x / max(‖x‖, eps)`` per row, as `F.normalize`, with a 4-kernel closed-form backward.

    ``dy/dx · g = (g − y·⟨g, y⟩) / ‖x‖`` (the projection term vanishes where the norm is clamped).
    Autograd's generic backward of `F.normalize` takes about ten kernels; at a small model's size
    those passes over the (N, d) output are a visible share of a step. Computed in float32 (float64
    stays float64), as autocast does for norms.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        clamped = norm <= eps
        y = x / norm.clamp_min_(eps)
        ctx.save_for_backward(y, norm, clamped)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        y, norm, clamped = ctx.saved_tensors
        dot = (grad * y).sum(1, keepdim=True).masked_fill_(clamped, 0)
        return torch.addcmul(grad, y, dot, value=-1).div_(norm), None


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows of a (N, d) tensor scaled to unit L2 norm (float32 out); the same values as `F.normalize`."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _L2Normalize.apply(x, eps)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))  # into the Linear's fresh output: one buffer less per layer
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
        return l2_normalize(self.item_mlp(torch.cat([x, dense], 1) if dense.shape[1] else x))

    def query_vectors(self, ids: Tensor, dense: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.query_embedding(ids, mask)
        return l2_normalize(self.query_mlp(torch.cat([x, dense], 1) if dense.shape[1] else x))

    def embeddings(self) -> list[FeatureEmbedding]:
        """The distinct embedding modules (one when item and query towers share them)."""
        return list({id(m): m for m in (self.item_embedding, self.query_embedding)}.values())

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The embedding tables with sparse gradients (all of them unless a table was switched to dense)."""
        return [m.table.weight for m in self.embeddings() if m.table.sparse]

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every parameter with a dense gradient: MLP weights, and tables switched to dense gradients."""
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
