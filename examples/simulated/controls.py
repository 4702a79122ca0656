#!/usr/bin/env python
"""SIMULATED catalogs with a known feature–engagement mechanism: the positive and negative controls.

    python examples/simulated/controls.py --control positive      # data/positive/: 3,000 items, 40,000 pairs
    python examples/simulated/controls.py --control negative      # data/negative/: same shapes, features blind
    python examples/simulated/controls.py --control positive --items 50000 --pairs 2000000 --out /tmp/big

Each item has a unit latent vector z (dimension `dim`). Its features are drawn from z: every feature
has its own random projection of z (features of one group share most of it, so they correlate and
CFM masks them together) and its own random codebook; a categorical feature's value is the codeword
nearest to the noisy projection, a multi-valued feature's values are its few nearest codewords.
`noise` scales the projection noise (0: the features pin z down; large: they say nothing).

Engagement comes from a second latent e. A pair (q, j) is drawn with q ∝ pop_q and
P(j | q) ∝ pop_j · exp(kappa · e_q·e_j), j ≠ q; popularity is log-normal and correlated with e
(`pop_corr`), so it is heavy-tailed and predictable from whatever carries e.
  positive control: e = z — the features carry engagement (tail and cold items can be placed by them);
  negative control: e drawn independently of z — the features carry nothing about engagement.
A share `cold` of the catalog is *new*: born late in the log (uniform in the last 25% of time), they
have no pair before their birth, so a time split leaves most of them out of training while the
validation and test windows still engage them. Pair times are uniform after both items' births.

Written under `<out>/`: `items.parquet`, `pairs.parquet`, `truth.npz` (z, e, popularity, births,
kappa: what `oracles.py` needs for the Bayes-optimal and content-only rankers) and `schema.yaml`.
Identical arguments give identical files. Every result on these catalogs is labelled *simulated*.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent


class Feature(NamedTuple):
    name: str
    group: int  # features of a group share most of their projection of z (-1: independent of z)
    values: int  # codebook size
    max_values: int  # 1 = categorical; > 1 = multi-valued (1..max_values nearest codewords)


FEATURES = (
    Feature("category", 0, 12, 1),
    Feature("style", 0, 40, 1),
    Feature("keywords", 0, 120, 5),
    Feature("brand", 1, 150, 1),
    Feature("tags", 1, 80, 4),
    Feature("material", 1, 30, 1),
    Feature("color", -1, 16, 1),  # pure noise: a feature that carries nothing
)
PROJ_DIM = 4  # each feature's projection of z
GROUP_SHARE = 0.8  # how much of a feature's projection is its group's (the rest its own)

SCHEMA = """\
# sslkit schema — SIMULATED {control} control (examples/simulated/controls.py; {note}).
# {items:,} items with a latent vector each; {pairs:,} item-to-item co-engagement pairs drawn from it.
name: simulated_{control}
interactions:
  path: pairs.parquet
  query: query_item
  item: item_id
  time: ts
queries:
  kind: item
items:
  path: items.parquet
  id: item_id
  features:
    item_id: {{type: categorical}}
{features}
split:
  method: time                # the latest 10% of the log is test; the 10% of training before it validation
  test_fraction: 0.1
  validation_fraction: 0.1
"""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _features(z: np.ndarray, noise: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Feature columns drawn from the latent z (N, dim): nearest codewords to noisy projections."""
    n, dim = z.shape
    groups = rng.normal(size=(2, dim, PROJ_DIM))
    cols: dict[str, np.ndarray] = {}
    for f in FEATURES:
        if f.group < 0:
            x = rng.normal(size=(n, PROJ_DIM))
        else:
            proj = np.sqrt(GROUP_SHARE) * groups[f.group] + np.sqrt(1 - GROUP_SHARE) * rng.normal(size=(dim, PROJ_DIM))
            x = z @ proj
            x = x + noise * x.std() * rng.normal(size=x.shape)
        code = rng.normal(size=(f.values, PROJ_DIM)) * x.std(axis=0)
        dist = (x**2).sum(1)[:, None] - 2 * x @ code.T + (code**2).sum(1)[None]  # (N, K)
        width = max(1, f.max_values)
        near = np.argsort(dist, axis=1)[:, :width]  # (N, width) nearest first
        names = np.char.add(f"{f.name[:3]}", np.arange(f.values).astype(str))
        if f.max_values == 1:
            cols[f.name] = names[near[:, 0]]
        else:
            k = rng.integers(1, f.max_values + 1, n)
            frame = pl.DataFrame({"v": names[near].tolist(), "k": k})
            cols[f.name] = frame.select(pl.col("v").list.head(pl.col("k")).list.join("|")).to_series().to_numpy()
    return cols


def _draw_targets(query: np.ndarray, e: np.ndarray, log_pop: np.ndarray, kappa: float,
                  rng: np.random.Generator, block: int = 512) -> np.ndarray:
    """One target per query from P(j | q) ∝ pop_j exp(kappa e_q·e_j), j ≠ q (inverse CDF per block of
    distinct queries)."""
    uq, inv = np.unique(query, return_inverse=True)
    target = np.empty(len(query), np.int64)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uq) + 1))
    for s in range(0, len(uq), block):
        qs = uq[s:s + block]
        logit = kappa * e[qs] @ e.T + log_pop[None]  # (b, N)
        logit[np.arange(len(qs)), qs] = -np.inf
        p = np.exp(logit - logit.max(1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        for r in range(len(qs)):  # a loop over distinct queries only; the draws are vectorized
            rows = order[bounds[s + r]:bounds[s + r + 1]]
            target[rows] = np.minimum(np.searchsorted(cdf[r], rng.random(len(rows)), side="right"), len(e) - 1)
    return target


def make_control(control: str = "positive", *, items: int = 3000, pairs: int = 40_000, dim: int = 8,
                 noise: float = 0.3, kappa: float = 6.0, pop_sigma: float = 1.5, pop_corr: float = 0.6,
                 cold: float = 0.15, seed: int = 0) -> tuple[dict[str, pl.DataFrame], dict[str, np.ndarray]]:
    """The tables and the truth behind them.

    Args:
        control: positive (engagement latent = feature latent) | negative (independent latents).
        items, pairs: catalog size and number of item-to-item pairs.
        dim: latent dimension.
        noise: projection noise relative to the projection's scale.
        kappa: sharpness of P(j | q) in the engagement latent.
        pop_sigma: log-normal popularity's scale (heavier tail when larger).
        pop_corr: correlation of log popularity with a direction of the engagement latent.
        cold: share of the catalog born in the last 20% of the log.
        seed: random seed.

    Returns:
        ({"items", "pairs"}, truth arrays: z, e, log_pop, birth, kappa).
    """
    if control not in ("positive", "negative"):
        raise ValueError(f"control must be positive or negative, not {control!r}")
    rng_z, rng_f, rng_e, rng_p = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    z = _unit(rng_z.normal(size=(items, dim)))
    cols = _features(z, noise, rng_f)
    e_indep = _unit(rng_e.normal(size=(items, dim)))  # drawn in both controls: same streams
    e = z if control == "positive" else e_indep
    w = _unit(rng_e.normal(size=(1, dim)))[0]
    s = e @ w
    log_pop = pop_sigma * (pop_corr * s / s.std() + np.sqrt(1 - pop_corr**2) * rng_e.normal(size=items))
    birth = np.zeros(items)
    new = rng_e.permutation(items)[: int(round(cold * items))]
    birth[new] = rng_e.uniform(0.75, 1.0, len(new))
    pop = np.exp(log_pop - log_pop.max())
    query = np.searchsorted(np.cumsum(pop) / pop.sum(), rng_p.random(pairs), side="right").clip(0, items - 1)
    target = _draw_targets(query, e, log_pop, kappa, rng_p)
    start = np.maximum(birth[query], birth[target])
    t = start + (1 - start) * rng_p.random(pairs)
    order = np.argsort(t, kind="stable")
    ids = np.char.add("i", np.char.zfill(np.arange(items).astype(str), len(str(items - 1))))
    items_df = pl.DataFrame({"item_id": ids, **cols})
    pairs_df = pl.DataFrame({"query_item": ids[query[order]], "item_id": ids[target[order]],
                             "ts": (t[order] * 1e7).astype(np.int64)})
    truth = {"ids": ids, "z": z, "e": e, "log_pop": log_pop, "birth": birth, "kappa": np.float64(kappa),
             "noise": np.float64(noise)}
    return {"items": items_df, "pairs": pairs_df}, truth


def feature_matrix(items: pl.DataFrame) -> np.ndarray:
    """Multi-hot of every feature but the id, each feature's row summing to 1: float (N, V)."""
    blocks = []
    for f in FEATURES:
        vals = items[f.name].str.split("|")
        flat = vals.explode()
        codes, uniq = np.unique(flat.to_numpy().astype(str), return_inverse=True)
        rows = np.repeat(np.arange(items.height), vals.list.len().to_numpy())
        m = np.zeros((items.height, len(codes)))
        np.add.at(m, (rows, uniq), 1.0)
        blocks.append(m / m.sum(1, keepdims=True))
    return np.concatenate(blocks, axis=1)


def crossfit_ridge(x: np.ndarray, y: np.ndarray, *, lam: float = 3.0, folds: int = 5,
                   seed: int = 0) -> tuple[np.ndarray, float]:
    """Out-of-fold ridge predictions of y (N, d) from x (N, V) with an intercept, and their R²:
    each item's prediction comes from a fit on the other folds (what its features say about y)."""
    y = y.reshape(len(y), -1)
    fold = np.random.default_rng(seed).permutation(len(x)) % folds
    pred = np.empty_like(y, dtype=np.float64)
    for k in range(folds):
        fit, out = fold != k, fold == k
        xm, ym = x[fit].mean(0), y[fit].mean(0)
        xc = x[fit] - xm
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y[fit] - ym))
        pred[out] = (x[out] - xm) @ w + ym
    return pred, float(1 - ((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def schema_text(control: str, items: int, pairs: int) -> str:
    lines = []
    for f in FEATURES:
        spec = "{type: categorical}" if f.max_values == 1 else f'{{type: multi_categorical, separator: "|", max_len: {f.max_values}}}'
        lines.append(f"    {f.name}: {spec}")
    note = ("features drawn from the latent that drives engagement" if control == "positive"
            else "features drawn from a latent independent of engagement")
    return SCHEMA.format(control=control, note=note, items=items, pairs=pairs, features="\n".join(lines))


def write(out: Path, control: str, **kw: float) -> dict[str, Path]:
    """Generate one control into `out` (created); returns the written paths."""
    tables, truth = make_control(control, **kw)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.parquet" for name in tables}
    for name, df in tables.items():
        df.write_parquet(paths[name])
    paths["truth"] = out / "truth.npz"
    np.savez(paths["truth"], **truth)
    paths["schema"] = out / "schema.yaml"
    paths["schema"].write_text(schema_text(control, tables["items"].height, tables["pairs"].height))
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--control", choices=("positive", "negative"), default="positive")
    ap.add_argument("--out", type=Path, help="output dir (default: examples/simulated/data/CONTROL)")
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--kappa", type=float, default=6.0)
    ap.add_argument("--pop-sigma", type=float, default=1.5)
    ap.add_argument("--pop-corr", type=float, default=0.6)
    ap.add_argument("--cold", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = a.out or HERE / "data" / a.control
    write(out, a.control, items=a.items, pairs=a.pairs, dim=a.dim, noise=a.noise, kappa=a.kappa,
          pop_sigma=a.pop_sigma, pop_corr=a.pop_corr, cold=a.cold, seed=a.seed)
    print(f"wrote the {a.control} control ({a.items:,} items, {a.pairs:,} pairs, simulated) to {out} "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
