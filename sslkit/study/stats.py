"""Study statistics: an interval that covers the tuning step, expected best score versus budget, Holm, exact
binomial intervals, the null check and the verdict rule. Pure numpy, no torch.

The arrays a study hands in are per-query metrics indexed ``[r, s, q]``: tuning replicate r (an independent
tuning run of the arm, with its own trial sequence and tuning seeds, ending in one pick), final seed s (the
pick retrained with a fresh seed, the same seeds in every arm), query q (the same test queries in every run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sslkit.evaluation.metrics import expansion_factor, satterthwaite_df

_CHUNK_ELEMENTS = 1 << 22  # query counts held at once by the bootstrap (~32 MiB float64)


def _check_level(n_boot: int, level: float) -> None:
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")


def _boot_weights(rng: np.random.Generator, r: int, s: int, n: int) -> np.ndarray:
    """Weights float ``[n, R*S]`` of one hierarchical draw each: R replicates with replacement, then S seeds
    with replacement inside each drawn replicate. Sum to 1 per row."""
    reps = rng.integers(0, r, size=(n, r))  # (n, R) drawn replicates
    seeds = rng.integers(0, s, size=(n, r, s))  # (n, R, S) seeds drawn inside each drawn replicate
    cell = (reps[:, :, None] * s + seeds).reshape(n, r * s)  # (n, R*S) flat (replicate, seed) index
    flat = (np.arange(n)[:, None] * (r * s) + cell).ravel()
    return np.bincount(flat, minlength=n * r * s).reshape(n, r * s) / (r * s)


def _query_weights(rng: np.random.Generator, q: int, n: int) -> np.ndarray:
    """Weights float ``[n, Q]``: Q queries drawn with replacement per row, as counts / Q."""
    idx = rng.integers(0, q, size=(n, q))
    flat = (np.arange(n)[:, None] * q + idx).ravel()
    return np.bincount(flat, minlength=n * q).reshape(n, q) / q


def _boot_means(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int,
                resample_replicates: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchically resampled means of two ``[R, S, Q]`` arrays, the same draw for both: float ``[n_boot]``.

    The statistic is linear in the resampled cells, so one draw is weights over (replicate, seed) times weights
    over queries: mean* = w_rs · X · w_q. X is ``[R*S, Q]``, so a chunk of draws costs one matmul.
    """
    r, s, q = x.shape
    rng = np.random.default_rng(seed)
    xf, yf = x.reshape(r * s, q), y.reshape(r * s, q)
    chunk = max(1, _CHUNK_ELEMENTS // q)
    mx, my = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        n = min(n_boot, start + chunk) - start
        w = _boot_weights(rng, r if resample_replicates else 1, s, n)  # (n, R'*S)
        if not resample_replicates:  # R == 1 here
            w = w.reshape(n, 1, s).repeat(r, axis=1).reshape(n, r * s) / r
        wq = _query_weights(rng, q, n)  # (n, Q): the same queries for every replicate, seed and arm
        mx[start:start + n] = ((wq @ xf.T) * w).sum(axis=1)  # (n, R*S) resampled query means, weighted
        my[start:start + n] = ((wq @ yf.T) * w).sum(axis=1)
    return mx, my


def hierarchical_paired_ci(base: np.ndarray, arm: np.ndarray, *, relative: bool = True, n_boot: int = 2000,
                           level: float = 0.95, seed: int = 0, expand: bool = True) -> dict:
    """Difference arm − baseline with an interval that covers the tuning step.

    Both arrays are paired on all three axes: replicate r of the arm was tuned at replicate r's backbone pick,
    seed s has the same initialization and batch order in both, and the queries are the same. One bootstrap
    draw resamples replicates (with replacement), then seeds inside each drawn replicate, then queries (one
    query draw shared by every replicate, seed and both arms, since the queries are one test set) — the same
    draw for both arms. Statistic: mean(arm) − mean(base) over the draw (relative: divided by mean(base)).

    Resampling 3 replicates underestimates their spread (the bootstrap variance of a mean of n values is
    (n − 1)/n of the sample's, and the mean of 3 is t- not normally distributed), so with ``expand`` the
    percentile interval's half-widths are multiplied by ``metrics.expansion_factor(df)`` (sqrt(n/(n−1))·t_df/z,
    n = df + 1), df the Welch–Satterthwaite degrees of freedom of the replicate and query components of the
    per-query differences (replicate means over seeds: ≈ R − 1 when replicates dominate, ≈ Q − 1 when queries
    do). With R == 1 the components are seeds and queries, as in ``metrics.paired_seeds_bootstrap_ci``. The
    two-stage bootstrap counts within-replicate variance twice, so the interval errs on the wide side.

    Args:
        base: float ``[R, S, Q]`` per-query metric of the baseline (``[S, Q]`` is read as R = 1).
        arm: float, the same shape and order.
        relative: divide the difference by mean(base) (a relative change; NaN when mean(base) == 0).
        n_boot: bootstrap draws.
        level: two-sided confidence level.
        seed: seed of the resampling (deterministic given it).
        expand: widen the interval by the small-sample factor above (off: the raw percentile interval).

    Returns:
        ``delta`` (the point estimate), ``ci`` ``[lo, hi]``, ``p`` (two-sided: 2·min(P(d* ≤ 0), P(d* ≥ 0)) over
        the draws, expanded about ``delta`` like the interval so ``p < 1 − level`` agrees with the interval
        excluding 0; at least 1/n_boot, at most 1), ``wins`` (replicates whose mean arm > mean base),
        ``replicates``, ``seeds``, ``queries``, ``resamples`` (what one draw resamples), ``df`` and
        ``expansion`` (the factor; 1.0 without ``expand``). Draws whose baseline mean is 0 are left out of a
        relative interval; with none left ``ci`` and ``p`` are NaN.

    Raises:
        ValueError: shapes differ, are empty or not 2-/3-D; n_boot < 1; level outside (0, 1).
    """
    b = np.asarray(base, dtype=np.float64)
    a = np.asarray(arm, dtype=np.float64)
    if b.ndim == 2 and a.ndim == 2:  # [S, Q]: one replicate
        b, a = b[None], a[None]
    if b.shape != a.shape or b.ndim != 3 or not b.size:
        raise ValueError(f"base {np.shape(base)} and arm {np.shape(arm)} need the same non-empty [R, S, Q] shape "
                         "(replicate r, seed s, query q paired in both)")
    _check_level(n_boot, level)
    r, s, q = b.shape
    mb, ma = _boot_means(b, a, n_boot, seed, resample_replicates=r > 1)
    d = a - b
    df = satterthwaite_df(d.mean(axis=1) if r > 1 else d[0])
    k = expansion_factor(df, level) if expand else 1.0
    if relative:
        point = float(a.mean() / b.mean() - 1.0) if b.mean() != 0 else float("nan")
        ok = mb != 0
        draws = ma[ok] / mb[ok] - 1.0
    else:
        point, draws = float(a.mean() - b.mean()), ma - mb
    wins = int((a.mean(axis=(1, 2)) > b.mean(axis=(1, 2))).sum())
    resamples = "replicates x seeds x queries" if r > 1 else "seeds x queries (1 replicate: tuning not covered)"
    out = {"delta": point, "ci": [float("nan"), float("nan")], "p": float("nan"), "wins": wins, "replicates": r,
           "seeds": s, "queries": q, "resamples": resamples, "df": df, "expansion": k}
    if not len(draws) or not np.isfinite(point):
        return out
    wide = point + k * (draws - point)  # the expanded bootstrap distribution
    lo, hi = np.quantile(wide, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    if relative and (b >= 0).all() and (a >= 0).all():  # a non-negative metric cannot fall by more than 100%
        lo = max(lo, -1.0)
    p = 2.0 * min(np.mean(wide <= 0.0), np.mean(wide >= 0.0))
    out["ci"], out["p"] = [float(lo), float(hi)], float(min(1.0, max(p, 1.0 / len(wide))))
    return out


def expected_max_curve(trials: np.ndarray, budgets: Sequence[int] | None = None, *,
                       level: float = 0.95) -> list[dict]:
    """Expected best validation score versus budget (Dodge et al. 2019, "Show Your Work"), for one arm.

    The expectation is the paper's: the best of n draws *with replacement* from the pooled empirical
    distribution of every replicate's trials, E[max_n] = Σ_i v_(i) · ((i/N)^n − ((i−1)/N)^n) over the N
    pooled values sorted ascending. The band is the spread of what the replicates actually got: the
    (1 − level)/2 and (1 + level)/2 quantiles (linear interpolation) over replicates of each replicate's own
    best-so-far after its first n trials — with fewer than ~40 replicates, close to their min and max.

    Args:
        trials: float ``[R, B]``: replicate r's validation scores in trial-sequence order; NaN = a failed
            trial (left out of the pool and of best-so-far). ``[B]`` is read as R = 1.
        budgets: the n to report, each in ``[1, B]`` [1 … B].
        level: coverage of the band.

    Returns:
        ``[{"budget": n, "expected_best": m, "lo": l, "hi": h}, ...]`` in ``budgets`` order; NaN where no
        trial (of the pool, or of any replicate's first n) succeeded.

    Raises:
        ValueError: an empty array, a budget outside [1, B], level outside (0, 1).
    """
    t = np.atleast_2d(np.asarray(trials, dtype=np.float64))
    if t.ndim != 2 or not t.size:
        raise ValueError(f"trials must be a non-empty [R, B] array, got shape {np.shape(trials)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"need 0 < level < 1, got {level}")
    n_trials = t.shape[1]
    ns = list(range(1, n_trials + 1)) if budgets is None else [int(n) for n in budgets]
    bad = [n for n in ns if not 1 <= n <= n_trials]
    if bad:
        raise ValueError(f"budgets {bad} are outside [1, {n_trials}] (the trials per replicate)")
    pool = np.sort(t[np.isfinite(t)])
    big = len(pool)
    frac = np.arange(big + 1, dtype=np.float64) / max(big, 1)  # (N + 1,) i/N for i = 0 … N
    filled = np.where(np.isfinite(t), t, -np.inf)
    best = np.maximum.accumulate(filled, axis=1)  # (R, B) best-so-far
    best[~np.isfinite(best)] = np.nan
    out = []
    for n in ns:
        m = float(pool @ np.diff(frac ** n)) if big else float("nan")
        col = best[:, n - 1]
        if np.isfinite(col).any():
            lo, hi = np.nanquantile(col, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
        else:
            lo = hi = float("nan")
        out.append({"budget": n, "expected_best": m, "lo": float(lo), "hi": float(hi)})
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    With the m finite p-values sorted ascending, p_(j) becomes max over i ≤ j of min(1, (m − i + 1)·p_(i)):
    monotone in p and capped at 1. A comparison is significant at family-wise level α when its adjusted p < α.

    Args:
        pvalues: the family's p-values; NaN (an undefined comparison) stays NaN and is not counted in m.

    Returns:
        The adjusted p-values, one per input, in the input order.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(scaled)
    return [float(v) for v in out]


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), summed in log space (exact to float rounding for any n)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    i = np.arange(k + 1, dtype=np.float64)
    logc = math.lgamma(n + 1) - np.array([math.lgamma(v + 1) + math.lgamma(n - v + 1) for v in i])
    terms = logc + i * math.log(p) + (n - i) * math.log1p(-p)
    top = terms.max()
    return float(min(1.0, math.exp(top) * np.exp(terms - top).sum()))


def _solve(f, target: float) -> float:
    """p in [0, 1] where the decreasing function f(p) crosses ``target`` (bisection to ~1e-15)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if f(mid) > target else (lo, mid)
    return (lo + hi) / 2.0


def binomial_ci(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson (exact) interval for k successes out of n.

    The lower bound solves P(X ≥ k | p) = (1 − level)/2 (0 when k = 0), the upper P(X ≤ k | p) = (1 − level)/2
    (1 when k = n); X ~ Binomial(n, p). Computed by bisection on the binomial CDF, no scipy.

    Args:
        k: successes, 0 ≤ k ≤ n.
        n: trials, n ≥ 1.
        level: two-sided coverage (at least this, being exact-conservative).

    Returns:
        ``(lo, hi)``.

    Raises:
        ValueError: k outside [0, n], n < 1, level outside (0, 1).
    """
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n or not 0.0 < level < 1.0:
        raise ValueError(f"need n >= 1, 0 <= k <= n and 0 < level < 1, got k={k}, n={n}, level={level}")
    tail = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else _solve(lambda p: _binom_cdf(k - 1, n, p), 1.0 - tail)  # P(X ≥ k) = tail
    hi = 1.0 if k == n else _solve(lambda p: _binom_cdf(k, n, p), tail)
    return lo, hi


def null_check(runs: np.ndarray, *, block: int, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
               replicates: int = 1, relative: bool = True) -> dict:
    """False-positive rate of the study's interval on baseline-vs-baseline comparisons from disjoint blocks.

    ``runs`` are N runs of one setting, so every difference between two groups of them is noise. The runs are
    cut into consecutive disjoint blocks of ``block`` runs and block 2i is compared with block 2i + 1 by
    :func:`hierarchical_paired_ci`, each block read as ``[replicates, block // replicates, Q]`` (run j of a
    block is replicate j // S, seed j % S); an interval that excludes 0 is a false positive. Runs left over
    (fewer than two whole blocks) are not used. The comparisons share no run, so they are independent and
    the count is binomial: the rate comes with its Clopper–Pearson interval.

    Args:
        runs: float ``[N, Q]`` per-query metric of N runs of one setting, the same queries in each.
        block: runs per side of a comparison, a multiple of ``replicates``.
        n_boot: bootstrap draws per interval.
        level: the intervals' level (a calibrated interval has a rate near 1 − level).
        seed: comparison i uses seed + i.
        replicates: R of each block (1: the block's runs are seeds of one pick).
        relative: as in :func:`hierarchical_paired_ci`.

    Returns:
        ``comparisons``, ``false_positives``, ``rate``, ``ci`` (binomial, at ``level``), ``block``,
        ``replicates``, ``runs_used``, ``nominal`` (1 − level) and ``note`` (what it can and cannot show).

    Raises:
        ValueError: fewer than two blocks of runs, or a block that is not a multiple of ``replicates``.
    """
    x = np.atleast_2d(np.asarray(runs, dtype=np.float64))
    n = len(x)
    if block < 1 or replicates < 1 or block % replicates or n < 2 * block:
        raise ValueError(f"need block >= 1, a multiple of replicates={replicates}, and at least 2 blocks; "
                         f"got N={n} runs, block={block}")
    shape = (replicates, block // replicates, x.shape[1])
    pairs = n // (2 * block)
    fp = 0
    for i in range(pairs):
        a = x[2 * i * block:(2 * i + 1) * block].reshape(shape)
        b = x[(2 * i + 1) * block:(2 * i + 2) * block].reshape(shape)
        ci = hierarchical_paired_ci(b, a, relative=relative, n_boot=n_boot, level=level, seed=seed + i)["ci"]
        fp += bool(ci[0] > 0 or ci[1] < 0)
    note = ("Disjoint blocks of runs of one setting: every difference is noise, so the rate estimates how "
            "often the interval calls a difference that is not there, on this data, with a binomial interval "
            "as wide as the few comparisons allow. It cannot show power (whether a real difference is found), "
            "nor coverage for other data or budgets. Paired runs here do not share a seed as a real pair does, so "
            "the noise measured is that of unpaired runs, larger than a paired comparison's.")
    return {"comparisons": pairs, "false_positives": fp, "rate": fp / pairs, "ci": list(binomial_ci(fp, pairs,
            level=level)), "block": block, "replicates": replicates, "runs_used": 2 * pairs * block,
            "nominal": 1.0 - level, "note": note}


def verdict(ci: Sequence[float], p_holm: float | None = None, *, alpha: float = 0.05) -> str:
    """The study's word for one comparison.

    Args:
        ci: ``[lo, hi]`` of the difference arm − baseline.
        p_holm: the comparison's Holm-adjusted p-value, when the study declared a family.
        alpha: family-wise error rate.

    Returns:
        ``"helps"`` when lo > 0, ``"hurts"`` when hi < 0 — in both cases only if ``p_holm`` is None or below
        ``alpha`` — else ``"no detectable difference"`` (NaN bounds included).
    """
    lo, hi = float(ci[0]), float(ci[1])
    if p_holm is not None and not float(p_holm) < alpha:
        return "no detectable difference"
    if lo > 0:
        return "helps"
    if hi < 0:
        return "hurts"
    return "no detectable difference"
