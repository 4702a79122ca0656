"""A tuning study (`sslkit sweep` with `arms`): nested trial sequences, tuning replicates, selection on
validation, each replicate's picks on test with fresh seeds.

Two protocols. **two-stage** (the default, the paper's §5): stage 1 tunes the backbone (backbone.space)
on the baseline arm; stage 2 tunes each SSL arm's own knobs (its space) at the backbone's pick of the
same replicate, every SSL arm with the same number of trials. **joint**: every tuned arm searches
tune.space and its own knobs together, the same number of trials each ("what a user with N runs gets").

Trials of (arm, replicate) are the first `budget` distinct points of ONE seeded scrambled Sobol
sequence (`trial_values`), so budget B's trials are budget B + 1's first B: best-so-far is monotone
and cells are shared between budgets. Each replicate trains its trials with its own tuning seed
(tune.seeds), picks its best trial on validation (`select_best`), and its pick trains with the final
seeds (`seeds`, disjoint from every tuning seed) and is scored once on test, after the study's
preregistration is recorded (`preregister`). `sslkit.study.summary` reports it.
The spec format is in `sslkit.study.sweep`.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from sslkit.errors import ConfigError
from sslkit.study.cells import CellResult, Event, run_cells
from sslkit.study.spec import Arm, Cell, Sweep, full_key, make_cell

SEQUENCE = "scrambled Sobol (torch.quasirandom.SobolEngine), one per (arm, replicate)"


# ---- search spaces and sequences -------------------------------------------------------------------

def space_size(space: dict[str, Any]) -> float:
    """Distinct cells of a space (inf when a knob is a continuous range)."""
    n = 1.0
    for v in space.values():
        if isinstance(v, list):
            n *= len(v)
        elif "int" in v:
            n *= v["int"][1] - v["int"][0] + 1
        else:
            return math.inf
    return n


def unit_points(arm: str, replicate: int, dims: int, n: int, sample_seed: int) -> np.ndarray:
    """The first n points of (arm, replicate)'s scrambled Sobol sequence in [0, 1)^dims: the same
    points in every spec and at every budget (seeded by sample_seed, the arm's name and the replicate)."""
    import torch

    seed = int(np.random.SeedSequence([sample_seed, zlib.crc32(arm.encode()), replicate]).generate_state(1)[0])
    if dims == 0:
        return np.zeros((n, 0))
    return torch.quasirandom.SobolEngine(dims, scramble=True, seed=seed).draw(n, dtype=torch.float64).numpy()


def to_values(space: dict[str, Any], u: np.ndarray) -> dict[str, Any]:
    """A point of the unit cube → knob values: a list takes value ⌊u·n⌋; log_uniform and uniform
    ranges are rounded to 3 significant digits (readable cell names); int ranges are inclusive."""
    out: dict[str, Any] = {}
    for (key, v), x in zip(space.items(), u):
        x = min(max(float(x), 0.0), 1.0 - 1e-12)
        if isinstance(v, list):
            out[key] = v[int(x * len(v))]
            continue
        kind, (lo, hi) = next(iter(v.items()))
        if kind == "int":
            out[key] = int(lo) + int(x * (int(hi) - int(lo) + 1))
        elif kind == "uniform":
            out[key] = float(f"{lo + x * (hi - lo):.3g}")
        else:
            out[key] = float(f"{math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))):.3g}")
    return out


def trial_values(arm: str, replicate: int, space: dict[str, Any], budget: int, sample_seed: int) -> list[dict[str, Any]]:
    """(arm, replicate)'s first `budget` trials: the first `budget` DISTINCT points of its sequence
    (a repeated point — two list values or rounded ranges alike — is skipped, not retrained).
    Nested by construction: trial_values(..., B) == trial_values(..., B + 1)[:B].

    Raises:
        ValueError: the space has fewer than `budget` distinct cells.
    """
    size = space_size(space)
    if size < budget:
        raise ValueError(f"its search space has {size:g} cells, fewer than the budget {budget}")
    n = max(2 * budget, 16)
    while True:
        seen, out = set(), []
        for u in unit_points(arm, replicate, len(space), n, sample_seed):
            values = to_values(space, u)
            key = repr(sorted(values.items()))
            if key not in seen:
                seen.add(key)
                out.append(values)
                if len(out) == budget:
                    return out
        if n >= 1 << 16:
            raise ValueError(f"its first {n} sequence points give only {len(out)} distinct cells, fewer than the "
                             f"budget {budget}")
        n *= 4


# ---- planning ---------------------------------------------------------------------------------------

def plan_study(sweep: Sweep) -> None:
    """The arms, their stages and the trials known before any result: stage 1 (two-stage: the
    baseline's backbone trials) or every tuned arm's trials (joint). Stage 2's trials need stage 1's
    picks (`ssl_trials`)."""
    spec, path = sweep.spec, sweep.path
    assert spec.arms is not None and spec.tune is not None
    two_stage = spec.protocol == "two-stage"
    halving = spec.tune.search == "successive-halving"
    backbone = dict(spec.backbone.space) if two_stage and spec.backbone else {}
    for name, a in spec.arms.items():
        parent = a.parent
        if two_stage and parent is None and name != spec.baseline and not a.space:
            parent = spec.baseline  # nothing of its own to tune: the backbone's pick with its settings
        arm = Arm(name=name, fixed=dict(a.set), parent=parent)
        if parent is not None:
            arm.stage, arm.space = "derived", {}
        elif two_stage and name == spec.baseline:
            arm.stage, arm.space = "backbone", backbone
            arm.budget = (spec.backbone.budget if spec.backbone else None) or spec.tune.budget
        elif two_stage:
            arm.stage, arm.space, arm.budget = "ssl", dict(a.space), spec.tune.budget
            clash = sorted(set(arm.space) & set(backbone))
            if clash:
                raise ConfigError(f"{path}: arms.{name}.space: {', '.join(clash)} is a backbone knob (backbone.space)",
                                  hint="stage 2 tunes an SSL arm's own knobs at the backbone's pick")
        else:
            arm.stage, arm.space, arm.budget = "joint", {**spec.tune.space, **a.space}, spec.tune.budget
        for key in [*arm.fixed, *arm.space]:
            if full_key(key) in ("train.seed",) or full_key(key).startswith("split."):
                raise ConfigError(f"{path}: arms.{name}: {key} cannot vary between arms or cells",
                                  hint="put split.* in the spec's set: every arm is scored on the same pairs; "
                                       "seeds come from 'seeds' and tune.seeds")
        both = sorted(set(arm.fixed) & set(arm.space))
        if both:
            raise ConfigError(f"{path}: arms.{name}: {', '.join(both)} is both fixed (set) and tuned (space)")
        if arm.tuned:
            size = space_size(arm.space)
            if size < arm.budget:
                where = "backbone.space" if arm.stage == "backbone" else f"arms.{name}"
                raise ConfigError(f"{path}: {where}: its search space has {size:g} cells, fewer than the budget "
                                  f"{arm.budget}",
                                  hint="add values or use a range ({log_uniform: [lo, hi]}), or lower the budget: "
                                       "every tuned arm gets the same number of trials")
        sweep.arms[name] = arm
    for key in spec.curves:
        if full_key(key) == "train.seed" or full_key(key).startswith("split."):
            raise ConfigError(f"{path}: curves.{key}: a curve varies a model or training knob, not {key}")
    if halving:
        probe = make_cell(sweep, {}, stage="tune")
        if probe.cfg.train.steps is None:
            raise ConfigError(f"{path}: tune.search: successive-halving needs train.steps (its rungs are fractions "
                              "of it)", hint="set train.steps in the spec's set, e.g. {train.steps: 900}")
        for name, arm in sweep.arms.items():
            if "steps" in arm.space or "train.steps" in arm.space or "steps" in arm.fixed or "train.steps" in arm.fixed:
                raise ConfigError(f"{path}: arms.{name}: successive halving sets train.steps per rung: "
                                  "leave it out of the arm's set and space")
            if arm.tuned:
                arm.rungs = halving_rungs(arm.budget, probe.cfg.train.steps)
    for arm in sweep.arms.values():
        if arm.stage in ("backbone", "joint"):
            for r, seed in enumerate(spec.tune.seeds or ()):
                arm.trials[r] = [_trial_cell(sweep, arm, {**arm.fixed, **v, "seed": seed}, r, i)
                                 for i, v in enumerate(trial_values(arm.name, r, arm.space, arm.budget,
                                                                    spec.tune.sample_seed))]
    sweep.cells = [c for arm in sweep.arms.values() for cells in arm.trials.values() for c in cells]
    for c in sweep.cells[:1]:
        if c.cfg.split.validation_fraction <= 0:
            raise ConfigError(f"{path}: split.validation_fraction is 0, so selection would have to read the test split",
                              hint="set split.validation_fraction > 0 (e.g. 0.1) in the schema or the spec's set")
        names = {f"{m}@{k}" for m in ("recall", "map", "ndcg", "mrr") for k in c.cfg.eval.k}
        if spec.tune.metric not in names:
            raise ConfigError(f"{path}: tune.metric: {spec.tune.metric!r} is not computed",
                              hint=f"one of {', '.join(sorted(names))} (eval.k sets the cutoffs)")
    # configs that only become known after selection are checked now, on the first trial's values
    first = {name: arm.trials[0][0].values for name, arm in sweep.arms.items() if arm.trials}
    base = first.get(str(spec.baseline), {})
    for name, arm in sweep.arms.items():
        if arm.stage == "ssl":
            v = trial_values(name, 0, arm.space, arm.budget, spec.tune.sample_seed)[0]
            make_cell(sweep, {**_knobs(sweep, str(spec.baseline), base), **arm.fixed, **v, "seed": base.get("seed", 0)},
                      arm=name, stage="tune", split="validation")
    for name, arm in sweep.arms.items():
        if arm.stage == "derived":
            root = sweep.arms[arm.parent or ""]
            if root.trials:
                make_cell(sweep, {**root.trials[0][0].values, **arm.fixed}, arm=name, stage="final")


ETA = 3  # successive halving: each rung keeps the best third, trained 3x as long


def halving_rungs(budget: int, max_steps: int) -> list[tuple[int, int]]:
    """Successive halving's rungs for `budget` trials: (trials trained at that rung, their steps).
    K = ⌊log_3 budget⌋ rungs after the first; rung i keeps ⌊budget / 3^i⌋ trials at max_steps / 3^(K−i)
    steps, so the last rung trains ⌊budget / 3^K⌋ trials in full (budget < 3: every trial in full)."""
    k = 0
    while ETA ** (k + 1) <= budget:
        k += 1
    return [(max(1, budget // ETA ** i), max(1, round(max_steps / ETA ** (k - i)))) for i in range(k + 1)]


def _trial_cell(sweep: Sweep, arm: Arm, values: dict[str, Any], r: int, i: int) -> Cell:
    """A trial's cell (successive halving: at its first rung's steps)."""
    if len(arm.rungs) > 1:
        return make_cell(sweep, {**values, "steps": arm.rungs[0][1]}, arm=arm.name, stage="tune",
                         split="validation", replicate=r, trial=i, rung=0)
    return make_cell(sweep, values, arm=arm.name, stage="tune", split="validation", replicate=r, trial=i,
                     rung=0 if arm.rungs else None)


def promote(sweep: Sweep, results: list[CellResult], rung: int, *, seed_checkpoints: bool = True) -> list[Cell]:
    """Successive halving: each (arm, replicate)'s best ⌊budget / 3^rung⌋ trials of rung − 1 (by
    validation, ties to the earlier trial), trained on to rung's steps. A new cell starts from its
    lower rung's checkpoint (copied in, then resumed), so a rung costs only its extra steps."""
    import os
    import shutil

    from sslkit.study.cells import cell_status

    assert sweep.spec.tune is not None
    metric = sweep.spec.tune.metric
    by_key: dict[tuple[str, int], list[CellResult]] = {}
    for res in results:
        c = res.cell
        if c.stage == "tune" and c.rung == rung - 1 and c.arm is not None and c.replicate is not None:
            by_key.setdefault((c.arm, c.replicate), []).append(res)
    cells = []
    for (name, r), got in by_key.items():
        arm = sweep.arms[name]
        if rung >= len(arm.rungs):
            continue
        keep, steps = arm.rungs[rung]
        select_best({(name, r): got}, metric)  # validation results only
        top = sorted(got, key=lambda x: (-x.eval["metrics"][metric], x.cell.trial or 0))[:keep]
        for res in sorted(top, key=lambda x: x.cell.trial or 0):
            src = res.cell
            cell = make_cell(sweep, {**src.values, "steps": steps}, arm=name, stage="tune", split="validation",
                             replicate=r, trial=src.trial, rung=rung)
            if seed_checkpoints and cell_status(cell) == "new" and (src.dir / "checkpoint.pt").exists():
                cell.dir.mkdir(parents=True, exist_ok=True)
                for f in ("run.json", "metrics.jsonl", "mi.json", "checkpoint.pt"):  # the checkpoint last: it
                    if (src.dir / f).exists():                                      # makes the cell resumable
                        shutil.copyfile(src.dir / f, cell.dir / f".{f}.tmp")
                        os.replace(cell.dir / f".{f}.tmp", cell.dir / f)
            cells.append(cell)
    return cells


def _knobs(sweep: Sweep, arm: str, values: dict[str, Any]) -> dict[str, Any]:
    """The tuned knobs of an arm's trial values (not its fixed settings, not the seed)."""
    return {k: values[k] for k in sweep.arms[arm].space if k in values}


def ssl_trials(sweep: Sweep) -> list[Cell]:
    """Stage 2 of a two-stage study: each SSL arm's trials at the backbone's pick of the same
    replicate (a replicate whose backbone has no pick yet has no stage-2 trials yet)."""
    spec = sweep.spec
    assert spec.tune is not None and spec.tune.seeds is not None
    cells = []
    for name, arm in sweep.arms.items():
        if arm.stage != "ssl":
            continue
        for r, seed in enumerate(spec.tune.seeds):
            pick = sweep.picks.get((str(spec.baseline), r))
            if pick is None:
                continue
            backbone = _knobs(sweep, str(spec.baseline), pick)
            arm.trials[r] = [_trial_cell(sweep, arm, {**backbone, **arm.fixed, **v, "seed": seed}, r, i)
                             for i, v in enumerate(trial_values(name, r, arm.space, arm.budget, spec.tune.sample_seed))]
            cells += arm.trials[r]
    return cells


def select_best(tuning: dict[Any, list[CellResult]], metric: str) -> dict[Any, CellResult]:
    """Each (arm, replicate)'s best trial by `metric` — from VALIDATION results only.

    Ties go to the earlier trial. A key without results gets no pick.

    Raises:
        ValueError: a result scored on any split but validation (selection never reads test).
    """
    picks = {}
    for key, results in tuning.items():
        for r in results:
            if r.split != "validation" or r.eval.get("split", "validation") != "validation":
                raise ValueError(f"{r.cell.dir}: selection reads validation results only, got {r.split}")
        if results:
            order = sorted(results, key=lambda r: r.cell.trial or 0)
            picks[key] = max(order, key=lambda r: (r.eval["metrics"][metric], -order.index(r)))
    return picks


def update_picks(sweep: Sweep, results: list[CellResult], *, complete: bool = False) -> None:
    """Select every tuned (arm, replicate)'s pick from its trials' validation results (with
    `complete`, only once every trial of it has a result)."""
    assert sweep.spec.tune is not None
    by_key: dict[tuple[str, int], list[CellResult]] = {}
    for res in results:
        c = res.cell
        if c.stage == "tune" and c.replicate is not None and c.arm is not None:
            last = len(sweep.arms[c.arm].rungs) - 1
            if last > 0 and c.rung != last:  # successive halving: the pick is the last rung's best
                continue
            by_key.setdefault((c.arm, c.replicate), []).append(res)
    for (name, r), got in by_key.items():
        arm = sweep.arms[name]
        want = arm.rungs[-1][0] if len(arm.rungs) > 1 else len(arm.trials.get(r, ()))
        if complete and len(got) < want:
            continue
        best = select_best({(name, r): got}, sweep.spec.tune.metric)[(name, r)]
        sweep.picks[(name, r)] = pick_of(best.cell)


def pick_of(cell: Cell) -> dict[str, Any]:
    """A trial's settings as a pick: its values without the seed (and without a rung's steps)."""
    drop = {"seed"} | ({"steps"} if cell.rung is not None else set())
    return {k: v for k, v in cell.values.items() if k not in drop}


def pick_values(sweep: Sweep, name: str, replicate: int) -> dict[str, Any] | None:
    """An arm's settings in a replicate: a tuned arm's pick, a derived arm's parent's pick changed by
    its set; None while it has no pick."""
    arm = sweep.arms[name]
    if arm.parent is not None:
        parent = pick_values(sweep, arm.parent, replicate)
        return None if parent is None else {**parent, **arm.fixed}
    return sweep.picks.get((name, replicate))


def later_cells(sweep: Sweep) -> list[Cell]:
    """A study's cells after selection: each replicate's pick of each arm with every final seed
    (test), the baseline's replicate-0 pick with the null seeds (test), and the curves around each
    arm's replicate-0 pick (validation, replicate 0's tuning seed). Picks not known yet are left out."""
    spec = sweep.spec
    assert spec.tune is not None and spec.tune.seeds is not None
    cells = []
    for name in sweep.arms:
        for r in range(spec.tune.replicates):
            pick = pick_values(sweep, name, r)
            if pick is None:
                continue
            cells += [make_cell(sweep, {**pick, "seed": s}, arm=name, stage="final", replicate=r) for s in spec.seeds]
            if name == spec.baseline and r == 0:
                cells += [make_cell(sweep, {**pick, "seed": s}, arm=name, stage="null", replicate=r)
                          for s in spec.null_seeds]
    for key, curve in spec.curves.items():
        for name in curve.arms:
            pick = pick_values(sweep, name, 0)
            if pick is not None:
                cells += [make_cell(sweep, {**pick, key: v, "seed": spec.tune.seeds[0]}, arm=name, replicate=0,
                                    stage=f"curve:{key}", split="validation") for v in curve.values]
    return cells


def expected_cells(sweep: Sweep) -> int:
    spec = sweep.spec
    assert spec.tune is not None
    tuned = sum(sum(k for k, _ in a.rungs) if a.rungs else a.budget for a in sweep.arms.values() if a.tuned
                ) * spec.tune.replicates
    return (tuned + len(sweep.arms) * spec.tune.replicates * len(spec.seeds) + len(spec.null_seeds)
            + sum(len(c.arms) * len(c.values) for c in spec.curves.values()))


def run_study(sweep: Sweep, *, log: Callable[[str], None], on_event: Event,
              stop_on_signals: bool) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    """Stage 1 (or joint) trials on validation → picks → stage 2 trials (two-stage) → picks →
    preregistration → every replicate's picks with the final seeds on test, null seeds, curves.
    Returns the results and the failed cells."""
    total = expected_cells(sweep)
    kw: dict[str, Any] = dict(log=log, on_event=on_event, stop_on_signals=stop_on_signals, total=total)
    stage1 = sweep.cells
    results, failed, sweep.cells = _run_trials(sweep, stage1, kw, start=0)
    update_picks(sweep, results)
    if sweep.spec.protocol == "two-stage":
        more, more_failed, cells = _run_trials(sweep, ssl_trials(sweep), kw, start=len(sweep.cells))
        sweep.cells = sweep.cells + cells
        results, failed = results + more, failed + more_failed
        update_picks(sweep, results)
    later = later_cells(sweep)
    if any(c.split == "test" for c in later):
        preregister(sweep)
    more, more_failed = run_cells(sweep, later, start=len(sweep.cells), **kw)
    return results + more, failed + more_failed


def _run_trials(sweep: Sweep, cells: list[Cell], kw: dict[str, Any],
                start: int) -> tuple[list[CellResult], list[tuple[Cell, str]], list[Cell]]:
    """Run trials; successive halving: rung by rung, each rung's best promoted to the next."""
    results, failed = run_cells(sweep, cells, start=start, **kw)
    every, latest = list(cells), results
    for rung in range(1, max((len(a.rungs) for a in sweep.arms.values()), default=0)):
        nxt = promote(sweep, latest, rung)
        if not nxt:
            break
        latest, more_failed = run_cells(sweep, nxt, start=start + len(every), **kw)
        every += nxt
        results, failed = results + latest, failed + more_failed
    return results, failed, every


def planned_cells(sweep: Sweep) -> list[Cell]:
    """Every cell the study will score, as far as it is known now (`--dry-run`): the trials, then —
    once a replicate's trials are all scored on validation — the next stage, finals, null seeds, curves."""
    from sslkit.errors import CheckpointError
    from sslkit.study.cells import cell_status, load_result

    def done(cells: list[Cell]) -> list[CellResult]:
        out = []
        for c in cells:
            if cell_status(c) == "done":
                try:
                    out.append(load_result(c))
                except CheckpointError:
                    pass
        return out

    def known(trials: list[Cell]) -> list[Cell]:  # successive halving: the rungs promoted so far
        cells, got = list(trials), done(trials)
        for rung in range(1, max((len(a.rungs) for a in sweep.arms.values()), default=0)):
            nxt = promote(sweep, got, rung, seed_checkpoints=False) if got else []  # --dry-run writes nothing
            cells += nxt
            got = done(nxt)
        update_picks(sweep, done(cells), complete=True)
        return cells

    cells = known(sweep.cells)
    if sweep.spec.protocol == "two-stage":
        cells += known(ssl_trials(sweep))
    return cells + later_cells(sweep)


# ---- preregistration --------------------------------------------------------------------------------

def spec_hash(sweep: Sweep) -> str:
    """sha256 of the spec file's bytes, and of the command line's changes to it (--budget, --seeds, --set...)."""
    import json

    h = hashlib.sha256(sweep.path.read_bytes())
    if sweep.overrides:
        h.update(b"\n# command line: " + json.dumps(sweep.overrides, sort_keys=True).encode())
    return h.hexdigest()


def prereg_path(sweep: Sweep) -> Any:
    return sweep.out / f"{sweep.path.stem}.preregistration.json"


def preregister(sweep: Sweep) -> dict[str, Any]:
    """Record the spec's hash, the git commit and the time before any final cell is scored on test
    (`{out}/{spec}.preregistration.json`). Written once; a later run with another hash is appended to
    its `reruns` (the study is then reported as a rerun: its spec changed after test was read)."""
    import sslkit
    from sslkit.data import io

    path = prereg_path(sweep)
    now = {"spec": str(sweep.path), "spec_sha256": spec_hash(sweep), "overrides": sweep.overrides,
           "commit": sslkit.source_revision(), "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        rec = io.read_json(path)
    except (OSError, ValueError):
        rec = None
    if not isinstance(rec, dict) or "spec_sha256" not in rec:
        rec = {**now, "reruns": []}
    elif rec["spec_sha256"] != now["spec_sha256"] and now["spec_sha256"] not in {x.get("spec_sha256") for x in rec.get("reruns", [])}:
        rec.setdefault("reruns", []).append(now)
    else:
        return rec
    sweep.out.mkdir(parents=True, exist_ok=True)
    io.write_json(path, rec)
    return rec


def preregistration(sweep: Sweep) -> dict[str, Any] | None:
    """The summary's preregistration: the recorded hash, commit and time; `rerun` when the spec (or
    the command line's changes) now hashes differently from the hash recorded before test was read."""
    from sslkit.data import io

    try:
        rec = io.read_json(prereg_path(sweep))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or "spec_sha256" not in rec:
        return None
    current = spec_hash(sweep)
    rerun = current != rec["spec_sha256"]
    commit = rec.get("commit") or {}
    return {"spec_sha256": rec["spec_sha256"], "commit": commit.get("commit") if isinstance(commit, dict) else commit,
            "dirty": commit.get("dirty") if isinstance(commit, dict) else None,
            "recorded_at": rec.get("recorded_at"), "rerun": rerun, "current_sha256": current,
            "file": str(prereg_path(sweep)),
            "note": ("the spec (or its command-line changes) differs from the one recorded before the test split was "
                     "first read: this is a rerun, and its test results are not a pre-registered result")
            if rerun else "the spec is the one recorded before the test split was first read"}
