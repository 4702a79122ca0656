"""Retrieval backends: exact blocked top-k (torch, any device) and HNSW (hnswlib, imported lazily).

Both score by inner product on L2-normalized vectors (= cosine, what the model trained with).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslkit.errors import CheckpointError

ITEM_BLOCK = 65536  # fixed, so results never depend on the query batch size


def _merge(scores: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of candidate lists with deterministic ties (higher score, then lower index)."""
    order = torch.argsort(idx, dim=1, stable=True)
    scores, idx = scores.gather(1, order), idx.gather(1, order)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), idx.gather(1, order)


@torch.inference_mode()
def exact_topk(queries: torch.Tensor, items: torch.Tensor, k: int, *, exclude_self: torch.Tensor | None = None,
               exclude_indptr: np.ndarray | None = None, exclude_items: np.ndarray | None = None,
               query_block: int = 4096, item_block: int = ITEM_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product, never materializing more than query_block × item_block scores.

    Args:
        queries: (Q, d); items: (N, d) on the same device. k: results per query.
        exclude_self: long (Q,) item row to drop per query (item-to-item), or −1.
        exclude_indptr, exclude_items: CSR (Q+1,), (nnz,) item rows to drop per query.
    Returns:
        scores float (Q, k) and indices long (Q, k), best first; −inf / −1 where fewer remain.
    """
    dev, nq, n = queries.device, queries.shape[0], items.shape[0]
    out_s = torch.full((nq, k), float("-inf"), device=dev)
    out_i = torch.full((nq, k), -1, dtype=torch.long, device=dev)
    for q0 in range(0, nq, query_block):
        q = queries[q0:q0 + query_block]
        b = q.shape[0]
        best_s, best_i = out_s[q0:q0 + b], out_i[q0:q0 + b]
        ex_rows, ex_cols = _exclusions(q0, b, exclude_self, exclude_indptr, exclude_items, dev)
        for i0 in range(0, n, item_block):
            s = q @ items[i0:i0 + item_block].T  # (b, blk)
            if ex_rows is not None:
                sel = (ex_cols >= i0) & (ex_cols < i0 + s.shape[1])
                s[ex_rows[sel], ex_cols[sel] - i0] = float("-inf")
            top_s, top_i = torch.topk(s, min(k, s.shape[1]), dim=1)
            best_s, best_i = _merge(torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i + i0], 1), k)
        best_i = torch.where(torch.isinf(best_s), -1, best_i)
        out_s[q0:q0 + b], out_i[q0:q0 + b] = best_s, best_i
    return out_s, out_i


def _exclusions(q0: int, b: int, self_rows: torch.Tensor | None, indptr: np.ndarray | None,
                items: np.ndarray | None, dev: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    rows, cols = [], []
    if self_rows is not None:
        r = torch.arange(b, device=dev)
        c = self_rows[q0:q0 + b].to(dev)
        rows.append(r[c >= 0]); cols.append(c[c >= 0])
    if indptr is not None and items is not None:
        lo, hi = indptr[q0], indptr[min(q0 + b, len(indptr) - 1)]
        counts = np.diff(indptr[q0:q0 + b + 1])
        rows.append(torch.from_numpy(np.repeat(np.arange(b), counts)).to(dev))
        cols.append(torch.from_numpy(np.asarray(items[lo:hi], dtype=np.int64)).to(dev))
    if not rows:
        return None, None
    return torch.cat(rows), torch.cat(cols)


class HnswIndex:
    """hnswlib index, inner-product space, ids = item rows; saved with a JSON sidecar."""

    def __init__(self, index: Any, meta: dict[str, Any]) -> None:
        self.index, self.meta = index, meta

    @classmethod
    def build(cls, vectors: np.ndarray, *, M: int = 16, ef_construction: int = 200, ef: int = 100,
              seed: int = 0, num_threads: int = 0) -> "HnswIndex":
        import hnswlib

        n, d = vectors.shape
        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(max_elements=max(n, 1), M=M, ef_construction=ef_construction, random_seed=seed)
        index.add_items(np.ascontiguousarray(vectors, dtype=np.float32), np.arange(n),
                        num_threads=num_threads or -1)
        index.set_ef(ef)
        return cls(index, {"format": "sslkit-hnsw", "version": 1, "dim": d, "count": n, "M": M,
                           "ef_construction": ef_construction, "ef": ef, "space": "ip"})

    def query(self, q: np.ndarray, k: int, *, ef: int | None = None, exclude_self: np.ndarray | None = None,
              num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Scores float32 (Q, k) and rows int64 (Q, k) (−1 padded), optionally without each query's own row."""
        count = self.meta["count"]
        extra = 1 if exclude_self is not None else 0
        fetch = min(k + extra, count)
        self.index.set_ef(max(ef or self.meta["ef"], fetch))
        labels, dist = self.index.knn_query(np.ascontiguousarray(q, dtype=np.float32), k=fetch,
                                            num_threads=num_threads or -1)
        labels, scores = labels.astype(np.int64), (1.0 - dist).astype(np.float32)
        if exclude_self is not None:
            drop = labels == np.asarray(exclude_self)[:, None]
            drop[:, -1] |= ~drop.any(1)  # otherwise drop the surplus last candidate
            keep = ~drop
            labels = labels[keep].reshape(len(q), fetch - 1)
            scores = scores[keep].reshape(len(q), fetch - 1)
        if labels.shape[1] < k:
            pad = k - labels.shape[1]
            labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores[:, :k], labels[:, :k]

    def save(self, path: str | Path) -> None:
        """Atomic: index and sidecar are written to temp files, then renamed into place."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self.index.save_index(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        from sslkit.io import write_json

        write_json(f"{path}.json", self.meta)

    @classmethod
    def load(cls, path: str | Path) -> "HnswIndex":
        import hnswlib

        path = Path(path)
        fix = "rebuild it with `sslkit embed RUN --index`"
        if not path.exists():
            raise CheckpointError(f"{path}: index not found", hint=fix)
        try:
            meta = json.loads(Path(f"{path}.json").read_text())
            assert meta["format"] == "sslkit-hnsw" and meta["space"] == "ip"
            index = hnswlib.Index(space="ip", dim=int(meta["dim"]))
            index.load_index(str(path), max_elements=int(meta["count"]))
            if index.get_current_count() != meta["count"]:
                raise ValueError("count mismatch")
        except Exception as e:
            raise CheckpointError(f"{path}: cannot load index ({type(e).__name__})", hint=fix)
        index.set_ef(int(meta["ef"]))
        return cls(index, meta)


def ann_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / |exact| (−1 entries ignored)."""
    a, e = np.asarray(approx), np.asarray(exact)
    same = (a[:, :, None] == e[:, None, :]) & (e[:, None, :] >= 0)
    found = same.any(1).sum(1)
    valid = (e >= 0).sum(1)
    ok = valid > 0
    return float((found[ok] / valid[ok]).mean()) if ok.any() else 1.0
