"""Comparing study groups: mean ± std per group, paired intervals against the baseline, slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sslkit.data import io
from sslkit.errors import ConfigError

from sslkit.study.spec import CI_PAIRED, CI_UNPAIRED, REPORTED
from sslkit.study.cells import CellResult


def group_row(name: str, values: dict[str, Any], got: list[CellResult]) -> dict[str, Any]:
    """mean ± std over the seeds of one group, its slices, TopPopular and mean training time."""
    from sslkit.evaluation.metrics import mean_std

    row: dict[str, Any] = {"group": name, "values": values, "seeds": len(got), "runs": [str(r.cell.dir) for r in got]}
    if not got:
        return row
    names = [m for m in got[0].eval["metrics"] if m.split("@")[0] in REPORTED]
    row["metrics"] = {m: dict(zip(("mean", "std"), mean_std([r.eval["metrics"][m] for r in got]))) for m in names}
    row["slices"] = {s: {"pairs": got[0].eval["slices"][s]["pairs"],
                         **{m: mean_std([r.eval["slices"][s][m] for r in got])[0]
                            for m in names if m in got[0].eval["slices"][s]}}
                     for s in got[0].eval["slices"]}
    row["toppop"] = got[0].eval["toppop"]
    row["train_seconds"] = float(np.mean([io.read_json(Path(r.cell.dir) / "summary.json")["train_seconds"] for r in got]))
    return row


def versus(base: list[CellResult], got: list[CellResult], *, n_boot: int, key: str = "vs_baseline") -> dict[str, Any]:
    """Relative change vs `base` with 95% CIs: paired by seed when the two share seeds."""
    from sslkit.evaluation.metrics import paired_seeds_bootstrap_ci, seeds_bootstrap_ci

    _same_queries(base[0], got[0])
    names = [m for m in got[0].per_query if m.split("@")[0] in REPORTED]
    by_seed_b = {r.cell.cfg.train.seed: r for r in base}
    by_seed_t = {r.cell.cfg.train.seed: r for r in got}
    common = sorted(set(by_seed_b) & set(by_seed_t))
    if common:
        ci = {m: paired_seeds_bootstrap_ci(np.stack([by_seed_b[s].per_query[m] for s in common]),
                                           np.stack([by_seed_t[s].per_query[m] for s in common]), n_boot=n_boot)
              for m in names}
    else:
        ci = {m: seeds_bootstrap_ci(np.stack([b.per_query[m] for b in base]), np.stack([r.per_query[m] for r in got]),
                                    n_boot=n_boot) for m in names}
    slices = {s: {m: _rel(np.mean([r.eval["slices"][s].get(m, np.nan) for r in got]),
                          np.mean([b.eval["slices"][s].get(m, np.nan) for b in base])) for m in names}
              for s in got[0].eval["slices"]}
    out = {key: ci, f"{key}_slices": slices, f"{key}_paired_seeds": common,
           f"{key}_ci": CI_PAIRED if common else CI_UNPAIRED}
    if common and all(by_seed_b[s].slice_per_query and by_seed_t[s].slice_per_query for s in common):
        out[f"{key}_slices_ci"] = slice_cis([by_seed_b[s] for s in common], [by_seed_t[s] for s in common],
                                            names, n_boot=n_boot)
    return out


def slice_cis(base: list[CellResult], got: list[CellResult], names: list[str], *, n_boot: int) -> dict[str, Any]:
    """Per slice (head / tail / cold): the paired seeds-and-queries interval of the relative change,
    over the queries that have pairs in the slice (each query's metric on those pairs alone; the
    same queries in every run, since the slices come from the shared training split)."""
    from sslkit.evaluation.metrics import paired_seeds_bootstrap_ci

    out: dict[str, Any] = {}
    for sl in got[0].slice_per_query:
        if any(sl not in r.slice_per_query for r in base + got):
            continue
        out[sl] = {}
        for m in names:
            if m not in got[0].slice_per_query[sl]:
                continue
            b = np.stack([r.slice_per_query[sl][m] for r in base])
            t = np.stack([r.slice_per_query[sl][m] for r in got])
            keep = ~np.isnan(b).any(0) & ~np.isnan(t).any(0)
            if keep.any() and b[:, keep].mean() > 0:  # a relative change of a zero mean is undefined
                out[sl][m] = paired_seeds_bootstrap_ci(b[:, keep], t[:, keep], n_boot=n_boot) | {"queries": int(keep.sum())}
    return out


def _rel(t: float, b: float) -> float | None:
    return None if not np.isfinite(b) or b == 0 or not np.isfinite(t) else float(t / b - 1)


def _same_queries(a: CellResult, b: CellResult) -> None:
    if not np.array_equal(a.queries, b.queries):
        raise ConfigError(f"{a.cell.dir} and {b.cell.dir} were evaluated on different test queries",
                          hint="a grid key changed the split; keep split.* out of the grid")
