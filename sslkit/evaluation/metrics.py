"""Retrieval metrics (DESIGN §5), vectorized over queries. Pure numpy, no Python loop over queries.

Inputs shared by every function:

* ``topk``: int64 ``[Q, K]``, the retrieved item rows of each query in rank order; ``-1`` = no
  result (padding). A row should not repeat an item; if it does, only the first occurrence counts.
* the relevant items as CSR: ``rel_indptr`` int64 ``[Q + 1]`` (``rel_indptr[0] == 0``,
  non-decreasing) and ``rel_items`` int64 ``[nnz]`` (item rows ``>= 0``). Query ``i``'s set is
  ``rel_items[rel_indptr[i]:rel_indptr[i + 1]]``; duplicates inside a set are removed here.

Definitions (K = cutoff, rel = the query's distinct relevant items, hit(i) = rank i is relevant):

* Recall@K = |top-K ∩ rel| / |rel|
* AP@K = Σ_{i≤K} P@i · hit(i) / min(|rel|, K)  — the RecBole / NVIDIA Merlin definition, the one
  sslkit uses. Some libraries (e.g. ``ml_metrics.apk``-style code) divide by the number of hits
  instead, which rewards retrieving *few* relevant items; sslkit's numbers are not comparable with
  those. MAP@K is the mean of AP@K over queries.
* NDCG@K with binary gains: DCG = Σ_{i≤K} hit(i) / log2(i + 1), normalized by the ideal DCG of
  min(|rel|, K) hits at the top.
* MRR@K: 1 / rank of the first hit within the top K, else 0.

Queries with no relevant item have undefined recall/AP/NDCG: the caller must drop them; every
per-query function raises ``ValueError`` if one is left.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS = ("recall", "map", "ndcg", "mrr")
_BOOT_CHUNK_ELEMENTS = 1 << 22  # resampled indices held at once by the bootstrap (~32 MiB int64)


def _check_csr(rel_indptr: np.ndarray, rel_items: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated int64 copies of a CSR relevance structure.

    Args:
        rel_indptr: int ``[Q + 1]``.
        rel_items: int ``[nnz]``.
        n_queries: Q, the number of rows of ``topk``.

    Returns:
        ``(indptr [Q + 1], items [nnz])`` as int64.

    Raises:
        ValueError: on a malformed CSR or a negative item.
    """
    indptr = np.asarray(rel_indptr, dtype=np.int64).reshape(-1)
    items = np.asarray(rel_items, dtype=np.int64).reshape(-1)
    if len(indptr) != n_queries + 1:
        raise ValueError(f"rel_indptr has {len(indptr)} entries, expected Q + 1 = {n_queries + 1}")
    if indptr[0] != 0 or indptr[-1] != len(items) or (np.diff(indptr) < 0).any():
        raise ValueError("rel_indptr must start at 0, be non-decreasing and end at len(rel_items)")
    if len(items) and items.min() < 0:
        raise ValueError("rel_items must be item rows >= 0")
    return indptr, items


def _first_occurrence(topk: np.ndarray) -> np.ndarray:
    """bool ``[Q, K]``: True where the entry is a real item not already seen earlier in its row."""
    if topk.shape[1] < 2:
        return topk >= 0
    order = np.argsort(topk, axis=1, kind="stable")  # equal items keep rank order
    ranked = np.take_along_axis(topk, order, axis=1)
    repeat = np.zeros(topk.shape, dtype=bool)
    repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    first = np.empty_like(repeat)
    np.put_along_axis(first, order, ~repeat, axis=1)
    return first & (topk >= 0)


def _hits_and_counts(topk: np.ndarray, rel_indptr: np.ndarray,
                     rel_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hits bool ``[Q, K]`` and distinct relevant counts int64 ``[Q]`` (one sort of the keys)."""
    topk = np.asarray(topk, dtype=np.int64)
    if topk.ndim != 2:
        raise ValueError(f"topk must be [Q, K], got shape {topk.shape}")
    q = topk.shape[0]
    indptr, items = _check_csr(rel_indptr, rel_items, q)
    n = int(max(topk.max(initial=-1), items.max(initial=-1))) + 1  # key = query * n + item is unique
    owner = np.repeat(np.arange(q, dtype=np.int64), np.diff(indptr))
    keys = np.unique(owner * n + items)  # sorted, de-duplicated
    n_rel = np.bincount(keys // max(n, 1), minlength=q).astype(np.int64)
    if not len(keys):
        return np.zeros(topk.shape, dtype=bool), n_rel
    cand = np.arange(q, dtype=np.int64)[:, None] * n + topk
    pos = np.minimum(np.searchsorted(keys, cand), len(keys) - 1)
    return (keys[pos] == cand) & _first_occurrence(topk), n_rel


def hits_matrix(topk: np.ndarray, rel_indptr: np.ndarray, rel_items: np.ndarray) -> np.ndarray:
    """Which retrieved items are relevant.

    Args:
        topk: int64 ``[Q, K]`` retrieved item rows in rank order, ``-1`` = no result.
        rel_indptr: int64 ``[Q + 1]`` CSR offsets of the relevant sets.
        rel_items: int64 ``[nnz]`` relevant item rows (duplicates allowed, counted once).

    Returns:
        bool ``[Q, K]``: True where ``topk[q, i]`` is in query q's relevant set (``-1`` and repeats
        of an item earlier in the row are False).
    """
    return _hits_and_counts(topk, rel_indptr, rel_items)[0]


def relevant_counts(rel_indptr: np.ndarray, rel_items: np.ndarray) -> np.ndarray:
    """Number of *distinct* relevant items per query.

    Args:
        rel_indptr: int64 ``[Q + 1]``.
        rel_items: int64 ``[nnz]``.

    Returns:
        int64 ``[Q]``.
    """
    q = len(np.asarray(rel_indptr).reshape(-1)) - 1
    return _hits_and_counts(np.zeros((q, 0), np.int64), rel_indptr, rel_items)[1]


def _prepare(hits: np.ndarray, n_rel: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and cut: float64 hits ``[Q, k]`` and int64 n_rel ``[Q]``."""
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_rel, dtype=np.int64).reshape(-1)
    if hits.ndim != 2 or len(n_rel) != hits.shape[0]:
        raise ValueError(f"hits {hits.shape} and n_rel {n_rel.shape} disagree on the number of queries")
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"cutoff k={k} must be in [1, {hits.shape[1]}] (the number of retrieved items)")
    if (n_rel <= 0).any():
        raise ValueError(f"{int((n_rel <= 0).sum())} queries have no relevant item; drop them first")
    return hits[:, :k].astype(np.float64), n_rel


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = |top-k ∩ rel| / |rel|.

    Args:
        hits: bool ``[Q, K]`` from :func:`hits_matrix`.
        n_rel: int ``[Q]`` distinct relevant items per query (all > 0).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[Q]``.
    """
    h, n_rel = _prepare(hits, n_rel, k)
    return h.sum(axis=1) / n_rel


def average_precision_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """AP@k = Σ_{i≤k} P@i · hit(i) / min(|rel|, k) (RecBole / Merlin; see the module docstring).

    Some libraries divide by the number of hits in the top k instead; sslkit does not.

    Args:
        hits: bool ``[Q, K]``.
        n_rel: int ``[Q]`` (all > 0).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[Q]`` in [0, 1].
    """
    h, n_rel = _prepare(hits, n_rel, k)
    precision = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    return (precision * h).sum(axis=1) / np.minimum(n_rel, k)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains; the ideal DCG puts min(|rel|, k) hits at the top.

    Args:
        hits: bool ``[Q, K]``.
        n_rel: int ``[Q]`` (all > 0).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[Q]`` in [0, 1].
    """
    h, n_rel = _prepare(hits, n_rel, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal = np.cumsum(discount)[np.minimum(n_rel, k) - 1]
    return (h @ discount) / ideal


def reciprocal_rank_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """RR@k = 1 / rank of the first hit within the top k, 0 without one.

    Args:
        hits: bool ``[Q, K]``.
        n_rel: int ``[Q]`` (all > 0; only validated, for the same contract as the other metrics).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[Q]`` in [0, 1].
    """
    h, _ = _prepare(hits, n_rel, k)
    found = h.any(axis=1)
    first = h.argmax(axis=1)
    return np.where(found, 1.0 / (first + 1.0), 0.0)


_FUNCS = {"recall": recall_at_k, "map": average_precision_at_k, "ndcg": ndcg_at_k, "mrr": reciprocal_rank_at_k}


def compute_metrics(topk: np.ndarray, rel_indptr: np.ndarray, rel_items: np.ndarray,
                    ks: Sequence[int]) -> dict[str, np.ndarray]:
    """All per-query metrics at every cutoff.

    Args:
        topk: int64 ``[Q, K]`` retrieved item rows, ``-1`` = no result.
        rel_indptr: int64 ``[Q + 1]`` CSR offsets of the relevant sets.
        rel_items: int64 ``[nnz]`` relevant item rows.
        ks: cutoffs, each in ``[1, K]``.

    Returns:
        ``{"recall@k", "map@k", "ndcg@k", "mrr@k"}`` for each k in ``ks`` → float64 ``[Q]``.

    Raises:
        ValueError: a cutoff outside ``[1, K]``, or a query without relevant items.
    """
    width = np.shape(topk)[1] if np.ndim(topk) == 2 else 0
    bad = [k for k in ks if not 1 <= int(k) <= width]
    if bad:
        raise ValueError(f"cutoffs {bad} are outside [1, {width}] (the number of retrieved items)")
    hits, n_rel = _hits_and_counts(topk, rel_indptr, rel_items)
    if (n_rel == 0).any():
        raise ValueError(f"{int((n_rel == 0).sum())} queries have no relevant item; drop them first")
    return {f"{name}@{int(k)}": fn(hits, n_rel, int(k)) for k in ks for name, fn in _FUNCS.items()}


def summarize(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-query metric.

    Args:
        per_query: name → float ``[Q]``.

    Returns:
        name → mean (NaN for an empty array).
    """
    return {k: float(np.mean(v)) if np.size(v) else float("nan") for k, v in per_query.items()}


def _bootstrap_means(b: np.ndarray, t: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired resampled means: float64 ``[n_boot]`` each, chunked so memory stays bounded.

    Every replicate draws Q query indices with replacement and uses them for both arrays.
    """
    rng = np.random.default_rng(seed)
    q = len(b)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // q)
    mb, mt = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, q, size=(stop - start, q))
        mb[start:stop] = b[idx].mean(axis=1)
        mt[start:stop] = t[idx].mean(axis=1)
    return mb, mt


def paired_bootstrap_ci(baseline: np.ndarray, treatment: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, float]:
    """Relative improvement of treatment over baseline with a paired percentile bootstrap.

    Replicates resample the *same* query indices for both arrays (the runs were evaluated on the
    same queries), which removes the between-query variance from the comparison. Memory is
    bounded (chunks of ~4M resampled indices), so Q up to 1e6 works. Deterministic given ``seed``.

    Args:
        baseline: float ``[Q]`` per-query metric of the baseline run.
        treatment: float ``[Q]`` the same metric, same queries in the same order.
        n_boot: number of bootstrap replicates.
        seed: seed of the resampling.
        level: two-sided confidence level of the interval.

    Returns:
        ``relative``: mean(t) / mean(b) − 1 (NaN when mean(b) == 0); ``low``, ``high``: the
        (1 − level)/2 and (1 + level)/2 percentiles of the replicates' relative improvement;
        ``p_value``: the share of replicates with relative ≤ 0 — a ONE-sided bootstrap p-value for
        "treatment is better than baseline" (small = confident improvement; close to 1 = confident
        regression; for a two-sided test use 2 · min(p, 1 − p)). Replicates whose baseline mean is
        0 are undefined and left out; with none left, all but ``relative`` are NaN.

    Raises:
        ValueError: mismatched or empty arrays, n_boot < 1, level outside (0, 1).
    """
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    t = np.asarray(treatment, dtype=np.float64).reshape(-1)
    if b.shape != t.shape or not len(b):
        raise ValueError(f"baseline {b.shape} and treatment {t.shape} need the same non-empty [Q] shape")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    point = float(t.mean() / b.mean() - 1.0) if b.mean() != 0 else float("nan")
    mb, mt = _bootstrap_means(b, t, n_boot, seed)
    return _interval(point, mb, mt, level)


def _interval(point: float, mb: np.ndarray, mt: np.ndarray, level: float) -> dict[str, float]:
    """Percentile interval and one-sided p-value of the replicates' relative improvement."""
    ok = mb != 0
    rel = mt[ok] / mb[ok] - 1.0
    if not len(rel):
        return {"relative": point, "low": float("nan"), "high": float("nan"), "p_value": float("nan")}
    low, high = np.quantile(rel, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return {"relative": point, "low": float(low), "high": float(high), "p_value": float(np.mean(rel <= 0.0))}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of e.g. one metric over seeds.

    Args:
        values: ``[n]`` with n >= 1.

    Returns:
        ``(mean, std)``; std is 0.0 for a single value.

    Raises:
        ValueError: on an empty sequence.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not len(v):
        raise ValueError("mean_std needs at least one value")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def seeds_bootstrap_ci(baseline: np.ndarray, treatment: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> dict[str, float]:
    """Relative improvement of a treatment over a baseline, both trained with several seeds.

    Each replicate resamples the queries (paired: the same indices for both arms) and, for each arm
    independently, its seeds — so the interval covers both the test-set variance and the
    run-to-run variance of training, not the queries alone.

    Args:
        baseline: float ``[S_b, Q]`` per-query metric of each baseline seed.
        treatment: float ``[S_t, Q]`` the same metric and queries for each treatment seed.

    Returns:
        As :func:`paired_bootstrap_ci`: ``relative`` (of the seed-and-query means), ``low``,
        ``high`` and the one-sided ``p_value`` (share of replicates with relative <= 0).
    """
    b = np.atleast_2d(np.asarray(baseline, dtype=np.float64))
    t = np.atleast_2d(np.asarray(treatment, dtype=np.float64))
    if b.shape[1] != t.shape[1] or not b.size or not t.size:
        raise ValueError(f"baseline {b.shape} and treatment {t.shape} need the same non-empty query axis")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    point = float(t.mean() / b.mean() - 1.0) if b.mean() != 0 else float("nan")
    rng = np.random.default_rng(seed)
    q = b.shape[1]
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // q)
    mb, mt = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        n = min(n_boot, start + chunk) - start
        idx = rng.integers(0, q, size=(n, q))
        for arm, out in ((b, mb), (t, mt)):
            weights = rng.multinomial(len(arm), np.full(len(arm), 1.0 / len(arm)), size=n) / len(arm)
            out[start:start + n] = np.take_along_axis(weights @ arm, idx, axis=1).mean(axis=1)
    return _interval(point, mb, mt, level)


def paired_seeds_bootstrap_ci(baseline: np.ndarray, treatment: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                              level: float = 0.95) -> dict[str, float]:
    """Relative improvement of a treatment over a baseline trained with the *same* seeds, paired.

    Row s of both arrays is seed s: the same initialization and batch order in both arms, so the
    comparison is paired twice. Each replicate draws S seed indices with replacement (the same
    ones for both arms) and Q query indices with replacement (the same ones for both arms and every
    drawn seed), and takes the relative change of the means.

    With few seeds a percentile interval is too narrow (resampling 5 values underestimates their
    spread, and the seed mean is t- not normally distributed), so the interval is *expanded*
    (Hesterberg 2015): its half-widths are multiplied by sqrt(n/(n−1))·t_df/z, where df is the
    Welch–Satterthwaite degrees of freedom of the seed and query variance components of the
    per-query differences and n = df + 1. With many seeds, or when queries dominate, the factor
    is ~1; with 5 seeds whose shifts dominate, it is ~1.6. The bootstrap counts the seed×query
    interaction twice, so the interval errs on the wide side; `null_false_positive_rate` measures
    its false-positive rate on real runs.

    Args:
        baseline: float ``[S, Q]`` per-query metric of each baseline seed.
        treatment: float ``[S, Q]`` the same metric, queries and seed order for the treatment.
        n_boot: number of bootstrap replicates.
        seed: seed of the resampling.
        level: two-sided confidence level of the interval.

    Returns:
        ``relative`` (mean(t) / mean(b) − 1 over seeds and queries), ``low``, ``high`` (the expanded
        interval; ``low`` no lower than −1 when both arrays are non-negative), ``p_value`` (ONE-sided: the share of replicates with relative <= 0; small =
        confident improvement; before expansion), ``seeds`` (S), ``df`` and ``expansion`` (the factor).

    Raises:
        ValueError: shapes differ or are empty, n_boot < 1, level outside (0, 1).
    """
    b = np.atleast_2d(np.asarray(baseline, dtype=np.float64))
    t = np.atleast_2d(np.asarray(treatment, dtype=np.float64))
    if b.shape != t.shape or not b.size or b.ndim != 2:
        raise ValueError(f"baseline {b.shape} and treatment {t.shape} need the same non-empty [S, Q] shape "
                         "(row s = seed s in both)")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    s, q = b.shape
    point = float(t.mean() / b.mean() - 1.0) if b.mean() != 0 else float("nan")
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // q)
    mb, mt = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        n = min(n_boot, start + chunk) - start
        weights = rng.multinomial(s, np.full(s, 1.0 / s), size=n) / s  # (n, S): the same seeds for both arms
        idx = rng.integers(0, q, size=(n, q))  # (n, Q): the same queries for both arms
        for arm, out in ((b, mb), (t, mt)):
            out[start:start + n] = np.take_along_axis(weights @ arm, idx, axis=1).mean(axis=1)
    res = _interval(point, mb, mt, level)
    df = satterthwaite_df(t - b)
    k = expansion_factor(df, level)
    if np.isfinite(point):
        res["low"], res["high"] = point - k * (point - res["low"]), point + k * (res["high"] - point)
        if (b >= 0).all() and (t >= 0).all():  # a non-negative metric cannot fall by more than 100%
            res["low"] = max(res["low"], -1.0)
    return {**res, "seeds": s, "df": df, "expansion": k}


def satterthwaite_df(diff: np.ndarray) -> float:
    """Welch–Satterthwaite degrees of freedom of the mean of a seeds × queries matrix.

    The variance of the grand mean has a seed part V_s = var(seed means)/S and a query part
    V_q = var(query means)/Q; df = (V_s + V_q)² / (V_s²/(S−1) + V_q²/(Q−1)): ≈ S − 1 when seeds
    dominate, ≈ Q − 1 when queries do.

    Args:
        diff: float ``[S, Q]`` (e.g. treatment − baseline per seed and query).

    Returns:
        df > 0 (``inf`` when both parts are 0).
    """
    d = np.atleast_2d(np.asarray(diff, dtype=np.float64))
    s, q = d.shape
    vs = d.mean(axis=1).var(ddof=1) / s if s > 1 else 0.0
    vq = d.mean(axis=0).var(ddof=1) / q if q > 1 else 0.0
    denom = (vs * vs / (s - 1) if s > 1 else 0.0) + (vq * vq / (q - 1) if q > 1 else 0.0)
    return float((vs + vq) ** 2 / denom) if denom > 0 else float("inf")


def expansion_factor(df: float, level: float = 0.95) -> float:
    """sqrt(n/(n−1))·t_df/z for n = df + 1: widens a percentile interval to a small-sample one."""
    from statistics import NormalDist

    if not np.isfinite(df) or df > 1e6:
        return 1.0
    p = (1.0 + level) / 2.0
    return float(np.sqrt((df + 1.0) / df) * t_quantile(p, df) / NormalDist().inv_cdf(p))


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with (possibly fractional) df > 0, for 0.5 <= p < 1.

    Bisection on the CDF, which is integrated from the density with Simpson's rule (4,000
    panels): ~1e-6 absolute, enough for interval widths (t(0.975, 4) = 2.7764).
    """
    import math

    if not 0.5 <= p < 1.0 or not df > 0:
        raise ValueError(f"need 0.5 <= p < 1 and df > 0, got p={p}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        xs = np.linspace(0.0, x, 4001)
        pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(xs * xs / df))
        simpson = (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum()) * (x / 4000) / 3
        return 0.5 + float(simpson)

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def null_false_positive_rate(runs: np.ndarray, *, arm_size: int | None = None, max_splits: int = 200,
                             n_boot: int = 500, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """How often :func:`paired_seeds_bootstrap_ci` calls a difference where there is none.

    ``runs`` are N runs of one and the same setting (different seeds): every difference between
    two groups of them is noise. Each replicate splits them into two disjoint pseudo-arms of
    ``arm_size`` runs, pairs them in order, and computes the interval; an interval that excludes
    0 is a false positive. All splits are used when there are at most ``max_splits``, else a seeded
    random sample. Pseudo-pairs do not share a seed, so they are less alike than real pairs: the
    measured rate is for intervals at least as wide as in a real comparison's noise.

    Args:
        runs: float ``[N, Q]`` per-query metric of N runs, N >= 4.
        arm_size: runs per pseudo-arm [N // 2].
        max_splits: most replicates.
        n_boot: bootstrap replicates per interval.
        level: the intervals' confidence level (the rate should be about 1 − level).
        seed: seed of the split sample and the bootstraps.

    Returns:
        ``runs``, ``arm_size``, ``replicates``, ``false_positives``, ``rate`` and ``nominal`` (1 − level).

    Raises:
        ValueError: fewer than 4 runs, or an arm size that does not fit twice.
    """
    import itertools
    import math

    x = np.atleast_2d(np.asarray(runs, dtype=np.float64))
    n = len(x)
    m = arm_size or n // 2
    if n < 4 or not 2 <= m <= n // 2:
        raise ValueError(f"need >= 4 runs and 2 <= arm_size <= N/2, got N={n}, arm_size={m}")
    total = math.comb(n, m) * math.comb(n - m, m) // 2
    rng = np.random.default_rng(seed)
    if total <= max_splits:
        splits = [(a, bb) for a in itertools.combinations(range(n), m)
                  for bb in itertools.combinations(sorted(set(range(n)) - set(a)), m) if a < bb]
    else:
        splits = []
        for _ in range(max_splits):
            perm = rng.permutation(n)
            splits.append((tuple(sorted(perm[:m])), tuple(sorted(perm[m:2 * m]))))
    hits = 0
    for i, (a, bb) in enumerate(splits):
        ci = paired_seeds_bootstrap_ci(x[list(bb)], x[list(a)], n_boot=n_boot, seed=seed + i, level=level)
        hits += bool(ci["low"] > 0 or ci["high"] < 0)
    return {"runs": n, "arm_size": m, "replicates": len(splits), "false_positives": hits,
            "rate": hits / len(splits), "nominal": 1.0 - level}
