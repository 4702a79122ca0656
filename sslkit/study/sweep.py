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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sslkit.data import io
from sslkit.config import Config, dump_config, load_config
from sslkit.errors import CheckpointError, ConfigError, DataChangedError, SslkitError

if TYPE_CHECKING:
    from sslkit.study.tuning import Arm

SHORT_KEYS = {"aug": "ssl.aug", "alpha": "ssl.alpha", "dropout": "ssl.dropout", "fraction": "split.fraction",
              "seed": "train.seed", "lr": "train.lr", "epochs": "train.epochs", "steps": "train.steps",
              "batch_size": "train.batch_size", "temperature": "train.temperature",
              "optimizer": "train.optimizer", "ssl_temperature": "ssl.temperature",
              "logq": "train.logq_correction", "hidden": "model.hidden", "sampling": "ssl.item_sampling"}
REPORTED = ("recall", "map")
PER_QUERY_FILES = {"test": "per_query.npz", "validation": "per_query.validation.npz"}
EVAL_FILES = {"test": "eval.json", "validation": "eval.validation.json"}  # as sslkit.evaluation.evaluate writes them
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
class Sweep:
    spec: SweepSpec
    path: Path
    cells: list[Cell]  # a grid's cells; a study's tuning cells (the rest follows from the selection)
    out: Path
    groups: dict[str, list[Cell]] = field(default_factory=dict)
    baseline_of: dict[str, str] = field(default_factory=dict)  # group → its baseline group
    arms: dict[str, Arm] = field(default_factory=dict)  # a study's arms (sslkit.study.tuning)
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
    from sslkit.training.train import training_precision  # torch: imported only where cells are named

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
        from sslkit.study.tuning import plan_study

        plan_study(sweep)
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
    slice_per_query: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # see RunEval

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
    if sweep.tuned:
        from sslkit.study.tuning import run_study

        return run_study(sweep, log=log, on_event=on_event, stop_on_signals=stop_on_signals)
    return run_cells(sweep, sweep.cells, log=log, on_event=on_event, stop_on_signals=stop_on_signals)


def run_cells(sweep: Sweep, cells: list[Cell], *, log: Callable[[str], None], on_event: Event,
               stop_on_signals: bool, total: int | None = None,
               start: int = 0) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    """Train (or resume) and evaluate each cell not done yet; reuse the done ones.

    Several sweeps of one spec can run at once (one per core): a cell another process is training
    (its run directory is locked) is skipped on the first pass, then waited for and read at the
    end — so the processes leapfrog over the cells and each result is still written once.
    """
    from sslkit.errors import LockedError

    results, failed, deferred = [], [], []
    for i, cell in enumerate(cells):
        status = cell_status(cell)
        on_event("cell", {"index": start + i, "total": max(total or 0, start + len(cells)), "label": cell.label,
                          "status": status, "dir": str(cell.dir), "split": cell.split})
        try:
            results.append(_run_cell(sweep, cell, status, log=log, on_event=on_event,
                                     stop_on_signals=stop_on_signals))
        except LockedError:
            deferred.append(cell)
            log(f"cell {cell.label}: another process is training it; read at the end")
        except SslkitError as e:
            failed.append((cell, e.line()))
            log(f"cell {cell.label} failed: {e.line()}")
    for cell in deferred:
        try:
            with io.dir_lock(cell.dir, wait=True):  # until its trainer finishes (or dies: then resume it)
                pass
            results.append(_run_cell(sweep, cell, cell_status(cell), log=log, on_event=on_event,
                                     stop_on_signals=stop_on_signals))
        except SslkitError as e:
            failed.append((cell, e.line()))
            log(f"cell {cell.label} failed: {e.line()}")
    return results, failed


def _run_cell(sweep: Sweep, cell: Cell, status: str, *, log: Callable[[str], None], on_event: Event,
              stop_on_signals: bool) -> CellResult:
    from sslkit.evaluation.evaluate import evaluate_run
    from sslkit.training.train import run_training

    if status in ("new", "partial"):
        run_training(cell.cfg, run_dir=cell.dir, resume=status == "partial", overwrite=False,
                     argv=["sslkit", "sweep", str(sweep.path)], log=log, on_event=on_event,
                     stop_on_signals=stop_on_signals)
    if status == "done":
        check_data_pin(cell)
        try:
            return load_result(cell)
        except CheckpointError as e:  # damaged outside sslkit (writes are atomic): evaluate again
            log(f"{e.line()}; evaluating cell {cell.label} again")
    r = evaluate_run(cell.dir, log=log, split=cell.split)
    _save_per_query(cell.dir / PER_QUERY_FILES[cell.split], r.queries,
                    r.per_query | {f"{SLICE_KEY}{sl}{SLICE_KEY}{m}": v for sl, pq in r.slice_per_query.items()
                                   for m, v in pq.items()}, eval_settings(cell))
    return load_result(cell)


_FINGERPRINTS: dict[str, dict[str, str]] = {}  # store cache key (a hash of the data files) → fingerprint


def check_data_pin(cell: Cell) -> None:
    """A done cell's results stand only for the data it was trained on: compare the data pin in its
    run.json with the store the schema gives now (trained and partial cells are checked on load).

    Raises:
        DataChangedError: the data changed since the cell was trained; its result is not reused.
    """
    from sslkit.data.store import cache_key, describe_change, fingerprint, load_or_build

    try:
        pinned = io.read_json(cell.dir / "run.json").get("data")
    except (OSError, ValueError, AttributeError):
        pinned = None  # written before runs were pinned, or damaged: the evaluation files decide
    key = cache_key(cell.cfg)
    if not pinned or key is None:
        return
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = fingerprint(load_or_build(cell.cfg))
    if _FINGERPRINTS[key] != pinned:
        raise DataChangedError(f"{cell.dir}: the data changed since this cell was trained: "
                               f"{describe_change(pinned, _FINGERPRINTS[key])} differ",
                               hint="restore the data, or sweep into a new --out (a cell's result stands for its data)")


def eval_settings(cell: Cell) -> dict[str, Any]:
    """The evaluation options the sweep scores a cell with; a result written with others
    (say `sslkit eval CELL --k 5` afterwards) is not trusted: the cell is evaluated again."""
    e = cell.cfg.eval
    return {"split": cell.split, "index": e.index, "exclude_seen": e.exclude_seen, "k": sorted(set(e.k)),
            "per_query": PER_QUERY_VERSION}


PER_QUERY_VERSION = 2  # 2: per-query slice metrics too (slice CIs); a cell saved before is evaluated again
SLICE_KEY = "slice__"  # per_query.npz key of a slice's metric: slice__tail__recall_at_50


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
    per_query: dict[str, np.ndarray] = {}
    slices: dict[str, dict[str, np.ndarray]] = {}
    for key, v in arrays.items():
        name = key.replace("_at_", "@")
        if name.startswith(SLICE_KEY):
            sl, m = name[len(SLICE_KEY):].split(SLICE_KEY, 1)
            slices.setdefault(sl, {})[m] = v
        else:
            per_query[name] = v
    return CellResult(cell=cell, eval=evaluation, per_query=per_query, queries=queries, slice_per_query=slices)


def summarize_sweep(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """A grid: one row per group (mean ± std over seeds, metrics and slices) and its comparison with
    its baseline group. A study: see `summarize_study`."""
    if sweep.tuned:
        from sslkit.study.tuning import summarize_study

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
    return {"spec": str(sweep.path), "protocol": "grid: every cell scored on the test split", "cells": len(sweep.cells),
            "done": len(results), "ci_method": CI_PAIRED, "groups": rows}


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


def write_summary(sweep: Sweep, summary: dict[str, Any]) -> Path:
    name = sweep.path.stem
    path = sweep.out / f"{name}.sweep.json"
    sweep.out.mkdir(parents=True, exist_ok=True)
    io.write_json(path, summary)
    return path
