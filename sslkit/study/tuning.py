"""A tuning study (`sslkit sweep` with `arms`): equal budgets, selection on validation, picks on test.

`plan_study` draws each tuned arm's tuning cells, `run_study` runs them, selects each arm's pick
with `select_best` (validation results only) and runs the picks' seeds, the null seeds and the
curves (`later_cells`), and `summarize_study` reports it all. The spec format is in `sslkit.study.sweep`.
"""

from __future__ import annotations

import itertools
import math
import zlib
from typing import Any, Callable

import numpy as np

from sslkit.errors import ConfigError
from sslkit.study.cells import CellResult, Event, run_cells
from sslkit.study.compare import group_row, versus
from sslkit.study.spec import CI_PAIRED, REPORTED, Arm, Cell, Sweep, full_key, make_cell


def plan_study(sweep: Sweep) -> None:
    """Arms and their tuning cells: each tuned arm's grid, or a seeded subset of `budget` cells of it."""
    spec, path = sweep.spec, sweep.path
    assert spec.arms is not None and spec.tune is not None
    tune_seed = spec.seeds[0] if spec.tune.seed is None else spec.tune.seed
    for name, a in spec.arms.items():
        arm = Arm(name=name, fixed=dict(a.set), parent=a.parent)
        space = {} if a.parent else {**spec.tune.space, **a.space}
        for key in [*arm.fixed, *space]:
            if full_key(key) in ("train.seed",) or full_key(key).startswith("split."):
                raise ConfigError(f"{path}: arms.{name}: {key} cannot vary between arms or cells",
                                  hint="put split.* in the spec's set: every arm is scored on the same pairs; "
                                       "seeds come from 'seeds'")
        both = sorted(set(arm.fixed) & set(space))
        if both:
            raise ConfigError(f"{path}: arms.{name}: {', '.join(both)} is both fixed (set) and tuned (space)")
        arm.space = space
        if not a.parent:
            arm.grid_size = math.prod(len(v) for v in space.values())
            if arm.grid_size < spec.tune.budget:
                raise ConfigError(f"{path}: arms.{name}: its search space has {arm.grid_size} cells, fewer than "
                                  f"tune.budget {spec.tune.budget}",
                                  hint="add values to its space (or tune.space), or lower tune.budget: every tuned "
                                       "arm gets the same number of cells")
            for values in draw_cells(name, space, spec.tune.budget, spec.tune.sample_seed):
                arm.tuning.append(make_cell(sweep, {**arm.fixed, **values, "seed": tune_seed}, arm=name,
                                            stage="tune", split="validation"))
        sweep.arms[name] = arm
    for key in spec.curves:
        if full_key(key) == "train.seed" or full_key(key).startswith("split."):
            raise ConfigError(f"{path}: curves.{key}: a curve varies a model or training knob, not {key}")
    sweep.cells = [c for arm in sweep.arms.values() for c in arm.tuning]
    for c in sweep.cells:
        if c.cfg.split.validation_fraction <= 0:
            raise ConfigError(f"{path}: split.validation_fraction is 0, so selection would have to read the test split",
                              hint="set split.validation_fraction > 0 (e.g. 0.1) in the schema or the spec's set")
        names = {f"{m}@{k}" for m in ("recall", "map", "ndcg", "mrr") for k in c.cfg.eval.k}
        if spec.tune.metric not in names:
            raise ConfigError(f"{path}: tune.metric: {spec.tune.metric!r} is not computed",
                              hint=f"one of {', '.join(sorted(names))} (eval.k sets the cutoffs)")
    for name, arm in sweep.arms.items():  # a derived arm's config is checked now, on its parent's first cell
        if arm.parent:
            parent = sweep.arms[arm.parent].tuning[0]
            make_cell(sweep, {**parent.values, **arm.fixed}, arm=name, stage="final")


def draw_cells(arm: str, space: dict[str, list[Any]], budget: int, sample_seed: int) -> list[dict[str, Any]]:
    """`budget` distinct cells of the grid `space`: all when it has exactly that many, else a seeded
    balanced random subset (Latin-hypercube style): each knob's values are spread evenly over the
    cells (every value ⌊B/n⌋ or ⌈B/n⌉ times; B of them at random when n > B), in random order.

    Seeded by the arm's name, so an arm draws the same cells in every spec (and shares them).
    """
    keys = list(space)
    sizes = [len(space[k]) for k in keys]
    total = math.prod(sizes)
    if total == budget:
        picks = list(itertools.product(*(range(n) for n in sizes)))
    else:
        rng = np.random.default_rng([sample_seed, zlib.crc32(arm.encode())])
        for _ in range(1000):
            cols = [rng.permutation(rng.choice(n, budget, replace=False) if n > budget
                                    else np.resize(rng.permutation(n), budget)) for n in sizes]
            picks = sorted(set(zip(*(c.tolist() for c in cols))))
            if len(picks) == budget:
                break
        else:  # a budget near the grid's size: a plain random subset
            flat = sorted(rng.choice(total, size=budget, replace=False).tolist())
            picks = [tuple(int(i) // math.prod(sizes[j + 1:]) % sizes[j] for j in range(len(sizes))) for i in flat]
    return [{k: space[k][i] for k, i in zip(keys, pick)} for pick in picks]


def run_study(sweep: Sweep, *, log: Callable[[str], None], on_event: Event,
              stop_on_signals: bool) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    """Tuning cells (validation) → each arm's pick from validation results alone → picks' seeds
    (test), null seeds (test) and curves (validation). Returns the results and the failed cells."""
    spec = sweep.spec
    assert spec.tune is not None
    expected = len(sweep.cells) + len(sweep.arms) * len(spec.seeds) + len(spec.null_seeds) + sum(
        len(c.arms) * len(c.values) for c in spec.curves.values())
    results, failed = run_cells(sweep, sweep.cells, log=log, on_event=on_event, stop_on_signals=stop_on_signals,
                                total=expected)
    sweep.selected = {name: r.cell.values for name, r in select_best(
        {name: [r for r in results if r.cell.arm == name] for name, a in sweep.arms.items() if a.parent is None},
        spec.tune.metric).items()}
    more, more_failed = run_cells(sweep, later_cells(sweep), log=log, on_event=on_event,
                                  stop_on_signals=stop_on_signals, total=expected, start=len(sweep.cells))
    return results + more, failed + more_failed


def planned_cells(sweep: Sweep) -> list[Cell]:
    """Every cell the study will score, as far as it is known now: the tuning cells, then — once an
    arm's tuning cells are all scored on validation — its pick's seeds, null seeds and curves."""
    from sslkit.errors import CheckpointError
    from sslkit.study.cells import cell_status, load_result

    done = []
    for c in sweep.cells:
        if cell_status(c) == "done":
            try:
                done.append(load_result(c))
            except CheckpointError:
                pass
    complete = {n for n, a in sweep.arms.items() if a.parent is None
                and sum(r.cell.arm == n for r in done) == len(a.tuning)}
    assert sweep.spec.tune is not None
    picks = select_best({n: [r for r in done if r.cell.arm == n] for n in complete}, sweep.spec.tune.metric)
    sweep.selected = {n: r.cell.values for n, r in picks.items()}
    return sweep.cells + later_cells(sweep)


def later_cells(sweep: Sweep) -> list[Cell]:
    """A study's cells after selection: each arm's pick with every seed (test), the baseline's pick
    with the null seeds (test), and the curves (validation, tuning seed). Arms without a pick (all
    their tuning cells failed, or selection has not run) are left out."""
    spec = sweep.spec
    assert spec.tune is not None
    picked = {n for n, a in sweep.arms.items() if (a.parent or n) in sweep.selected}
    cells = []
    for name in sweep.arms:
        if name not in picked:
            continue
        pick = pick_values(sweep, name)
        seeds = spec.seeds + (spec.null_seeds if name == spec.baseline else [])
        cells += [make_cell(sweep, {**pick, "seed": s}, arm=name, stage="final" if s in spec.seeds else "null")
                  for s in seeds]
    tune_seed = spec.seeds[0] if spec.tune.seed is None else spec.tune.seed
    for key, curve in spec.curves.items():
        for name in (a for a in curve.arms if a in picked):
            cells += [make_cell(sweep, {**pick_values(sweep, name), key: v, "seed": tune_seed}, arm=name,
                                stage=f"curve:{key}", split="validation") for v in curve.values]
    return cells


def pick_values(sweep: Sweep, name: str) -> dict[str, Any]:
    """An arm's selected settings: a tuned arm's best tuning cell, a derived arm's parent's changed by its set."""
    arm = sweep.arms[name]
    if arm.parent is not None:
        return {**pick_values(sweep, arm.parent), **arm.fixed}
    if name not in sweep.selected:
        raise ConfigError(f"{sweep.path}: arm {name} has no selected cell (its tuning cells failed or have not run)")
    return {k: v for k, v in sweep.selected[name].items() if k != "seed"}


def select_best(tuning: dict[str, list[CellResult]], metric: str) -> dict[str, CellResult]:
    """Each arm's best tuning cell by `metric` — from VALIDATION results only.

    Ties go to the earlier cell. An arm without results gets no pick.

    Raises:
        ValueError: a result scored on any split but validation (selection never reads test).
    """
    picks = {}
    for arm, results in tuning.items():
        for r in results:
            if r.split != "validation" or r.eval.get("split", "validation") != "validation":
                raise ValueError(f"{r.cell.dir}: selection reads validation results only, got {r.split}")
        if results:
            picks[arm] = max(results, key=lambda r: (r.eval["metrics"][metric], -results.index(r)))
    return picks


def summarize_study(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """The protocol, each arm's budget and pick, every tuning cell's validation scores, each arm's
    seeds on test against the baseline (paired CIs), the null check and the curves."""
    from sslkit.evaluation.metrics import null_false_positive_rate

    spec, tune = sweep.spec, sweep.spec.tune
    assert tune is not None
    found = {(str(r.cell.dir), r.split): r for r in results}
    tune_seed = spec.seeds[0] if tune.seed is None else tune.seed

    def scores(cell: Cell) -> dict[str, float] | None:
        r = found.get((str(cell.dir), cell.split))
        return None if r is None else {m: v for m, v in r.eval["metrics"].items()
                                       if m.split("@")[0] in REPORTED or m == tune.metric}

    arms, tuning = {}, []
    for name, arm in sweep.arms.items():
        info: dict[str, Any] = {"tuned": arm.parent is None, "from": arm.parent, "fixed": arm.fixed}
        if arm.parent is None:
            info.update(space=arm.space, grid_size=arm.grid_size, cells=len(arm.tuning), sampled=arm.sampled)
            for c in arm.tuning:
                tuning.append({"arm": name, "values": {k: c.values[k] for k in arm.space}, "dir": str(c.dir),
                               "validation": scores(c)})
        if (arm.parent or name) in sweep.selected:
            info["selected"] = pick_values(sweep, name)
            if arm.parent is None:
                best = next(c for c in arm.tuning if c.values == sweep.selected[name])
                info["selected_validation"] = (scores(best) or {}).get(tune.metric)
        arms[name] = info
    later = later_cells(sweep)
    finals = {name: [found[k] for c in later if c.arm == name and c.stage == "final"
                     and (k := (str(c.dir), "test")) in found] for name in sweep.arms}
    groups = []
    base = finals.get(str(spec.baseline)) or []
    for name, arm in sweep.arms.items():
        row = group_row(name, arms[name].get("selected", {}), finals[name])
        if finals[name] and name != spec.baseline and base:
            row["baseline"] = spec.baseline
            row.update(versus(base, finals[name], n_boot=n_boot))
        if finals[name] and arm.parent and finals.get(arm.parent):
            row["parent"] = arm.parent
            row.update(versus(finals[arm.parent], finals[name], n_boot=n_boot, key="vs_parent"))
        groups.append(row)
    summary: dict[str, Any] = {
        "spec": str(sweep.path), "cells": len(sweep.cells) + len(later), "done": len(results),
        "protocol": (f"tuning study: every tuned arm gets {tune.budget} tuning cells over its own knobs (a seeded "
                     f"balanced random subset where its grid is larger), trained with seed {tune_seed} and scored on the "
                     f"validation split (carved from the training pairs); each arm's best cell by validation "
                     f"{tune.metric} is selected from validation results alone, trained with seeds {spec.seeds} and "
                     "scored once on the test split; an arm with 'from' takes its parent's pick with its own changes, "
                     "untuned"),
        "selection": {"split": "validation", "metric": tune.metric, "budget": tune.budget, "tune_seed": tune_seed,
                      "sample_seed": tune.sample_seed, "seeds": spec.seeds},
        "ci_method": CI_PAIRED, "baseline": spec.baseline, "arms": arms, "tuning": tuning, "groups": groups}
    null_runs = [found[k] for c in later if c.arm == spec.baseline and c.stage in ("final", "null")
                 and (k := (str(c.dir), "test")) in found]
    if spec.null_seeds and len(null_runs) >= 4:
        summary["null_check"] = {"metric": tune.metric, "seeds": [r.cell.cfg.train.seed for r in null_runs],
                                 **null_false_positive_rate(np.stack([r.per_query[tune.metric] for r in null_runs]),
                                                            arm_size=min(len(spec.seeds), len(null_runs) // 2),
                                                            n_boot=min(n_boot, 500))}
    summary["curves"] = {key: {name: [{"value": c.values[key], "dir": str(c.dir), "validation": scores(c)}
                                      for c in later if c.arm == name and c.stage == f"curve:{key}"]
                               for name in curve.arms} for key, curve in spec.curves.items()}
    return summary
