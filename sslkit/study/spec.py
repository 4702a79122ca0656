"""A study spec and its cells: the YAML format (`SweepSpec`), a resolved `Sweep`, its `Cell`s and
how each cell's run directory is named (settings + a hash of everything that changes its result).

The format is described in `sslkit.study.sweep`; this module only parses and names."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sslkit.config import Config, dump_config, load_config
from sslkit.errors import ConfigError


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


RANGES = ("log_uniform", "uniform", "int")  # {kind: [lo, hi]}: a continuous (or integer) range of a knob


def _space_values(name: str, values: Any) -> list[Any] | dict[str, list[float]]:
    """A knob's search space: a list of values, or one range {log_uniform | uniform | int: [lo, hi]}."""
    if isinstance(values, dict):
        if len(values) != 1 or next(iter(values)) not in RANGES:
            raise ValueError(f"{name}: expected a list of values or one of {{log_uniform: [lo, hi]}}, "
                             f"{{uniform: [lo, hi]}}, {{int: [lo, hi]}}")
        kind, bounds = next(iter(values.items()))
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
            raise ValueError(f"{name}: {kind}: expected [lo, hi], two numbers")
        lo, hi = bounds
        if not lo < hi:
            raise ValueError(f"{name}: {kind}: lo {lo} must be below hi {hi}")
        if kind == "log_uniform" and lo <= 0:
            raise ValueError(f"{name}: log_uniform: lo must be > 0 (got {lo})")
        if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ValueError(f"{name}: int: lo and hi must be integers")
        return {kind: [lo, hi]}
    return _grid_values(name, values)


def _space(space: dict[str, Any]) -> dict[str, Any]:
    return {k: _space_values(k, v) for k, v in space.items()}


SpaceValues = list[Any] | dict[str, list[float]]


class ArmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    set: dict[str, Any] = Field(default_factory=dict, description="The arm's fixed settings, e.g. {aug: cfm}.")
    space: dict[str, SpaceValues] = Field(
        default_factory=dict, description="Its own knobs to tune: lists or {log_uniform|uniform|int: [lo, hi]}.")
    parent: str | None = Field(None, alias="from", description="Not tuned: that tuned arm's pick, changed by `set`.")

    @field_validator("space", mode="before")
    @classmethod
    def _ranges(cls, space: Any) -> Any:
        return _space(space) if isinstance(space, dict) else space

    @model_validator(mode="after")
    def _derived_is_not_tuned(self) -> "ArmSpec":
        if self.parent is not None and self.space:
            raise ValueError("an arm with 'from' takes its parent's pick and is not tuned: drop 'space'")
        return self


SEARCHES = ("sequence", "successive-halving")
TUNE_SEED_BASE = 1000  # tuning replicate r trains with seed 1000 + r unless tune.seeds says otherwise


class TuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: int = Field(ge=1, description="Trials per tuned arm and replicate (two-stage: per SSL arm), the same for every arm.")
    metric: str = Field("recall@50", description="Validation metric that selects each arm's pick (higher wins).")
    space: dict[str, SpaceValues] = Field(default_factory=dict, description="Joint protocol: knobs every tuned arm searches.")
    replicates: int = Field(3, ge=1, description="Independent tuning replicates per arm (own trial sequence and seed).")
    seeds: list[int] | None = Field(None, description="Training seed of each replicate's trials [1000, 1001, ...].")
    search: str = Field("sequence", description="sequence (the first `budget` points of one seeded scrambled Sobol "
                                                "sequence, each trained in full) | successive-halving (the same "
                                                "trials; eta 3, rungs by training steps, resumed from checkpoints).")
    sample_seed: int = Field(0, description="Seeds every arm's trial sequences (with the arm's name and the replicate).")

    @model_validator(mode="before")
    @classmethod
    def _validation_only(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and ({"split", "on", "selection_split"} & raw.keys()):
            raise ValueError("selection always reads the validation split; test is read once, for the final "
                             "table, so there is no key to select on another split")
        if isinstance(raw, dict) and "seed" in raw:
            raise ValueError("tune.seed is now tune.seeds: one training seed per tuning replicate, disjoint from "
                             "'seeds' (finals train on fresh seeds)")
        return raw

    @field_validator("space", mode="before")
    @classmethod
    def _ranges(cls, space: Any) -> Any:
        return _space(space) if isinstance(space, dict) else space

    @field_validator("search")
    @classmethod
    def _search(cls, search: str) -> str:
        if search not in SEARCHES:
            raise ValueError(f"search: {search!r} is not one of {', '.join(SEARCHES)}")
        return search

    @model_validator(mode="after")
    def _seeds(self) -> "TuneSpec":
        if self.seeds is None:
            self.seeds = [TUNE_SEED_BASE + r for r in range(self.replicates)]
        elif len(self.seeds) != self.replicates or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.replicates} distinct seeds, one per replicate (tune.replicates)")
        return self


class BackboneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: dict[str, SpaceValues] = Field(description="Stage 1: the backbone's knobs (lr, temperature, logq, hidden...), "
                                                      "tuned on the baseline arm.")
    budget: int | None = Field(None, ge=1, description="Stage-1 trials per replicate [tune.budget].")

    @field_validator("space", mode="before")
    @classmethod
    def _ranges(cls, space: Any) -> Any:
        if isinstance(space, dict) and not space:
            raise ValueError("needs at least one knob")
        return _space(space) if isinstance(space, dict) else space


PROTOCOLS = ("two-stage", "joint")


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
    protocol: str | None = Field(None, description="Tuning study: two-stage (default: backbone on the baseline, then "
                                                   "each SSL arm's own knobs) | joint.")
    backbone: BackboneSpec | None = Field(None, description="Two-stage study: stage 1's space and budget.")
    arms: dict[str, ArmSpec] | None = Field(None, description="Tuning study: arm name → set / space / from.")
    tune: TuneSpec | None = Field(None, description="Tuning study: budget, metric, replicates, search.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="Final seeds of each pick, on test.")
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

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, protocol: str | None) -> str | None:
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValueError(f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
        return protocol

    @model_validator(mode="after")
    def _one_kind(self) -> "SweepSpec":
        if (self.grid is None) == (self.arms is None):
            raise ValueError("give either 'grid' (a plain grid) or 'arms' with 'tune' (a tuning study)")
        if self.grid is not None:
            extra = [k for k in ("tune", "null_seeds", "curves", "protocol", "backbone") if getattr(self, k)]
            if extra or isinstance(self.baseline, str):
                raise ValueError(f"{', '.join(extra) or 'a baseline arm name'}: only for a tuning study (arms)")
            return self
        if self.tune is None or not self.arms:
            raise ValueError("a tuning study needs 'arms' and 'tune' (budget, metric, replicates)")
        if not isinstance(self.baseline, str) or self.baseline not in self.arms:
            raise ValueError(f"baseline: name one of the arms ({', '.join(self.arms)})")
        if self.protocol is None:
            self.protocol = "two-stage"
        if self.protocol == "two-stage":
            if self.backbone is None:
                raise ValueError("a two-stage study needs backbone: {space: ...} (stage 1, tuned on the baseline); "
                                 "or set protocol: joint")
            if self.tune.space:
                raise ValueError("tune.space: the joint protocol's shared space; a two-stage study tunes the "
                                 "backbone in backbone.space and each SSL arm's own knobs in its space")
            base = self.arms[self.baseline]
            if base.space or base.parent is not None:
                raise ValueError(f"arms.{self.baseline}: the baseline is tuned in backbone.space: drop its "
                                 "'space' and 'from'")
        elif self.backbone is not None:
            raise ValueError("backbone: only for protocol: two-stage (the joint protocol tunes tune.space with "
                             "every arm's own knobs)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: a non-empty list of distinct seeds")
        if set(self.null_seeds) & set(self.seeds) or len(set(self.null_seeds)) != len(self.null_seeds):
            raise ValueError("null_seeds: distinct seeds not among 'seeds'")
        if self.null_seeds and len(self.seeds) + len(self.null_seeds) < 4:
            raise ValueError("null_seeds: the null check needs at least 4 baseline seeds in all")
        both = sorted(set(self.tune.seeds or ()) & set(self.seeds + self.null_seeds))
        if both:
            raise ValueError(f"tune.seeds: {', '.join(map(str, both))} is also a final seed (seeds/null_seeds); "
                             "finals train on fresh seeds, disjoint from every tuning seed")
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
    stage: str = "grid"  # grid | tune | final | null | curve:KEY
    replicate: int | None = None  # tuning study: the tuning replicate (trials, and the finals of its pick)
    trial: int | None = None  # a tuning trial's place in its (arm, replicate) sequence
    rung: int | None = None  # successive halving: the trial's rung (0 = the fewest steps)

    @property
    def group(self) -> str:
        return self.arm if self.arm is not None else _label({k: v for k, v in self.values.items() if k != "seed"})

    @property
    def label(self) -> str:
        if self.arm is None:
            return _label(self.values)
        rep = ("" if self.replicate is None else f" r{self.replicate}") + ("" if not self.rung else f" rung{self.rung}")
        return f"{self.arm}[{self.stage}{rep}]" + (":" + _label(self.values) if self.values else "")


@dataclass
class Arm:
    """A tuning study's arm. Stage: backbone (two-stage: the baseline, tuned in backbone.space), ssl
    (two-stage: its own knobs at the backbone's pick), joint (joint protocol: tune.space and its own
    knobs), derived (not tuned: its parent's pick, changed by its fixed settings)."""

    name: str
    fixed: dict[str, Any]
    space: dict[str, Any] = field(default_factory=dict)  # knob → list or {log_uniform|uniform|int: [lo, hi]}
    parent: str | None = None
    stage: str = "joint"
    budget: int = 0  # trials per replicate
    rungs: list[tuple[int, int]] = field(default_factory=list)  # successive halving: (trials kept, steps) per rung
    trials: dict[int, list[Cell]] = field(default_factory=dict)  # replicate → its trials, in sequence order

    @property
    def tuned(self) -> bool:
        return self.parent is None


@dataclass
class Sweep:
    spec: SweepSpec
    path: Path
    cells: list[Cell]  # a grid's cells; a study's cells known so far (see sslkit.study.tuning.study_cells)
    out: Path
    groups: dict[str, list[Cell]] = field(default_factory=dict)
    baseline_of: dict[str, str] = field(default_factory=dict)  # group → its baseline group
    arms: dict[str, Arm] = field(default_factory=dict)  # a study's arms (sslkit.study.tuning)
    schema: Path = Path()
    fixed: list[str] = field(default_factory=list)  # the spec's set (and --set) as overrides
    picks: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (tuned arm, replicate) → knob values
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line changes to the spec (preregistration)

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
    from sslkit.training.device import training_precision  # torch: imported only where cells are named

    data = {k: v for k, v in dump_config(cfg).items() if k not in ("base_dir", "cache_dir")}
    data["sslkit"] = {"version": sslkit.__version__, "numerics": sslkit.NUMERICS_VERSION}
    data["train"] = {k: v for k, v in data["train"].items() if k not in ("log_every", "device", "threads")}
    if not cfg.train.early_stopping.on:  # off, as every cell was before the setting existed
        del data["train"]["early_stopping"]
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


def make_cell(sweep: Sweep, values: dict[str, Any], *, arm: str | None = None, stage: str = "grid",
              split: str = "test", replicate: int | None = None, trial: int | None = None,
              rung: int | None = None) -> Cell:
    """Resolve one cell's config (the spec's set, then `values`) and name its run directory."""
    try:
        cfg = load_config(sweep.schema, [*sweep.fixed, *(f"{full_key(k)}={json.dumps(v)}" for k, v in values.items())])
    except ConfigError as e:
        where = _label(values) if arm is None else f"{arm} ({_label(values)})"
        raise ConfigError(f"{sweep.path}: cell {where}: {e.message}", hint=e.hint)
    return Cell(values=values, cfg=cfg, dir=sweep.out / cell_dirname(cfg), split=split, arm=arm, stage=stage,
                replicate=replicate, trial=trial, rung=rung)
