"""Retrieval metrics (DESIGN §5), vectorized over queries. Pure numpy.

Definitions (K = cutoff, rel = the query's relevant items, hit(i) = rank i is relevant):
* Recall@K = |top-K ∩ rel| / |rel|
* AP@K = Σ_{i≤K} P@i · hit(i) / min(|rel|, K)   (RecBole / Merlin; some libraries divide by the
  number of hits instead, which rewards retrieving few relevant items); MAP@K = mean over queries.
* NDCG@K with binary gains, ideal DCG over min(|rel|, K) positions; MRR@K = 1 / rank of the first hit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def hits_matrix(topk: np.ndarray, rel_indptr: np.ndarray, rel_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool (Q, K) hits and int64 (Q,) number of distinct relevant items per query.

    topk: int (Q, K) retrieved rows (−1 = none); rel_indptr (Q+1,), rel_items (nnz,) as CSR.
    """
    topk = np.asarray(topk, dtype=np.int64)
    q = len(rel_indptr) - 1
    n = int(max(topk.max(initial=0), np.max(rel_items, initial=0))) + 2
    owner = np.repeat(np.arange(q, dtype=np.int64), np.diff(rel_indptr))
    keys = np.unique(owner * n + np.asarray(rel_items, dtype=np.int64))
    n_rel = np.bincount(keys // n, minlength=q)
    cand = np.arange(q, dtype=np.int64)[:, None] * n + topk
    pos = np.minimum(np.searchsorted(keys, cand), max(len(keys) - 1, 0))
    hits = (keys[pos] == cand) & (topk >= 0) if len(keys) else np.zeros(topk.shape, bool)
    return hits, n_rel


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(1) / n_rel


def average_precision_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    precision = np.cumsum(h, 1) / np.arange(1, h.shape[1] + 1)
    return (precision * h).sum(1) / np.minimum(n_rel, k)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discount[: hits[:, :k].shape[1]]).sum(1)
    ideal = np.cumsum(discount)[np.minimum(n_rel, k) - 1]
    return dcg / ideal


def reciprocal_rank_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = h.argmax(1)
    return np.where(h.any(1), 1.0 / (first + 1), 0.0)


def compute_metrics(topk: np.ndarray, rel_indptr: np.ndarray, rel_items: np.ndarray,
                    ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query arrays `recall@K`, `map@K`, `ndcg@K`, `mrr@K` for each K in ks."""
    if any(k > topk.shape[1] for k in ks):
        raise ValueError(f"cutoffs {list(ks)} exceed the {topk.shape[1]} retrieved items")
    hits, n_rel = hits_matrix(topk, rel_indptr, rel_items)
    if (n_rel == 0).any():
        raise ValueError("every query needs at least one relevant item")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(hits, n_rel, k)
        out[f"map@{k}"] = average_precision_at_k(hits, n_rel, k)
        out[f"ndcg@{k}"] = ndcg_at_k(hits, n_rel, k)
        out[f"mrr@{k}"] = reciprocal_rank_at_k(hits, k)
    return out


def summarize(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) if len(v) else 0.0 for k, v in per_query.items()}


def paired_bootstrap_ci(baseline: np.ndarray, treatment: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, float]:
    """Relative improvement mean(t)/mean(b) − 1 with a paired percentile bootstrap over queries.

    `p_value` is the one-sided share of replicates whose improvement has the opposite sign of the
    point estimate (doubled, capped at 1: a two-sided test).
    """
    b, t = np.asarray(baseline, np.float64), np.asarray(treatment, np.float64)
    if b.shape != t.shape or b.ndim != 1 or not len(b):
        raise ValueError("baseline and treatment need the same non-empty per-query arrays")
    point = t.mean() / b.mean() - 1 if b.mean() > 0 else float("nan")
    rng = np.random.default_rng(seed)
    reps = []
    chunk = max(1, 2_000_000 // len(b))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        counts = rng.multinomial(len(b), np.full(len(b), 1.0 / len(b)), size=m).astype(np.float64)
        mb, mt = counts @ b, counts @ t
        reps.append(np.where(mb > 0, mt / np.where(mb > 0, mb, 1) - 1, np.nan))
    r = np.concatenate(reps)
    r = r[np.isfinite(r)]
    lo, hi = (np.quantile(r, [(1 - level) / 2, (1 + level) / 2]) if len(r) else (np.nan, np.nan))
    opposite = float(np.mean(r <= 0) if point > 0 else np.mean(r >= 0)) if len(r) else float("nan")
    return {"relative": float(point), "low": float(lo), "high": float(hi), "p_value": min(1.0, 2 * opposite)}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
