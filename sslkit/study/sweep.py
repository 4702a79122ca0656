"""`sslkit sweep`: train and evaluate grid cells, resumably; or tune every arm on validation, then test.

A spec (YAML) is either a plain grid or a tuning study. A **plain grid** names a schema, fixed
settings, a grid and the baseline cell; every cell is scored on the test split:

    schema: ../schema.yaml            # relative to the spec file
    out: ../../../runs/movielens      # cell run directories live here [runs/sweeps]
    set: {train.epochs: 10}           # fixed settings (any schema key)
    grid:                             # every combination is a cell
      aug: [none, cfm]                # short names: aug alpha dropout fraction seed lr epochs ...
      seed: [0, 1, 2]
    baseline: {aug: none}             # the baseline of each group; the other grid keys must match

A **tuning study** declares arms instead of a grid. Every trial is scored on the VALIDATION split
(carved from the training pairs, `split.validation_fraction`); test is read once, for each
replicate's picks, after the study's preregistration is recorded. The default protocol is
**two-stage** (the paper's): stage 1 tunes the backbone on the baseline arm, stage 2 tunes each SSL
arm's own knobs at the backbone's pick, every SSL arm with the same number of trials:

    schema: ../schema.yaml
    set: {train.epochs: 8, split.validation_fraction: 0.1}
    protocol: two-stage               # [two-stage] | joint
    backbone:                         # stage 1: tuned on the baseline arm; its pick is the baseline row
      space: {lr: {log_uniform: [0.01, 0.3]}, temperature: {log_uniform: [0.05, 0.3]}}
      budget: 8                       # trials per replicate [tune.budget]
    arms:                             # name → fixed settings, own search space, or a parent
      none: {set: {aug: none}}        # the baseline: no space of its own (backbone.space is its)
      cfm:  {set: {aug: cfm}, space: {alpha: {log_uniform: [0.01, 1]}, dropout: {uniform: [0.1, 0.7]}}}
      cfm_pop: {from: cfm, set: {ssl.item_sampling: popularity}}  # not tuned: cfm's pick, changed
      none_no_logq: {from: none, set: {logq: false}}              # a known-bad setting stays an ablation
    tune:
      budget: 6                       # stage-2 trials per SSL arm and replicate, the same for every arm
      metric: recall@50               # selects on validation (higher is better)
      replicates: 3                   # independent tuning replicates per arm [3]
      seeds: [1000, 1001, 1002]       # each replicate's tuning training seed [1000 + r]
      search: sequence                # [sequence] | successive-halving (eta 3, rungs by train.steps)
      sample_seed: 0                  # seeds the trial sequences [0]
    seeds: [0, 1, 2, 3, 4]            # final seeds of every replicate's picks, on test [0..4];
                                      # disjoint from tune.seeds (refused otherwise)
    baseline: none                    # every other arm is compared with it
    null_seeds: [5, 6, 7, 8, 9]       # optional: more seeds of the baseline's pick: the null check
    curves:                           # optional: one knob around an arm's pick, on validation
      alpha: {arms: [cfm], values: [0.01, 0.1, 1, 3]}

A knob's space is a list of values or a range: `{log_uniform: [lo, hi]}` (lr, τ, α, SSL τ),
`{uniform: [lo, hi]}` (dropout), `{int: [lo, hi]}`; range values are rounded to 3 significant
digits. An arm without `space` or `from` (other than the baseline) takes the backbone's pick with
its settings. **joint** (`protocol: joint`, no `backbone`) tunes every arm's `tune.space` and own
space together with `tune.budget` trials each: it answers "what does a user with N runs get", not
"is the method better at its best" (arms with larger spaces are searched more thinly).

Trials of (arm, replicate) are the first `budget` distinct points of one scrambled Sobol sequence
seeded by `sample_seed`, the arm's name and the replicate (lists map through the same unit
coordinates): budget B's trials are budget B + 1's first B (nested; best-so-far is monotone), and
an arm with the same name and space draws the same trials in every spec (their cells are shared).
A space with fewer distinct cells than the budget is an error (the budgets would not be equal).
Selection cannot read test: it needs `split.validation_fraction` > 0, there is no key to select on
another split, and the selection function refuses anything but validation results. Finals are
paired: replicate r of an arm is compared with replicate r of the baseline (the pick it was tuned
at), seed s with seed s (same initialization and batch order), on the same queries; the interval
(`stats.hierarchical_paired_ci`) resamples replicates × seeds × queries, so it covers the tuning
step. With `null_seeds`, the baseline's replicate-0 pick also runs with those seeds, and
`stats.null_check` reports how often the interval calls a difference between disjoint blocks of
baseline runs. `train.early_stopping` in `set` applies to trials and finals alike; the summary
reports each run's stopping step. The summary's keys are in `sslkit.study.summary`.

Cells are named by their settings plus a hash of the resolved config, the sslkit version and its
numerics version, so a cell already trained (by this spec or another one sharing `out`) is reused,
a half-trained one is resumed from its checkpoint, and a changed setting — or changed training
arithmetic — gives a new cell. In a plain grid, runs that differ only by `seed` form a group,
reported as mean ± std over seeds and against their baseline group (paired by seed when they
share seeds).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import ValidationError

from sslkit.config import MAX_SCHEMA_BYTES, decode_text, load_yaml
from sslkit.data import io
from sslkit.errors import ConfigError

from sslkit.study.cells import CellResult, Event, run_cells
from sslkit.study.compare import group_row, versus
from sslkit.study.spec import CI_PAIRED, Cell, Sweep, SweepSpec, _label, full_key, make_cell
from sslkit.study import tuning


def load_sweep(path: str | Path, *, overrides: Sequence[str] = (), out: str | Path | None = None,
               seeds: Sequence[int] | None = None, budget: int | None = None,
               null_seeds: Sequence[int] | None = None, replicates: int | None = None) -> Sweep:
    """Read and validate a spec, resolve every cell's config (so errors surface before training).

    `overrides` (key=value, applied after the spec's `set`), `out`, `seeds` (replaces the grid's
    seed list, or a study's `seeds`), `budget` (a study's tune.budget and backbone.budget),
    `replicates` and `null_seeds` (a study's) let one spec serve e.g. a quick smoke run; a study
    records them beside the spec's hash (preregistration).

    Raises:
        ConfigError: unreadable spec, unknown keys, a bad value in any cell, a missing baseline,
            a study that could only select on test.
    """
    path = Path(path)
    try:  # the schema files' bounded reader: size, UTF-8, depth, alias expansion, duplicate keys
        data = path.read_bytes() if path.stat().st_size <= MAX_SCHEMA_BYTES else None
    except FileNotFoundError:
        raise ConfigError(f"{path}: sweep spec not found")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read sweep spec ({e.strerror})")
    if data is None:
        raise ConfigError(f"{path}: sweep spec is larger than {MAX_SCHEMA_BYTES // 1024} KiB")
    raw = load_yaml(decode_text(data, str(path)), str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with schema, grid (or arms and tune) and optionally out, set")
    changes: dict[str, Any] = {k: v for k, v in (("set", list(overrides)), ("seeds", seeds), ("budget", budget),
                                                   ("null_seeds", null_seeds), ("replicates", replicates)) if v}
    if isinstance(raw.get("tune"), dict) and budget is not None:
        raw["tune"]["budget"] = budget
        if isinstance(raw.get("backbone"), dict) and raw["backbone"].get("budget") is not None:
            raw["backbone"]["budget"] = budget
    if isinstance(raw.get("tune"), dict) and replicates is not None:
        raw["tune"]["replicates"] = replicates
        if isinstance(raw["tune"].get("seeds"), list) and len(raw["tune"]["seeds"]) >= replicates:
            raw["tune"]["seeds"] = raw["tune"]["seeds"][:replicates]
    if raw.get("arms") is not None and seeds is not None:
        raw["seeds"] = list(seeds)
    if raw.get("arms") is not None and null_seeds is not None:
        raw["null_seeds"] = list(null_seeds)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}")
    base = path.resolve().parent
    out = Path(out) if out is not None else (base / spec.out).resolve()
    fixed = [f"{full_key(k)}={json.dumps(v)}" for k, v in spec.set.items()] + list(overrides)
    if spec.index:
        fixed.append(f"eval.index={spec.index}")
    sweep = Sweep(spec=spec, path=path, cells=[], out=out, schema=base / spec.schema_path, fixed=fixed,
                  overrides={k: [str(x) for x in v] if isinstance(v, (list, tuple)) else v for k, v in changes.items()})
    if spec.arms is not None:
        tuning.plan_study(sweep)
        return sweep
    assert spec.grid is not None
    if seeds is not None:
        spec.grid["seed"] = list(seeds)
    keys = list(spec.grid)
    sweep.cells = [make_cell(sweep, dict(zip(keys, combo))) for combo in itertools.product(*spec.grid.values())]
    for c in sweep.cells:
        sweep.groups.setdefault(c.group, []).append(c)
    if isinstance(spec.baseline, dict) and spec.baseline:
        unknown = sorted(set(spec.baseline) - set(keys))
        if unknown:
            raise ConfigError(f"{path}: baseline: {', '.join(unknown)} is not a grid key", hint=f"grid keys: {', '.join(keys)}")
        for name, members in sweep.groups.items():
            want = {k: v for k, v in members[0].values.items() if k != "seed"} | spec.baseline
            target = _label(want)
            if target not in sweep.groups:
                raise ConfigError(f"{path}: baseline {_label(spec.baseline)} is not a cell of the grid",
                                  hint="its values must be among the grid's")
            sweep.baseline_of[name] = target
    return sweep


def run_sweep(sweep: Sweep, *, log: Callable[[str], None] = lambda _: None, on_event: Event = lambda k, p: None,
              stop_on_signals: bool = False) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    """Train and score every cell not done yet. Returns the results and the failed cells.

    A study runs its trials (validation; two-stage: the backbone's, then the SSL arms' at its
    picks), selects each (arm, replicate)'s pick from validation results alone (`select_best`),
    records the preregistration, then runs the picks' final seeds (test), null seeds and curves.
    A cell that fails (e.g. a non-finite loss) is reported and the sweep goes on; an interrupt
    (`Interrupted`) stops it with the current cell's checkpoint saved.
    """
    if sweep.tuned:
        return tuning.run_study(sweep, log=log, on_event=on_event, stop_on_signals=stop_on_signals)
    return run_cells(sweep, sweep.cells, log=log, on_event=on_event, stop_on_signals=stop_on_signals)


def summarize_sweep(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """A grid: one row per group (mean ± std over seeds, metrics and slices) and its comparison with
    its baseline group. A study: see `summarize_study`."""
    if sweep.tuned:
        from sslkit.study.summary import summarize_study

        return summarize_study(sweep, results, n_boot=n_boot)
    by_group: dict[str, list[CellResult]] = {}
    for r in results:
        by_group.setdefault(r.cell.group, []).append(r)
    rows = []
    for name, members in sweep.groups.items():
        got = by_group.get(name, [])
        row = group_row(name, {k: v for k, v in members[0].values.items() if k != "seed"}, got)
        base_name = sweep.baseline_of.get(name)
        if got and base_name and base_name != name and by_group.get(base_name):
            row["baseline"] = base_name
            row.update(versus(by_group[base_name], got, n_boot=n_boot))
        rows.append(row)
    toppop = next((r.eval["toppop"] for r in results if r.eval.get("toppop")), None)
    return {"kind": "grid", "spec": str(sweep.path), "protocol": "grid: every cell scored on the test split",
            "cells": len(sweep.cells), "done": len(results), "ci_method": CI_PAIRED, "groups": rows,
            "toppop": None if toppop is None else {"split": "test", **toppop}}


def write_summary(sweep: Sweep, summary: dict[str, Any]) -> Path:
    name = sweep.path.stem
    path = sweep.out / f"{name}.sweep.json"
    sweep.out.mkdir(parents=True, exist_ok=True)
    io.write_json(path, summary)
    return path
