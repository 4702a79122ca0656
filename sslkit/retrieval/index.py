"""Retrieval backends: exact blocked top-k (torch, any device) and HNSW (hnswlib, imported lazily).

Both rank by inner product (= cosine on the L2-normalized vectors the model produces).

Exact top-k is reproducible bit for bit. BLAS matmul results depend on the matrix shapes (MKL,
cuBLAS pick different kernels), so scores from the blocked matmul can differ in the last bit
between two block sizes, and identical item vectors can get different scores. The matmul is
therefore used only to find candidates: the best ``k + margin`` per query, whose scores are then
recomputed canonically (float64, fixed summation order, rounded to float32 — a pure function of
the two vectors). A rigorous error bound on the matmul proves per query that the canonical top-k
lies among the candidates; queries where it cannot (a near-tie straddling the candidate cut, e.g.
many duplicate item vectors) are redone over every item within the bound. Ties of the canonical
score go to the lower item index. Inputs must be finite.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslkit.data import io
from sslkit.errors import CheckpointError

_FIX = "rebuild it with `sslkit embed RUN --index`"
_U32 = 2.0**-24  # unit roundoff of float32


def _sort_desc(scores: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ordered by (score descending, index ascending), for ``[R, C]`` tensors."""
    order = torch.argsort(idx, dim=1, stable=True)
    scores, idx = scores.gather(1, order), idx.gather(1, order)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return scores.gather(1, order), idx.gather(1, order)


def _canonical(q: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Shape-independent inner products of query ``rows`` with item ``cols`` (same shape ``S``).

    float32 products are exact in float64; the sum runs over dimensions in a fixed order with one
    rounding per addition, so a pair's score never depends on how the pairs are batched.

    Returns:
        float32 ``S``; ``-inf`` where ``cols < 0``.
    """
    safe = cols.clamp(min=0)
    acc = torch.zeros(cols.shape, dtype=torch.float64, device=cols.device)
    for j in range(q.shape[1]):
        acc += q[rows, j].double() * items[safe, j].double()
    return torch.where(cols >= 0, acc.float(), float("-inf"))


def _matmul_eps(q: torch.Tensor, item_norm_max: float) -> torch.Tensor:
    """Per-query bound on |matmul score − canonical score| (float32 ``[B]``)."""
    d = q.shape[1]
    gamma = d * _U32 / (1 - d * _U32)  # classic bound for any summation order
    reduced = torch.get_float32_matmul_precision() != "highest" or (
        q.is_cuda and torch.backends.cuda.matmul.allow_tf32)
    unit_in = 2.0**-8 if reduced else 0.0  # TF32 / bf16 input rounding
    factor = 2 * gamma + 4 * _U32 + 2 * unit_in  # safety factor 2 on the matmul error
    return (torch.linalg.vector_norm(q.double(), dim=1) * item_norm_max * factor).float()


def _exclusions(q0: int, b: int, n_items: int, exclude_self: torch.Tensor | None, indptr: np.ndarray | None,
                ex_items: np.ndarray | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Excluded (row within block, item) pairs of queries ``q0 .. q0 + b`` (int64 ``[E]`` each)."""
    rows, cols = [], []
    if exclude_self is not None:
        c = exclude_self[q0:q0 + b].to(device=device, dtype=torch.long)
        keep = c >= 0
        rows.append(torch.arange(b, device=device)[keep])
        cols.append(c[keep])
    if indptr is not None and ex_items is not None:
        lo, hi = int(indptr[q0]), int(indptr[q0 + b])
        counts = np.diff(indptr[q0:q0 + b + 1])
        rows.append(torch.from_numpy(np.repeat(np.arange(b, dtype=np.int64), counts)).to(device))
        cols.append(torch.from_numpy(np.ascontiguousarray(ex_items[lo:hi])).to(device))
    if not rows:
        return None
    r, c = torch.cat(rows), torch.cat(cols)
    if len(c) and (int(c.max()) >= n_items or int(c.min()) < 0):
        raise ValueError(f"excluded item rows must be in [0, {n_items})")
    return r, c


def _block_scores(q: torch.Tensor, items: torch.Tensor, i0: int, i1: int,
                  excl: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Matmul scores ``[B, i1 − i0]`` of a query block against an item block, exclusions −inf."""
    s = q @ items[i0:i1].T
    if excl is not None:
        sel = (excl[1] >= i0) & (excl[1] < i1)
        s[excl[0][sel], excl[1][sel] - i0] = float("-inf")
    return s


def _candidates(q: torch.Tensor, items: torch.Tensor, width: int, item_block: int,
                excl: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` best items per query by matmul score (ties arbitrary), descending; −inf/−1 pad."""
    b, n = q.shape[0], items.shape[0]
    best_s = torch.full((b, width), float("-inf"), device=q.device)
    best_i = torch.full((b, width), -1, dtype=torch.long, device=q.device)
    for i0 in range(0, n, item_block):
        i1 = min(n, i0 + item_block)
        s = _block_scores(q, items, i0, i1, excl)
        top_s, top_i = torch.topk(s, min(width, i1 - i0), dim=1)
        del s
        best_s, pos = torch.topk(torch.cat([best_s, top_s], 1), width, dim=1)
        best_i = torch.cat([best_i, top_i + i0], 1).gather(1, pos)
    return best_s, torch.where(torch.isinf(best_s), -1, best_i)


def _segment_topk(rows: torch.Tensor, cols: torch.Tensor, scores: torch.Tensor, n_rows: int,
                  k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row top-k of flat (row, col, score) triples by (score desc, col asc) → ``[n_rows, k]``."""
    order = torch.argsort(cols, stable=True)
    order = order[torch.argsort(scores[order], descending=True, stable=True)]
    order = order[torch.argsort(rows[order], stable=True)]
    rows, cols, scores = rows[order], cols[order], scores[order]
    counts = torch.bincount(rows, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(rows), device=rows.device) - starts[rows]
    keep = rank < k
    out_s = torch.full((n_rows, k), float("-inf"), device=scores.device)
    out_i = torch.full((n_rows, k), -1, dtype=torch.long, device=scores.device)
    out_s[rows[keep], rank[keep]] = scores[keep]
    out_i[rows[keep], rank[keep]] = cols[keep]
    return out_s, out_i


def _redo_near_ties(q: torch.Tensor, items: torch.Tensor, k: int, thr: torch.Tensor, item_block: int,
                    excl: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact canonical top-k for queries ``q [R, d]`` scoring every item with matmul ≥ ``thr [R]``.

    Every item of the canonical top-k has a matmul score ≥ thr (see the caller), so rescoring
    just those items canonically is exact. The running result is merged after each item block.
    """
    r = q.shape[0]
    best_s = torch.full((r, k), float("-inf"), device=q.device)
    best_i = torch.full((r, k), -1, dtype=torch.long, device=q.device)
    for i0 in range(0, items.shape[0], item_block):
        s = _block_scores(q, items, i0, min(items.shape[0], i0 + item_block), excl)
        rows, cols = (s >= thr[:, None]).nonzero(as_tuple=True)
        del s
        cols = cols + i0
        scores = _canonical(q, items, rows, cols)
        prev_r, prev_c = (best_i >= 0).nonzero(as_tuple=True)
        best_s, best_i = _segment_topk(torch.cat([prev_r, rows]), torch.cat([best_i[prev_r, prev_c], cols]),
                                       torch.cat([best_s[prev_r, prev_c], scores]), r, k)
    return best_s, best_i


def _topk_block(q: torch.Tensor, items: torch.Tensor, k: int, item_block: int, item_norm_max: float,
                excl: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical exact top-k ``[B, k]`` (scores, indices) of one query block."""
    b = q.shape[0]
    width = k + max(8, k // 8)
    cand_s, cand_i = _candidates(q, items, width, item_block, excl)
    rows = torch.arange(b, device=q.device)[:, None].expand(b, width)
    out_s, out_i = _sort_desc(_canonical(q, items, rows, cand_i), cand_i)  # cand_i = −1 where −inf
    out_s, out_i = out_s[:, :k].contiguous(), out_i[:, :k].contiguous()
    # Matmul ≥ kth holds for k candidates, so the canonical k-th best ≥ kth − eps; an item outside
    # the candidates has matmul ≤ last, i.e. canonical ≤ last + eps. Safe when last < kth − 2·eps.
    eps = _matmul_eps(q, item_norm_max)
    kth, last = cand_s[:, k - 1], cand_s[:, -1]
    unsure = torch.isfinite(last) & (last >= kth - 2 * eps)
    if unsure.any():
        redo = unsure.nonzero().flatten()
        sub = None
        if excl is not None:
            pos = torch.full((b,), -1, dtype=torch.long, device=q.device)
            pos[redo] = torch.arange(len(redo), device=q.device)
            keep = pos[excl[0]] >= 0
            sub = (pos[excl[0][keep]], excl[1][keep])
        out_s[redo], out_i[redo] = _redo_near_ties(q[redo], items, k, kth[redo] - 2 * eps[redo], item_block, sub)
    out_i = torch.where(torch.isinf(out_s), -1, out_i)
    return out_s, out_i


def _as_csr(indptr: Any, ex_items: Any, n_queries: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated int64 numpy CSR (or ``(None, None)``)."""
    if indptr is None and ex_items is None:
        return None, None
    if indptr is None or ex_items is None:
        raise ValueError("exclude_indptr and exclude_items go together")
    ptr, its = (np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a, dtype=np.int64).reshape(-1)
                for a in (indptr, ex_items))
    if len(ptr) != n_queries + 1 or ptr[0] != 0 or ptr[-1] != len(its) or (np.diff(ptr) < 0).any():
        raise ValueError(f"exclude_indptr must be [Q + 1 = {n_queries + 1}], from 0 up to len(exclude_items)")
    return ptr, its


@torch.inference_mode()
def exact_topk(queries: torch.Tensor, items: torch.Tensor, k: int, *, exclude_self: torch.Tensor | None = None,
               exclude_indptr: Any = None, exclude_items: Any = None, query_block: int = 4096,
               item_block: int = 262144) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k items per query by inner product, memory-bounded and deterministic.

    At most ``query_block × item_block`` matmul scores exist at once. Results (scores and indices)
    are identical for every ``query_block`` / ``item_block``; ties go to the lower item index.

    Args:
        queries: float ``[Q, d]``; items: float ``[N, d]``, on the same device (CPU or CUDA).
        k: results per query (``>= 1``; may exceed N, the rest is padding).
        exclude_self: int64 ``[Q]`` one item row to exclude per query, ``-1`` = none.
        exclude_indptr: int64 ``[Q + 1]`` (numpy or torch) CSR offsets of item rows to exclude.
        exclude_items: int64 ``[nnz]`` the excluded item rows (e.g. training positives).
        query_block: queries per block.
        item_block: items per block.

    Returns:
        ``(scores float32 [Q, k], indices int64 [Q, k])`` on the inputs' device, best first;
        ``-inf`` / ``-1`` where fewer than k non-excluded items exist.
    """
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(f"need queries [Q, d] and items [N, d], got {tuple(queries.shape)}, {tuple(items.shape)}")
    if k < 1 or query_block < 1 or item_block < 1:
        raise ValueError(f"k, query_block and item_block must be >= 1, got {k}, {query_block}, {item_block}")
    nq, device = queries.shape[0], queries.device
    queries, items = queries.float(), items.to(device=device, dtype=torch.float32)
    if exclude_self is not None:
        exclude_self = torch.as_tensor(exclude_self, dtype=torch.long).reshape(-1)
        if len(exclude_self) != nq:
            raise ValueError(f"exclude_self must be [Q = {nq}], got {len(exclude_self)}")
    ptr, ex = _as_csr(exclude_indptr, exclude_items, nq)
    norm_max = float(torch.linalg.vector_norm(items.double(), dim=1).max()) if len(items) else 0.0
    out_s = torch.full((nq, k), float("-inf"), device=device)
    out_i = torch.full((nq, k), -1, dtype=torch.long, device=device)
    if len(items) == 0:
        return out_s, out_i
    for q0 in range(0, nq, query_block):
        b = min(query_block, nq - q0)
        excl = _exclusions(q0, b, len(items), exclude_self, ptr, ex, device)
        out_s[q0:q0 + b], out_i[q0:q0 + b] = _topk_block(queries[q0:q0 + b], items, k, item_block, norm_max, excl)
    return out_s, out_i


def _atomic_write(path: Path, write: Any) -> None:
    """Run ``write(tmp_path)`` on a temp file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _hnsw_header(path: Path) -> tuple[int, int]:
    """(dim, count) read from an hnswlib file header; ValueError if it is not a plausible index.

    hnswlib silently loads a file of another dimension and may crash on some corrupt files, so the
    header (6 × uint64: offsetLevel0, max_elements, count, bytes/element, label offset, data
    offset) is checked before hnswlib sees the file.
    """
    with path.open("rb") as fh:
        head = fh.read(48)
    if len(head) < 48:
        raise ValueError("file too short")
    _, _, count, per_elem, label_off, data_off = struct.unpack("<6Q", head)
    data_bytes = label_off - data_off
    if not (0 < data_off < label_off < per_elem) or data_bytes % 4 or per_elem != label_off + 8:
        raise ValueError("bad header")
    if path.stat().st_size < 96 + count * per_elem:
        raise ValueError("truncated")
    return data_bytes // 4, count


class HnswIndex:
    """hnswlib index in inner-product space; ids are item rows ``0 .. N − 1``.

    A two-tower model's query vectors are out of distribution for a graph built from item–item
    neighbourhoods: the item vectors share a large common component and the query tower's vectors
    sit on the far side of it (on 1M learned vectors, cosine between the two means −0.85 to −0.88),
    so a greedy search from the items' side misses much of the exact top 50. Two constructions
    help, and the default uses both (docs/retrieval.md has the measurements):

    * ``center``: the graph holds the item vectors minus their mean m. Every inner product of a
      query q shifts by the same q·m, so each query's ranking is unchanged.
    * ``query_nodes``: vectors of real (training) queries inserted as extra graph nodes with ids
      ``N ..`` and then marked deleted: a search still walks through them — they bridge the query
      side and the item side — but never returns them.

    Scores are exact inner products: with the item vectors at hand (``vectors``, kept by
    :meth:`build` and passed to :meth:`load`), every candidate is rescored in float64 from the raw
    vectors and ties go to the lower item row, as in :func:`exact_topk`; without them they are the
    graph's float32 inner products (plus q·m when centered). When the graph cannot return as many
    results as asked (k near the catalog size on a graph with unreachable nodes), the query is
    answered by exact search instead.

    Attributes:
        index: the ``hnswlib.Index``.
        meta: the sidecar dict: ``format, version, dim, count, M, ef_construction, ef, space``;
            ``center`` (the subtracted mean, ``dim`` floats) when centered; from version 3 also
            ``query_nodes`` (how many deleted query nodes the graph holds), ``normalized`` (true
            when the graph holds unit-length vectors; see :meth:`build`), ``hubs`` (item rows
            every query scores exactly), ``built_with`` (free
            settings that produced it, e.g. how the query nodes were chosen), ``recall`` (measured
            at build time, optional) and ``checksum`` (of the rest, checked at load).
        vectors: the raw item vectors float32 ``[N, d]`` used to rescore, or None.
    """

    def __init__(self, index: Any, meta: dict[str, Any], vectors: np.ndarray | None = None) -> None:
        self.index, self.meta = index, meta
        center = meta.get("center")
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        self.vectors = vectors
        self.hubs = np.asarray(meta.get("hubs", []), dtype=np.int64)

    @property
    def dim(self) -> int:
        """Vector dimension d."""
        return int(self.meta["dim"])

    @property
    def count(self) -> int:
        """Number of indexed items N."""
        return int(self.meta["count"])

    @property
    def query_nodes(self) -> int:
        """Number of (deleted) query nodes in the graph besides the N items."""
        return int(self.meta.get("query_nodes", 0))

    @classmethod
    def build(cls, vectors: np.ndarray, *, M: int = 16, ef_construction: int = 100, ef: int = 400,
              seed: int = 0, num_threads: int = 0, center: bool = False, query_nodes: np.ndarray | None = None,
              normalize: bool = False, hubs: np.ndarray | None = None,
              built_with: dict[str, Any] | None = None) -> "HnswIndex":
        """Index ``vectors`` float32 ``[N, d]`` with ids 0..N−1 (``num_threads=0``: all cores).

        Args:
            center: index them minus their mean (the same ranking per query; see the class).
            query_nodes: float ``[B, d]`` query vectors inserted after the items as nodes
                ``N .. N + B − 1`` and marked deleted (traversed, never returned).
            normalize: the graph holds the (centered) vectors scaled to unit length, so it is built
                and searched by angle, a metric the graph search navigates well; a query takes the
                ``max(ef, k)`` best candidates by angle and ranks them by their exact inner products,
                which needs the raw vectors at query time (``vectors``).
            hubs: int item rows scored exactly for every query besides the graph's candidates:
                the items that fill real queries' exact top K (see the class).
            built_with: free-form settings recorded in the sidecar (e.g. how query_nodes were drawn).
        """
        import hnswlib

        raw = np.ascontiguousarray(vectors, dtype=np.float32)
        if raw.ndim != 2:
            raise ValueError(f"vectors must be [N, d], got shape {raw.shape}")
        n, d = raw.shape
        qn = np.zeros((0, d), np.float32) if query_nodes is None else np.ascontiguousarray(query_nodes, dtype=np.float32)
        if qn.ndim != 2 or qn.shape[1] != d:
            raise ValueError(f"query_nodes must be [B, {d}], got shape {qn.shape}")
        qn = qn if n else qn[:0]
        meta: dict[str, Any] = {"format": "sslkit-hnsw", "version": 3, "dim": d, "count": n, "M": M,
                                "ef_construction": ef_construction, "ef": ef, "space": "ip", "query_nodes": len(qn)}
        graph = raw
        if center and n:
            mean = raw.mean(0, dtype=np.float64).astype(np.float32)
            graph = raw - mean
            meta["center"] = [float(x) for x in mean]
        if normalize:
            norms = np.linalg.norm(graph, axis=1, keepdims=True)
            graph = graph / np.where(norms > 0, norms, 1)
            meta["normalized"] = True
        if hubs is not None:
            h = np.unique(np.asarray(hubs, dtype=np.int64).reshape(-1))
            if len(h) and (h[0] < 0 or h[-1] >= n):
                raise ValueError(f"hubs must be item rows in [0, {n})")
            meta["hubs"] = [int(i) for i in h]
        meta["built_with"] = dict(built_with or {})
        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(max_elements=max(n + len(qn), 1), M=M, ef_construction=ef_construction, random_seed=seed)
        threads = num_threads or -1
        if n:
            index.add_items(graph, np.arange(n, dtype=np.int64), num_threads=threads)
        if len(qn):  # queries as they are: a query's scores against the centered items keep its ranking
            index.add_items(qn, np.arange(n, n + len(qn), dtype=np.int64), num_threads=threads)
            for label in range(n, n + len(qn)):
                index.mark_deleted(label)
        index.set_ef(ef)
        return cls(index, meta, raw)

    def _knn(self, q: np.ndarray, fetch: int, ef: int, num_threads: int) -> tuple[np.ndarray, np.ndarray] | None:
        """hnswlib search, retried with ef = every node if the graph returned fewer than ``fetch``
        results; None if it still cannot (nodes the graph does not reach)."""
        self.index.set_ef(max(ef, fetch))
        try:
            return self.index.knn_query(q, k=fetch, num_threads=num_threads or -1)
        except RuntimeError:
            self.index.set_ef(max(self.count + self.query_nodes, fetch))
            try:
                return self.index.knn_query(q, k=fetch, num_threads=num_threads or -1)
            except RuntimeError:
                return None
        finally:
            self.index.set_ef(int(self.meta["ef"]))

    def item_vectors(self) -> np.ndarray:
        """The raw item vectors: ``vectors`` if given, else read back from the graph (+ center)."""
        if self.vectors is None:
            if self.meta.get("normalized"):
                raise ValueError("a normalized index needs the raw item vectors (HnswIndex.load(path, vectors=...))")
            got = np.asarray(self.index.get_items(np.arange(self.count), return_type="numpy"), dtype=np.float32)
            self.vectors = got if self.center is None else got + self.center
        return self.vectors

    def _hub_candidates(self, q: np.ndarray, fetch: int, block: int = 2048) -> np.ndarray:
        """Per query, the ``fetch`` hubs of highest (matmul) score: int64 ``[Q, min(fetch, H)]``."""
        hub_vecs = self.item_vectors()[self.hubs]
        take = min(fetch, len(self.hubs))
        out = np.empty((len(q), take), np.int64)
        for i in range(0, len(q), block):
            hs = q[i:i + block] @ hub_vecs.T
            out[i:i + block] = self.hubs[np.argpartition(-hs, take - 1, axis=1)[:, :take]]
        return out

    def query(self, q: np.ndarray, k: int, *, ef: int | None = None, exclude_self: np.ndarray | None = None,
              num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k by inner product.

        Args:
            q: float ``[Q, d]`` query vectors.
            k: results per query (``>= 1``; above what the catalog holds, the rest is padding).
            ef: search breadth (default: the build's ``ef``); raised to at least k (+1).
            exclude_self: int ``[Q]`` item row to drop per query (``-1`` = none); k + 1 are fetched.
            num_threads: search threads (0 = all cores).

        Returns:
            ``(scores float32 [Q, k], indices int64 [Q, k])``, best first, ``-inf`` / ``-1`` padded.
        """
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim or k < 1:
            raise ValueError(f"need queries [Q, {self.dim}] and k >= 1, got {q.shape}, k={k}")
        extra = 0 if exclude_self is None else 1
        fetch = min(k + extra, self.count)
        if fetch == 0 or len(q) == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        ef = ef or int(self.meta["ef"])
        normalized = bool(self.meta.get("normalized"))
        found = self._knn(q, min(max(fetch, ef), self.count) if normalized else fetch, ef, num_threads)
        if found is None:  # the graph cannot reach `fetch` items: answer by exact search
            s, i = exact_topk(torch.from_numpy(q), torch.from_numpy(self.item_vectors()), fetch)
            scores, labels = s.numpy(), i.numpy()
        else:
            labels = found[0].astype(np.int64)
            if len(self.hubs):  # the hubs' best `fetch` by exact score join the graph's candidates
                labels = _dedupe(np.concatenate([labels, self._hub_candidates(q, fetch)], axis=1))
            if self.vectors is not None or normalized or len(self.hubs):
                scores, labels = _rescore(q, self.item_vectors(), labels)
                scores, labels = scores[:, :fetch], labels[:, :fetch]
            else:
                scores = (1.0 - found[1]).astype(np.float32)
                if self.center is not None:  # the graph's inner products are q·(v − m): add q·m back
                    scores = scores + (q @ self.center)[:, None]
        if exclude_self is not None:
            drop = labels == np.asarray(exclude_self, dtype=np.int64).reshape(-1, 1)
            drop[:, -1] |= ~drop.any(axis=1)  # no self among them: drop the surplus last one
            labels = labels[~drop].reshape(len(q), fetch - 1)
            scores = scores[~drop].reshape(len(q), fetch - 1)
        pad = k - labels.shape[1]
        if pad > 0:
            labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores[:, :k], labels[:, :k]

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` and its sidecar (with its checksum) to ``<path>.json``, each atomically."""
        path = Path(path)
        if self.meta.get("version", 1) >= 3:
            self.meta["checksum"] = sidecar_checksum(self.meta)
        _atomic_write(path, lambda tmp: self.index.save_index(str(tmp)))
        text = json.dumps(self.meta, indent=2) + "\n"
        _atomic_write(Path(f"{path}.json"), lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | Path, vectors: np.ndarray | None = None) -> "HnswIndex":
        """Load an index saved by :meth:`save` (any version); ``vectors``: the raw item vectors
        ``[N, d]`` to rescore with (see the class).

        Raises:
            CheckpointError: missing file, missing/malformed sidecar, a sidecar whose checksum does
                not match (edited or damaged), dimension or count mismatch, or a file hnswlib cannot read.
        """
        import hnswlib

        path = Path(path)
        side = Path(f"{path}.json")
        if not path.is_file():
            raise CheckpointError(f"{path}: HNSW index not found", hint=_FIX)
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{side}: missing or unreadable index sidecar ({type(e).__name__})", hint=_FIX)
        if not _sidecar_ok(meta):
            raise CheckpointError(f"{side}: malformed index sidecar (not sslkit-hnsw v1, v2 or v3)", hint=_FIX)
        if meta["version"] >= 3 and meta.get("checksum") != sidecar_checksum(meta):
            raise CheckpointError(f"{side}: the index sidecar does not match its checksum (edited or damaged); "
                                  "it is not used", hint=_FIX)
        try:
            dim, nodes = _hnsw_header(path)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt HNSW index ({e})", hint=_FIX)
        if dim != meta["dim"] or nodes != meta["count"] + meta.get("query_nodes", 0):
            raise CheckpointError(f"{path}: index has dim {dim} and {nodes} nodes but {side.name} says "
                                  f"dim {meta['dim']} and {meta['count'] + meta.get('query_nodes', 0)} nodes", hint=_FIX)
        if vectors is not None and np.shape(vectors) != (meta["count"], meta["dim"]):
            raise ValueError(f"vectors {np.shape(vectors)} do not match the index ({meta['count']}, {meta['dim']})")
        index = hnswlib.Index(space="ip", dim=dim)
        try:
            index.load_index(str(path), max_elements=max(nodes, 1))
        except (RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"{path}: hnswlib cannot load the index ({e})", hint=_FIX)
        index.set_ef(meta["ef"])
        return cls(index, meta, None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32))


def sidecar_checksum(meta: dict[str, Any]) -> str:
    """Checksum of a sidecar's content (every key but ``checksum``), canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return io.digest_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _sidecar_ok(meta: Any) -> bool:
    """Is this a well-formed sslkit-hnsw sidecar of version 1, 2 or 3?"""
    if not (isinstance(meta, dict) and meta.get("format") == "sslkit-hnsw" and meta.get("version") in (1, 2, 3)
            and meta.get("space") == "ip"
            and all(type(meta.get(f)) is int and meta[f] >= 0 for f in ("dim", "count", "M", "ef_construction", "ef"))):
        return False
    v = meta["version"]
    if "center" in meta and not (v >= 2 and isinstance(meta["center"], list) and len(meta["center"]) == meta["dim"]
                                 and all(isinstance(x, float) and np.isfinite(x) for x in meta["center"])):
        return False
    if v == 2 and "center" not in meta:
        return False
    if v == 3:
        return (type(meta.get("query_nodes")) is int and meta["query_nodes"] >= 0 and meta["ef"] >= 1
                and meta.get("normalized", False) in (True, False)
                and isinstance(meta.get("hubs", []), list)
                and all(type(i) is int and 0 <= i < meta["count"] for i in meta.get("hubs", []))
                and isinstance(meta.get("built_with"), dict) and isinstance(meta.get("checksum"), str))
    return "query_nodes" not in meta


def _dedupe(labels: np.ndarray) -> np.ndarray:
    """Each row's labels with repeats replaced by −1 (``[Q, C]``)."""
    order = np.argsort(labels, axis=1, kind="stable")
    srt = np.take_along_axis(labels, order, 1)
    rep = np.zeros(labels.shape, bool)
    rep[:, 1:] = srt[:, 1:] == srt[:, :-1]
    out = labels.copy()
    np.put_along_axis(out, order, np.where(rep, -1, srt), 1)
    return out


def _rescore(q: np.ndarray, vectors: np.ndarray, labels: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products (float64, rounded to float32) of each query with its candidate rows
    ``labels [Q, C]`` (−1 = none), ordered by (score descending, row ascending) as in exact_topk."""
    scores = np.empty(labels.shape, np.float32)
    for i in range(0, len(q), block):
        lab = labels[i:i + block]
        cand = vectors[np.maximum(lab, 0)].astype(np.float64)
        s = np.einsum("qcd,qd->qc", cand, q[i:i + block].astype(np.float64))
        scores[i:i + block] = np.where(lab >= 0, s, -np.inf)
    order = np.lexsort((labels, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)


def ann_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / |valid exact| (``-1`` entries ignored).

    Args:
        approx: int ``[Q, k1]`` approximate results.
        exact: int ``[Q, k2]`` exact results.

    Returns:
        The mean over queries with at least one valid exact result (1.0 if there is none).
    """
    a, e = np.asarray(approx, dtype=np.int64), np.asarray(exact, dtype=np.int64)
    if a.ndim != 2 or e.ndim != 2 or len(a) != len(e):
        raise ValueError(f"approx {a.shape} and exact {e.shape} must be [Q, k] with the same Q")
    n = int(max(a.max(initial=0), e.max(initial=0))) + 1
    rows = np.arange(len(e), dtype=np.int64)[:, None]
    exact_keys = np.unique((rows * n + e)[e >= 0])
    approx_keys = np.unique((rows * n + a)[a >= 0])
    found = np.bincount(approx_keys[np.isin(approx_keys, exact_keys)] // n, minlength=len(e))
    valid = (e >= 0).sum(axis=1)
    ok = valid > 0
    return float((found[ok] / valid[ok]).mean()) if ok.any() else 1.0
