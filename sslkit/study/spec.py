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
    from sslkit.training.device import training_precision  # torch: imported only where cells are named

    data = {k: v for k, v in dump_config(cfg).items() if k not in ("base_dir", "cache_dir")}
    data["sslkit"] = {"version": sslkit.__version__, "numerics": sslkit.NUMERICS_VERSION}
    data["train"] = {k: v for k, v in data["train"].items() if k not in ("log_every", "device")}
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
              split: str = "test") -> Cell:
    """Resolve one cell's config (the spec's set, then `values`) and name its run directory."""
    try:
        cfg = load_config(sweep.schema, [*sweep.fixed, *(f"{full_key(k)}={json.dumps(v)}" for k, v in values.items())])
    except ConfigError as e:
        where = _label(values) if arm is None else f"{arm} ({_label(values)})"
        raise ConfigError(f"{sweep.path}: cell {where}: {e.message}", hint=e.hint)
    return Cell(values=values, cfg=cfg, dir=sweep.out / cell_dirname(cfg), split=split, arm=arm, stage=stage)
