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

import hashlib
import itertools
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sslkit import io
from sslkit.config import Config, dump_config, load_config
from sslkit.errors import CheckpointError, ConfigError, SslkitError

SHORT_KEYS = {"aug": "ssl.aug", "alpha": "ssl.alpha", "dropout": "ssl.dropout", "fraction": "split.fraction",
              "seed": "train.seed", "lr": "train.lr", "epochs": "train.epochs", "steps": "train.steps",
              "batch_size": "train.batch_size", "temperature": "train.temperature",
              "optimizer": "train.optimizer", "ssl_temperature": "ssl.temperature",
              "logq": "train.logq_correction", "hidden": "model.hidden", "sampling": "ssl.item_sampling"}
REPORTED = ("recall", "map")
PER_QUERY_FILES = {"test": "per_query.npz", "validation": "per_query.validation.npz"}
EVAL_FILES = {"test": "eval.json", "validation": "eval.validation.json"}  # as sslkit.evaluate writes them
CI_PAIRED = ("paired bootstrap over seeds and queries: seed s of an arm is paired with seed s of the baseline "
             "(same initialization and batch order); each replicate resamples seed indices and query indices, the "
             "same for both arms; the percentile interval is expanded for few seeds (sqrt(n/(n-1))·t_df/z, "
             "Welch-Satterthwaite df); p_value is one-sided (share of replicates with relative <= 0)")
CI_UNPAIRED = ("bootstrap over queries (paired) and seeds (each arm's resampled independently; the groups share "
               "no seed); p_value is one-sided (share of replicates with relative <= 0)")


def _grid_values(name: str, values: Any) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ValueError(f"{name}: expected a non-empty list of values")
    if len({json.dumps(v) for v in values}) != len(values):
        raise ValueError(f"{name}: repeated values")
    return values


class ArmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    set: dict[str, Any] = Field(default_factory=dict, description="The arm's fixed settings, e.g. {aug: cfm}.")
    space: dict[str, list[Any]] = Field(default_factory=dict, description="Its own knobs to tune, added to tune.space.")
    parent: str | None = Field(None, alias="from", description="Not tuned: that tuned arm's pick, changed by `set`.")

    @field_validator("space")
    @classmethod
    def _lists(cls, space: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {k: _grid_values(k, v) for k, v in space.items()}

    @model_validator(mode="after")
    def _derived_is_not_tuned(self) -> "ArmSpec":
        if self.parent is not None and self.space:
            raise ValueError("an arm with 'from' takes its parent's pick and is not tuned: drop 'space'")
        return self


class TuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: int = Field(ge=1, description="Tuning cells per tuned arm, the same for every arm.")
    metric: str = Field("recall@50", description="Validation metric that selects each arm's cell (higher wins).")
    space: dict[str, list[Any]] = Field(default_factory=dict, description="Knobs every tuned arm searches.")
    seed: int | None = Field(None, description="Training seed of the tuning cells [the first of seeds].")
    sample_seed: int = Field(0, description="Seed of the random subset when an arm's grid exceeds the budget.")

    @model_validator(mode="before")
    @classmethod
    def _validation_only(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and ({"split", "on", "selection_split"} & raw.keys()):
            raise ValueError("selection always reads the validation split; test is read once, for the final "
                             "table, so there is no key to select on another split")
        return raw

    @field_validator("space")
    @classmethod
    def _lists(cls, space: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {k: _grid_values(k, v) for k, v in space.items()}


class CurveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arms: list[str] = Field(min_length=1, description="Arms whose pick the knob is varied around.")
    values: list[Any] = Field(min_length=1, description="Values of the knob (the curve's x).")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_path: str = Field(alias="schema", description="The dataset's schema, relative to the spec file.")
    out: str = Field("runs/sweeps", description="Directory of the cell runs, relative to the spec file.")
    set: dict[str, Any] = Field(default_factory=dict, description="Settings shared by every cell (schema keys).")
    grid: dict[str, list[Any]] | None = Field(None, description="Plain grid: key → values; every combination is a cell.")
    baseline: dict[str, Any] | str | None = Field(
        None, description="Grid: the baseline cells' values, e.g. {aug: none}; arms: the baseline arm's name.")
    index: str | None = Field(None, description="Evaluation backend: exact | hnsw [eval.index].")
    arms: dict[str, ArmSpec] | None = Field(None, description="Tuning study: arm name → set / space / from.")
    tune: TuneSpec | None = Field(None, description="Tuning study: budget, metric, shared space.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="Seeds of each arm's pick, on test.")
    null_seeds: list[int] = Field(default_factory=list, description="More seeds of the baseline's pick: null check.")
    curves: dict[str, CurveSpec] = Field(default_factory=dict, description="Knob → arms and values, on validation.")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if grid is None:
            return grid
        if not grid:
            raise ValueError("needs at least one key with a list of values")
        return {k: _grid_values(k, v) for k, v in grid.items()}

    @model_validator(mode="after")
    def _one_kind(self) -> "SweepSpec":
        if (self.grid is None) == (self.arms is None):
            raise ValueError("give either 'grid' (a plain grid) or 'arms' with 'tune' (a tuning study)")
        if self.grid is not None:
            extra = [k for k in ("tune", "null_seeds", "curves") if getattr(self, k)]
            if extra or isinstance(self.baseline, str):
                raise ValueError(f"{', '.join(extra) or 'a baseline arm name'}: only for a tuning study (arms)")
            return self
        if self.tune is None or not self.arms:
            raise ValueError("a tuning study needs 'arms' and 'tune' (budget, metric, space)")
        if not isinstance(self.baseline, str) or self.baseline not in self.arms:
            raise ValueError(f"baseline: name one of the arms ({', '.join(self.arms)})")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: a non-empty list of distinct seeds")
        if set(self.null_seeds) & set(self.seeds) or len(set(self.null_seeds)) != len(self.null_seeds):
            raise ValueError("null_seeds: distinct seeds not among 'seeds'")
        if self.null_seeds and len(self.seeds) + len(self.null_seeds) < 4:
            raise ValueError("null_seeds: the null check needs at least 4 baseline seeds in all")
        for name, arm in self.arms.items():
            if arm.parent is not None and (arm.parent not in self.arms or self.arms[arm.parent].parent is not None):
                raise ValueError(f"arms.{name}.from: name a tuned arm (one without 'from')")
        for key, curve in self.curves.items():
            unknown = [a for a in curve.arms if a not in self.arms]
            if unknown:
                raise ValueError(f"curves.{key}.arms: {', '.join(unknown)} is not an arm")
            _grid_values(f"curves.{key}.values", curve.values)
        return self


@dataclass
class Cell:
    values: dict[str, Any]  # grid (or arm) key → value
    cfg: Config
    dir: Path
    split: str = "test"  # what it is scored on: test (grid, picks, null check) or validation (tuning, curves)
    arm: str | None = None  # tuning study: the arm it belongs to
    stage: str = "grid"  # grid | tune | final | null | curve

    @property
    def group(self) -> str:
        return self.arm if self.arm is not None else _label({k: v for k, v in self.values.items() if k != "seed"})

    @property
    def label(self) -> str:
        head = "" if self.arm is None else f"{self.arm}[{self.stage}]" + (":" if self.values else "")
        return head + _label(self.values) if self.values or self.arm is None else head


@dataclass
class Arm:
    """A tuning study's arm: fixed values, its candidate cells (tuned) or its parent (derived)."""

    name: str
    fixed: dict[str, Any]
    space: dict[str, list[Any]] = field(default_factory=dict)
    parent: str | None = None
    grid_size: int = 0
    tuning: list[Cell] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        return self.grid_size > len(self.tuning)


@dataclass
class Sweep:
    spec: SweepSpec
    path: Path
    cells: list[Cell]  # a grid's cells; a study's tuning cells (the rest follows from the selection)
    out: Path
    groups: dict[str, list[Cell]] = field(default_factory=dict)
    baseline_of: dict[str, str] = field(default_factory=dict)  # group → its baseline group
    arms: dict[str, Arm] = field(default_factory=dict)
    schema: Path = Path()
    fixed: list[str] = field(default_factory=list)  # the spec's set (and --set) as overrides
    selected: dict[str, dict[str, Any]] = field(default_factory=dict)  # tuned arm → its pick (knob values)

    @property
    def tuned(self) -> bool:
        return bool(self.arms)


def full_key(key: str) -> str:
    return SHORT_KEYS.get(key, key)


def _label(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={_fmt(v)}" for k, v in values.items()) or "all"


def _fmt(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def config_hash(cfg: Config) -> str:
    """Hash of everything that changes a run's result (not where the schema file lives).

    The config, plus the sslkit version and `NUMERICS_VERSION`: a cell trained by other training
    arithmetic gets another name, so it is retrained instead of mixed in.
    """
    import sslkit
    from sslkit.train import training_precision  # torch: imported only where cells are named

    data = {k: v for k, v in dump_config(cfg).items() if k not in ("base_dir", "cache_dir")}
    data["sslkit"] = {"version": sslkit.__version__, "numerics": sslkit.NUMERICS_VERSION}
    data["train"] = {k: v for k, v in data["train"].items() if k not in ("log_every", "device")}
    if training_precision(cfg) == "fp32":  # as cells were named before the setting existed
        del data["train"]["precision"]
    else:  # auto is hashed as what it resolves to on this machine: its runs are bf16 runs
        data["train"]["precision"] = "bf16"
    if data["eval"]["index"] == "exact":  # ANN settings cannot change an exact evaluation
        data["eval"] = {k: v for k, v in data["eval"].items() if k not in ("hnsw", "ann_queries")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def cell_dirname(cfg: Config) -> str:
    """Readable and unique: the method's main settings, then the config hash."""
    frac = f"-f{cfg.split.fraction:g}" if cfg.split.fraction != 1 else ""
    return (f"{cfg.ssl.aug}-a{cfg.ssl.alpha:g}-dr{cfg.ssl.dropout:g}{frac}-lr{cfg.train.lr:g}"
            f"-t{cfg.train.temperature:g}-s{cfg.train.seed}-{config_hash(cfg)}")


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
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: sweep spec not found")
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read sweep spec ({getattr(e, 'problem', None) or e})")
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
        _plan_study(sweep)
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


def make_cell(sweep: Sweep, values: dict[str, Any], *, arm: str | None = None, stage: str = "grid",
              split: str = "test") -> Cell:
    """Resolve one cell's config (the spec's set, then `values`) and name its run directory."""
    try:
        cfg = load_config(sweep.schema, [*sweep.fixed, *(f"{full_key(k)}={json.dumps(v)}" for k, v in values.items())])
    except ConfigError as e:
        where = _label(values) if arm is None else f"{arm} ({_label(values)})"
        raise ConfigError(f"{sweep.path}: cell {where}: {e.message}", hint=e.hint)
    return Cell(values=values, cfg=cfg, dir=sweep.out / cell_dirname(cfg), split=split, arm=arm, stage=stage)


def _plan_study(sweep: Sweep) -> None:
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
            for values in _draw(name, space, spec.tune.budget, spec.tune.sample_seed):
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


def _draw(arm: str, space: dict[str, list[Any]], budget: int, sample_seed: int) -> list[dict[str, Any]]:
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


def cell_status(cell: Cell) -> str:
    """done (scored on the cell's split) | trained | partial (checkpoint, resumable) | new."""
    d = cell.dir
    if (d / EVAL_FILES[cell.split]).exists() and (d / PER_QUERY_FILES[cell.split]).exists():
        return "done"
    if (d / "summary.json").exists():
        return "trained"
    if (d / "checkpoint.pt").exists():
        return "partial"
    return "new"


@dataclass
class CellResult:
    cell: Cell
    eval: dict[str, Any]
    per_query: dict[str, np.ndarray]
    queries: np.ndarray

    @property
    def split(self) -> str:
        return self.cell.split


Event = Callable[[str, dict[str, Any]], None]


def run_sweep(sweep: Sweep, *, log: Callable[[str], None] = lambda _: None, on_event: Event = lambda k, p: None,
              stop_on_signals: bool = False) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    """Train and score every cell not done yet. Returns the results and the failed cells.

    A study runs its tuning cells (validation), selects each arm's pick from their validation
    results alone (`select_best`), then runs the picks' seeds (test), null seeds and curves.
    A cell that fails (e.g. a non-finite loss) is reported and the sweep goes on; an interrupt
    (`Interrupted`) stops it with the current cell's checkpoint saved.
    """
    if not sweep.tuned:
        return _run_cells(sweep, sweep.cells, log=log, on_event=on_event, stop_on_signals=stop_on_signals)
    spec = sweep.spec
    assert spec.tune is not None
    expected = len(sweep.cells) + len(sweep.arms) * len(spec.seeds) + len(spec.null_seeds) + sum(
        len(c.arms) * len(c.values) for c in spec.curves.values())
    results, failed = _run_cells(sweep, sweep.cells, log=log, on_event=on_event, stop_on_signals=stop_on_signals,
                                 total=expected)
    sweep.selected = {name: r.cell.values for name, r in select_best(
        {name: [r for r in results if r.cell.arm == name] for name, a in sweep.arms.items() if a.parent is None},
        spec.tune.metric).items()}
    later = later_cells(sweep)
    more, more_failed = _run_cells(sweep, later, log=log, on_event=on_event, stop_on_signals=stop_on_signals,
                                   total=expected, start=len(sweep.cells))
    return results + more, failed + more_failed


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


def _run_cells(sweep: Sweep, cells: list[Cell], *, log: Callable[[str], None], on_event: Event,
               stop_on_signals: bool, total: int | None = None,
               start: int = 0) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    from sslkit.evaluate import evaluate_run
    from sslkit.train import run_training

    results, failed = [], []
    for i, cell in enumerate(cells):
        status = cell_status(cell)
        on_event("cell", {"index": start + i, "total": max(total or 0, start + len(cells)), "label": cell.label,
                          "status": status, "dir": str(cell.dir), "split": cell.split})
        try:
            if status in ("new", "partial"):
                run_training(cell.cfg, run_dir=cell.dir, resume=status == "partial", overwrite=False,
                             argv=["sslkit", "sweep", str(sweep.path)], log=log, on_event=on_event,
                             stop_on_signals=stop_on_signals)
            if status == "done":
                try:
                    results.append(load_result(cell))
                    continue
                except CheckpointError as e:  # damaged outside sslkit (writes are atomic): evaluate again
                    log(f"{e.line()}; evaluating cell {cell.label} again")
            r = evaluate_run(cell.dir, log=log, split=cell.split)
            _save_per_query(cell.dir / PER_QUERY_FILES[cell.split], r.queries, r.per_query, eval_settings(cell))
            results.append(load_result(cell))
        except SslkitError as e:
            failed.append((cell, e.line()))
            log(f"cell {cell.label} failed: {e.line()}")
    return results, failed


def eval_settings(cell: Cell) -> dict[str, Any]:
    """The evaluation options the sweep scores a cell with; a result written with others
    (say `sslkit eval CELL --k 5` afterwards) is not trusted: the cell is evaluated again."""
    e = cell.cfg.eval
    return {"split": cell.split, "index": e.index, "exclude_seen": e.exclude_seen, "k": sorted(set(e.k))}


def _save_per_query(path: Path, queries: np.ndarray, per_query: dict[str, np.ndarray],
                    settings: dict[str, Any]) -> None:
    import io as _bytes

    buf = _bytes.BytesIO()
    np.savez(buf, queries=queries, settings=np.array(json.dumps(settings, sort_keys=True)),
             **{k.replace("@", "_at_"): v for k, v in per_query.items()})
    io.atomic_write_bytes(path, buf.getvalue())


def load_result(cell: Cell) -> CellResult:
    """A done cell's evaluation and per-query metrics on its split.

    Raises:
        CheckpointError: either file is unreadable or not what `sslkit sweep` wrote.
    """
    try:
        with np.load(cell.dir / PER_QUERY_FILES[cell.split], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        queries = arrays.pop("queries")
        want = eval_settings(cell)
        if str(arrays.pop("settings", "")) != json.dumps(want, sort_keys=True):
            raise ValueError(f"{PER_QUERY_FILES[cell.split]} was written with other evaluation settings")
        evaluation = io.read_json(cell.dir / EVAL_FILES[cell.split])
        differ = [f"{k}={evaluation[k]}" for k in want if isinstance(evaluation, dict) and k in evaluation
                  and evaluation[k] != want[k]]
        if differ:
            raise ValueError(f"{EVAL_FILES[cell.split]} was written by another evaluation ({', '.join(differ)})")
        if not isinstance(evaluation, dict) or not {"metrics", "slices", "toppop"} <= evaluation.keys():
            raise ValueError(f"{EVAL_FILES[cell.split]} lacks metrics, slices or toppop")
        if evaluation.get("split", cell.split) != cell.split:
            raise ValueError(f"{EVAL_FILES[cell.split]} scores split {evaluation['split']}, not {cell.split}")
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{cell.dir}: unreadable evaluation ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
    return CellResult(cell=cell, eval=evaluation,
                      per_query={k.replace("_at_", "@"): v for k, v in arrays.items()}, queries=queries)


def summarize_sweep(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """A grid: one row per group (mean ± std over seeds, metrics and slices) and its comparison with
    its baseline group. A study: see `summarize_study`."""
    if sweep.tuned:
        return summarize_study(sweep, results, n_boot=n_boot)
    by_group: dict[str, list[CellResult]] = {}
    for r in results:
        by_group.setdefault(r.cell.group, []).append(r)
    rows = []
    for name, members in sweep.groups.items():
        got = by_group.get(name, [])
        row = _group_row(name, {k: v for k, v in members[0].values.items() if k != "seed"}, got)
        base_name = sweep.baseline_of.get(name)
        if got and base_name and base_name != name and by_group.get(base_name):
            row["baseline"] = base_name
            row.update(_versus(by_group[base_name], got, n_boot=n_boot))
        rows.append(row)
    return {"spec": str(sweep.path), "protocol": "grid: every cell scored on the test split", "cells": len(sweep.cells),
            "done": len(results), "ci_method": CI_PAIRED, "groups": rows}


def _group_row(name: str, values: dict[str, Any], got: list[CellResult]) -> dict[str, Any]:
    """mean ± std over the seeds of one group, its slices, TopPopular and mean training time."""
    from sslkit.metrics import mean_std

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


def _versus(base: list[CellResult], got: list[CellResult], *, n_boot: int, key: str = "vs_baseline") -> dict[str, Any]:
    """Relative change vs `base` with 95% CIs: paired by seed when the two share seeds."""
    from sslkit.metrics import paired_seeds_bootstrap_ci, seeds_bootstrap_ci

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
    return {key: ci, f"{key}_slices": slices, f"{key}_paired_seeds": common,
            f"{key}_ci": CI_PAIRED if common else CI_UNPAIRED}


def summarize_study(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """The protocol, each arm's budget and pick, every tuning cell's validation scores, each arm's
    seeds on test against the baseline (paired CIs), the null check and the curves."""
    from sslkit.metrics import null_false_positive_rate

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
        row = _group_row(name, arms[name].get("selected", {}), finals[name])
        if finals[name] and name != spec.baseline and base:
            row["baseline"] = spec.baseline
            row.update(_versus(base, finals[name], n_boot=n_boot))
        if finals[name] and arm.parent and finals.get(arm.parent):
            row["parent"] = arm.parent
            row.update(_versus(finals[arm.parent], finals[name], n_boot=n_boot, key="vs_parent"))
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


def _rel(t: float, b: float) -> float | None:
    return None if not np.isfinite(b) or b == 0 or not np.isfinite(t) else float(t / b - 1)


def _same_queries(a: CellResult, b: CellResult) -> None:
    if not np.array_equal(a.queries, b.queries):
        raise ConfigError(f"{a.cell.dir} and {b.cell.dir} were evaluated on different test queries",
                          hint="a grid key changed the split; keep split.* out of the grid")


def write_summary(sweep: Sweep, summary: dict[str, Any]) -> Path:
    name = sweep.path.stem
    path = sweep.out / f"{name}.sweep.json"
    sweep.out.mkdir(parents=True, exist_ok=True)
    io.write_json(path, summary)
    return path
