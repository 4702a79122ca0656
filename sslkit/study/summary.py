"""A tuning study's summary (`kind: "study"`), the JSON that `sslkit report` renders.

Its keys are an agreement with the report: the protocol in words, the selection (split, metric,
budget, replicates, tuning and final seeds), each arm's stage, space and per-replicate picks, every
trial's validation scores and stopping step, budget curves (expected best validation score vs
budget), each arm's finals on test, the comparisons with the baseline (an interval over tuning
replicates × final seeds × queries, "wins" in x of R replicates, Holm over arms × headline metric,
a verdict), slices (absolute differences; relative only where the baseline's slice value ≥ 0.05),
TopPopular and warnings, the null check on disjoint blocks, stopping steps and the preregistration.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sslkit.data import io
from sslkit.study.cells import CellResult
from sslkit.study.compare import group_row
from sslkit.study.spec import REPORTED, Cell, Sweep
from sslkit.study.tuning import (SEQUENCE, later_cells, pick_of, pick_values, preregistration, space_size,
                                 ssl_trials, update_picks)

SLICE_RELATIVE_MIN = 0.05  # a slice's relative change is reported only where the baseline's value is at least this


def protocol_text(sweep: Sweep) -> str:
    spec, tune = sweep.spec, sweep.spec.tune
    assert tune is not None
    common = (f"Trials are the first B distinct points of one seeded scrambled Sobol sequence per (arm, replicate), "
              f"so a larger budget keeps the smaller one's trials; each of {tune.replicates} tuning replicates has its "
              f"own sequence and trains its trials with its own seed ({', '.join(map(str, tune.seeds or []))}); every "
              f"trial is scored on the validation split (carved from the training pairs) and each replicate's pick is "
              f"its best trial by validation {tune.metric}. Each replicate's picks then train with the final seeds "
              f"{spec.seeds} (disjoint from every tuning seed) and are scored once on the test split. The interval of "
              "a comparison resamples tuning replicates, final seeds and queries, so it covers the tuning step.")
    if tune.search == "successive-halving":
        common += (" Search: successive halving (eta 3) by training steps: each (arm, replicate)'s trials start at "
                   "a third (or ninth, ...) of train.steps, the best third of each rung is trained on to 3x the "
                   "steps from its checkpoint, and the pick is the last rung's best, trained in full; every arm "
                   "with the same budget spends the same compute.")
    if spec.protocol == "two-stage":
        bb = sweep.arms[str(spec.baseline)]
        return (f"Two-stage tuning (the paper's protocol). Stage 1 tunes the backbone ({', '.join(bb.space)}) on the "
                f"baseline arm '{spec.baseline}' with {bb.budget} trials per replicate; its pick is the baseline row. "
                f"Stage 2 tunes each SSL arm's own knobs at the backbone's pick of the same replicate, {tune.budget} "
                f"trials per replicate for every SSL arm; an arm with 'from' (or without knobs of its own) takes its "
                f"parent's pick with its own settings, untuned. " + common)
    return (f"Joint tuning: every tuned arm searches the shared knobs (tune.space) and its own together, "
            f"{tune.budget} trials per replicate each. It answers \"what does a user with {tune.budget} runs per "
            f"arm get\", not \"is the method better at its best\": arms with larger spaces are searched more "
            f"thinly. " + common)


def _run_summary(d: Path, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    if d not in cache:
        try:
            got = io.read_json(d / "summary.json")
            cache[d] = got if isinstance(got, dict) else {}
        except (OSError, ValueError):
            cache[d] = {}
    return cache[d]


def _stopping_step(s: dict[str, Any]) -> int | None:
    v = s.get("stopped_step", s.get("steps"))
    return int(v) if isinstance(v, (int, float)) else None


def summarize_study(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """Everything the study found, in the agreed keys (module docstring)."""
    from sslkit.study import stats

    spec, tune = sweep.spec, sweep.spec.tune
    assert tune is not None and tune.seeds is not None
    update_picks(sweep, results)
    if spec.protocol == "two-stage":
        stage2 = ssl_trials(sweep)
        update_picks(sweep, results)
        known = {c.dir for c in sweep.cells}
        sweep.cells = sweep.cells + [c for c in stage2 if c.dir not in known]
    found = {(str(r.cell.dir), r.split): r for r in results}
    runs: dict[Path, dict[str, Any]] = {}
    metric = tune.metric

    def scores(cell: Cell) -> dict[str, float] | None:
        r = found.get((str(cell.dir), cell.split))
        return None if r is None else {m: v for m, v in r.eval["metrics"].items()
                                       if m.split("@")[0] in REPORTED or m == metric}

    arms: dict[str, Any] = {}
    tuning: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    for name, arm in sweep.arms.items():
        size = space_size(arm.space)
        info: dict[str, Any] = {"stage": arm.stage, "space": arm.space, "fixed": arm.fixed, "from": arm.parent,
                                "budget": arm.budget, "tuned": arm.tuned, "replicates": [],
                                # earlier summaries' keys: trials per replicate, the space's size, whether the
                                # trials are a subset of it
                                "cells": arm.budget, "grid_size": None if math.isinf(size) else int(size),
                                "sampled": arm.tuned and size > arm.budget}
        matrix = np.full((tune.replicates, arm.budget), np.nan)
        last = len(arm.rungs) - 1 if arm.rungs else None
        for r in range(tune.replicates):
            trials = [c for c in sweep.cells if c.arm == name and c.replicate == r and c.stage == "tune"]
            for c in trials:
                s = scores(c)
                tuning.append({"arm": name, "replicate": r, "trial": c.trial,
                               "values": {k: c.values[k] for k in arm.space}, "validation": s,
                               "stopping_step": _stopping_step(_run_summary(c.dir, runs)) if s else None,
                               "dir": str(c.dir), **({} if c.rung is None else
                                                    {"rung": c.rung, "steps": c.cfg.train.steps})})
                if s is not None and c.trial is not None and not c.rung:
                    matrix[r, c.trial] = s[metric]
            pick = pick_values(sweep, name, r)
            if pick is None:
                continue
            rep: dict[str, Any] = {"replicate": r, "pick": {k: pick[k] for k in arm.space if k in pick},
                                   "values": pick, "trials": sum(scores(c) is not None for c in trials if not c.rung)}
            if arm.tuned:
                best = next((c for c in trials if pick_of(c) == pick and (last is None or c.rung == last)), None)
                rep["validation"] = None if best is None else (scores(best) or {}).get(metric)
                rep["stopping_step"] = None if best is None else _stopping_step(_run_summary(best.dir, runs))
            info["replicates"].append(rep)
        if info["replicates"]:  # earlier summaries' keys: replicate 0's pick
            info["selected"] = info["replicates"][0]["values"]
            info["selected_validation"] = info["replicates"][0].get("validation")
        arms[name] = info
        if arm.tuned and np.isfinite(matrix).any() and len(arm.rungs) <= 1:  # (halving: rung 0 is not trained in full)
            curves[name] = stats.expected_max_curve(matrix)
    later = later_cells(sweep)
    # finals[arm][r] → results by final seed, in the order of `seeds`
    finals: dict[str, dict[int, list[CellResult]]] = {n: {} for n in sweep.arms}
    for c in later:
        if c.stage == "final" and (k := (str(c.dir), "test")) in found and c.replicate is not None:
            finals[c.arm or ""].setdefault(c.replicate, []).append(found[k])
    complete = {n: {r: got for r, got in reps.items() if len(got) == len(spec.seeds)} for n, reps in finals.items()}
    base_name = str(spec.baseline)

    groups = []
    for name in sweep.arms:
        got = [x for r in sorted(finals[name]) for x in finals[name][r]]
        row = group_row(name, arms[name].get("selected", {}), got)
        row.update(name=name, n=len(got), replicates=len(finals[name]))
        groups.append(row)

    comparisons, slices, warnings = [], [], []
    pairs = [(n, base_name) for n in sweep.arms if n != base_name]
    pairs += [(n, a.parent) for n, a in sweep.arms.items() if a.parent and a.parent != base_name]
    for name, ref in pairs:
        reps = sorted(set(complete[name]) & set(complete[ref or ""]))
        if not reps:
            continue
        b_runs = [complete[ref or ""][r] for r in reps]
        a_runs = [complete[name][r] for r in reps]
        names = [m for m in a_runs[0][0].per_query if m.split("@")[0] in REPORTED]
        for m in names:
            b = np.stack([np.stack([x.per_query[m] for x in rr]) for rr in b_runs])
            a = np.stack([np.stack([x.per_query[m] for x in rr]) for rr in a_runs])
            ab = stats.hierarchical_paired_ci(b, a, relative=False, n_boot=n_boot)
            rel = stats.hierarchical_paired_ci(b, a, relative=True, n_boot=n_boot) if b.mean() > 0 else None
            comparisons.append({
                "arm": name, "baseline": ref, "metric": m, "family": ref == base_name and m == metric,
                "baseline_value": float(b.mean()), "value": float(a.mean()),
                "delta_abs": ab["delta"], "ci_abs": ab["ci"],
                "delta_rel": None if rel is None else rel["delta"], "ci_rel": None if rel is None else rel["ci"],
                "p": ab["p"], "p_holm": None, "wins": ab["wins"], "replicates": ab["replicates"],
                "seeds": ab["seeds"], "queries": ab["queries"], "resamples": ab["resamples"]})
        for sl in a_runs[0][0].slice_per_query:
            if any(sl not in x.slice_per_query or metric not in x.slice_per_query[sl] for rr in a_runs + b_runs
                   for x in rr):
                continue
            b = np.stack([np.stack([x.slice_per_query[sl][metric] for x in rr]) for rr in b_runs])
            a = np.stack([np.stack([x.slice_per_query[sl][metric] for x in rr]) for rr in a_runs])
            keep = ~np.isnan(b).any((0, 1)) & ~np.isnan(a).any((0, 1))
            if not keep.any():
                continue
            b, a = b[:, :, keep], a[:, :, keep]
            ab = stats.hierarchical_paired_ci(b, a, relative=False, n_boot=n_boot)
            small = b.mean() < SLICE_RELATIVE_MIN
            rel = None if small else stats.hierarchical_paired_ci(b, a, relative=True, n_boot=n_boot)
            slices.append({"arm": name, "baseline": ref, "slice": sl, "metric": metric, "queries": int(keep.sum()),
                           "baseline_value": float(b.mean()), "value": float(a.mean()),
                           "delta_abs": ab["delta"], "ci_abs": ab["ci"],
                           "delta_rel": None if rel is None else rel["delta"], "ci_rel": None if rel is None else rel["ci"],
                           "absolute_only": small})
    family = [c for c in comparisons if c["family"]]
    for c, p in zip(family, stats.holm([c["p"] for c in family]) if family else []):
        c["p_holm"] = p
    for c in comparisons:
        c["verdict"] = stats.verdict(c["ci_abs"], c["p_holm"])
    by_group = {g["name"]: g for g in groups}
    for c in comparisons:  # earlier summaries' keys, which `sslkit sweep`'s table shows
        if c["baseline"] == base_name and c["ci_rel"] is not None:
            by_group[c["arm"]].setdefault("vs_baseline", {})[c["metric"]] = {
                "relative": c["delta_rel"], "low": c["ci_rel"][0], "high": c["ci_rel"][1], "p_value": c["p"]}
            by_group[c["arm"]]["baseline"] = base_name

    toppop = next((x.eval.get("toppop") for reps in finals.values() for rr in reps.values() for x in rr
                   if x.eval.get("toppop")), None)
    summary_toppop = None if not toppop else {"split": "test", **toppop}
    if toppop and metric in toppop:
        for g in groups:
            v = (g.get("metrics") or {}).get(metric, {}).get("mean")
            if v is not None and v < toppop[metric]:
                who = "the baseline" if g["name"] == base_name else "arm"
                warnings.append(f"{who} {g['name']} is below TopPopular on {metric} (test): {v:.4f} < "
                                f"{toppop[metric]:.4f}")

    summary: dict[str, Any] = {
        "kind": "study", "spec": str(sweep.path),
        "protocol": {"name": spec.protocol, "text": protocol_text(sweep),
                     "question": ("is each method better than the baseline at its best, its own knobs tuned at the "
                                  "backbone's pick") if spec.protocol == "two-stage" else
                                 f"what does a user with {tune.budget} runs per arm get"},
        "selection": {"split": "validation", "metric": metric, "budget": tune.budget,
                      "backbone_budget": sweep.arms[base_name].budget if spec.protocol == "two-stage" else None,
                      "replicates": tune.replicates, "final_seeds": spec.seeds, "tuning_seeds": tune.seeds,
                      "null_seeds": spec.null_seeds, "search": tune.search, "sequence": SEQUENCE,
                      "rungs": {n: [{"trials": k, "steps": st} for k, st in a.rungs] for n, a in sweep.arms.items()
                                if len(a.rungs) > 1},
                      "sample_seed": tune.sample_seed},
        "baseline": base_name, "arms": arms, "tuning": tuning, "budget_curves": curves, "groups": groups,
        "comparisons": comparisons, "slices": slices, "toppop": summary_toppop, "warnings": warnings,
        "cells": len(sweep.cells) + len(later), "done": len(results)}

    null_runs = [found[k] for c in later if c.arm == base_name and c.replicate == 0 and c.stage in ("final", "null")
                 and (k := (str(c.dir), "test")) in found]
    if spec.null_seeds and len(null_runs) >= 4:
        block = min(len(spec.seeds), len(null_runs) // 2)
        summary["null_check"] = {"metric": metric, "seeds": [r.cell.cfg.train.seed for r in null_runs],
                                 **stats.null_check(np.stack([r.per_query[metric] for r in null_runs]), block=block,
                                                    n_boot=min(n_boot, 1000))}
        nc = summary["null_check"]
        nc.setdefault("blocks", nc.get("comparisons"))
        # earlier summaries' keys
        nc.update(runs=len(null_runs), arm_size=block)
    stopping: dict[str, Any] = {}
    for name in sweep.arms:
        got = [x for r in sorted(finals[name]) for x in finals[name][r]]
        if got:
            s = [_run_summary(x.cell.dir, runs) for x in got]
            stopping[name] = {"steps": [_stopping_step(x) for x in s],
                              "best_steps": [x.get("best_step") for x in s],
                              "stopped_early": [bool(x.get("stopped_early", False)) for x in s],
                              "max_steps": got[0].cell.cfg.train.steps}
    summary["stopping"] = stopping
    summary["early_stopping"] = _early_stopping(later[0] if later else (sweep.cells[0] if sweep.cells else None))
    summary["preregistration"] = preregistration(sweep)
    summary["curves"] = {key: {name: [{"value": c.values[key], "dir": str(c.dir), "validation": scores(c)}
                                      for c in later if c.arm == name and c.stage == f"curve:{key}"]
                               for name in curve.arms} for key, curve in spec.curves.items()}
    return summary


def _early_stopping(cell: Cell | None) -> dict[str, Any] | None:
    """The study's early-stopping settings (train.early_stopping), when the config has them."""
    if cell is None:
        return None
    es = getattr(cell.cfg.train, "early_stopping", None)
    if es is None:
        return None
    return es.model_dump() if hasattr(es, "model_dump") else es
