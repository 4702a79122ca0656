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

A **tuning study** declares arms instead of a grid. Each tuned arm searches its own knobs with
the same budget of cells, every tuning cell is scored on the VALIDATION split (carved from the
training pairs, `split.validation_fraction`), each arm's best cell by `tune.metric` on
validation is selected, and only the selected cells are trained with `seeds` and scored on TEST:

    schema: ../schema.yaml
    set: {train.epochs: 8, split.validation_fraction: 0.1}
    arms:                             # name → fixed settings, own search space, or a parent
      none: {set: {aug: none}}
      cfm:  {set: {aug: cfm}, space: {alpha: [0.01, 0.1, 0.3, 1], dropout: [0.1, 0.3, 0.5]}}
      cfm_pop: {from: cfm, set: {ssl.item_sampling: popularity}}  # not tuned: cfm's pick, changed
    tune:
      budget: 6                       # cells per tuned arm, the same for every arm
      metric: recall@50               # selects on validation (higher is better)
      space: {lr: [0.05, 0.2], temperature: [0.1, 0.2], logq: [true, false]}  # every tuned arm's knobs
      seed: 0                         # training seed of the tuning cells [first of seeds]
      sample_seed: 0                  # draws `budget` cells when an arm's grid is larger
    seeds: [0, 1, 2, 3, 4]            # the selected cell of each arm, on test [0..4]
    baseline: none                    # every other arm is compared with it, seed s with seed s
    null_seeds: [5, 6, 7, 8, 9]       # optional: more baseline seeds for the null check
    curves:                           # optional: one knob around an arm's pick, on validation
      alpha: {arms: [cfm], values: [0.01, 0.1, 1, 3]}

A tuned arm's grid is `tune.space` × its own `space`; when it has more cells than the budget, a
seeded, balanced random subset of `budget` cells is drawn (each knob's values spread evenly over
the cells; seeded by the arm's name, so the same arm draws the same cells in every spec) and the
summary says so; a grid smaller than the budget is an error (the
budgets would not be equal). Selection cannot read test: it needs `split.validation_fraction` > 0,
there is no key to select on another split, and the selection function refuses anything but
validation results. Tests are paired: seed s of an arm has the same initialization and batch order
as seed s of the baseline, and the interval is `metrics.paired_seeds_bootstrap_ci`. With
`null_seeds`, the baseline's pick also runs with those seeds and `metrics.null_false_positive_rate`
reports how often that interval calls a difference between baseline seeds.

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
               null_seeds: Sequence[int] | None = None) -> Sweep:
    """Read and validate a spec, resolve every cell's config (so errors surface before training).

    `overrides` (key=value, applied after the spec's `set`), `out`, `seeds` (replaces the grid's
    seed list, or a study's `seeds`), `budget` and `null_seeds` (a study's) let one spec serve
    e.g. a quick smoke run.

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
    if isinstance(raw.get("tune"), dict) and budget is not None:
        raw["tune"]["budget"] = budget
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
    sweep = Sweep(spec=spec, path=path, cells=[], out=out, schema=base / spec.schema_path, fixed=fixed)
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

    A study runs its tuning cells (validation), selects each arm's pick from their validation
    results alone (`select_best`), then runs the picks' seeds (test), null seeds and curves.
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
        return tuning.summarize_study(sweep, results, n_boot=n_boot)
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
    return {"spec": str(sweep.path), "protocol": "grid: every cell scored on the test split", "cells": len(sweep.cells),
            "done": len(results), "ci_method": CI_PAIRED, "groups": rows}


def write_summary(sweep: Sweep, summary: dict[str, Any]) -> Path:
    name = sweep.path.stem
    path = sweep.out / f"{name}.sweep.json"
    sweep.out.mkdir(parents=True, exist_ok=True)
    io.write_json(path, summary)
    return path
