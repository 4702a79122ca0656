"""`sslkit sweep`: train and evaluate every cell of a grid, resumably, and compare against a baseline.

A spec (YAML) names a schema, fixed settings, a grid and the baseline cell:

    schema: ../schema.yaml            # relative to the spec file
    out: ../../../runs/movielens      # cell run directories live here [runs/sweeps]
    set: {train.epochs: 10}           # fixed settings (any schema key)
    grid:                             # every combination is a cell
      aug: [none, cfm]                # short names: aug alpha dropout fraction seed lr epochs ...
      seed: [0, 1, 2]
    baseline: {aug: none}             # the baseline of each group; the other grid keys must match

Cells are named by their settings plus a hash of the resolved config, so a cell already trained
(by this spec or another one sharing `out`) is reused, a half-trained one is resumed from its
checkpoint, and a changed setting gives a new cell. Runs that differ only by `seed` form a group:
groups are reported as mean ± std over seeds, and against their baseline group with a bootstrap
95% interval that resamples both test queries and seeds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sslkit import io
from sslkit.config import Config, dump_config, load_config
from sslkit.errors import CheckpointError, ConfigError, SslkitError

SHORT_KEYS = {"aug": "ssl.aug", "alpha": "ssl.alpha", "dropout": "ssl.dropout", "fraction": "split.fraction",
              "seed": "train.seed", "lr": "train.lr", "epochs": "train.epochs", "steps": "train.steps",
              "batch_size": "train.batch_size", "temperature": "train.temperature",
              "optimizer": "train.optimizer", "ssl_temperature": "ssl.temperature",
              "logq": "train.logq_correction"}
REPORTED = ("recall", "map")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_path: str = Field(alias="schema", description="The dataset's schema, relative to the spec file.")
    out: str = Field("runs/sweeps", description="Directory of the cell runs, relative to the spec file.")
    set: dict[str, Any] = Field(default_factory=dict, description="Settings shared by every cell (schema keys).")
    grid: dict[str, list[Any]] = Field(description="Key → values; every combination is one cell.")
    baseline: dict[str, Any] | None = Field(None, description="Grid values of the baseline cells, e.g. {aug: none}.")
    index: str | None = Field(None, description="Evaluation backend: exact | hnsw [eval.index].")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("needs at least one key with a list of values")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{key}: expected a non-empty list of values")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"{key}: repeated values")
        return grid


@dataclass
class Cell:
    values: dict[str, Any]  # grid key → value
    cfg: Config
    dir: Path

    @property
    def group(self) -> str:
        return _label({k: v for k, v in self.values.items() if k != "seed"})

    @property
    def label(self) -> str:
        return _label(self.values)


@dataclass
class Sweep:
    spec: SweepSpec
    path: Path
    cells: list[Cell]
    out: Path
    groups: dict[str, list[Cell]] = field(default_factory=dict)
    baseline_of: dict[str, str] = field(default_factory=dict)  # group → its baseline group


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
               seeds: Sequence[int] | None = None) -> Sweep:
    """Read and validate a spec, resolve every cell's config (so errors surface before training).

    `overrides` (key=value, applied after the spec's `set`), `out` and `seeds` (replaces the grid's
    seed list) let one spec serve e.g. a quick smoke run.

    Raises:
        ConfigError: unreadable spec, unknown keys, a bad value in any cell, a missing baseline.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: sweep spec not found")
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read sweep spec ({getattr(e, 'problem', None) or e})")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with schema, grid and optionally out, set, baseline")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}")
    base = path.resolve().parent
    schema = base / spec.schema_path
    out = Path(out) if out is not None else (base / spec.out).resolve()
    if seeds is not None:
        spec.grid["seed"] = list(seeds)
    fixed = [f"{full_key(k)}={json.dumps(v)}" for k, v in spec.set.items()] + list(overrides)
    if spec.index:
        fixed.append(f"eval.index={spec.index}")
    keys = list(spec.grid)
    cells = []
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        try:
            cfg = load_config(schema, [*fixed, *(f"{full_key(k)}={json.dumps(v)}" for k, v in values.items())])
        except ConfigError as e:
            raise ConfigError(f"{path}: cell {_label(values)}: {e.message}", hint=e.hint)
        cells.append(Cell(values=values, cfg=cfg, dir=out / cell_dirname(cfg)))
    sweep = Sweep(spec=spec, path=path, cells=cells, out=out)
    for c in cells:
        sweep.groups.setdefault(c.group, []).append(c)
    if spec.baseline:
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


def cell_status(cell: Cell) -> str:
    """done (evaluated) | trained | partial (checkpoint, resumable) | new."""
    d = cell.dir
    if (d / "eval.json").exists() and (d / "per_query.npz").exists():
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


Event = Callable[[str, dict[str, Any]], None]


def run_sweep(sweep: Sweep, *, log: Callable[[str], None] = lambda _: None, on_event: Event = lambda k, p: None,
              stop_on_signals: bool = False) -> tuple[list[CellResult], list[tuple[Cell, str]]]:
    """Train and evaluate every cell not done yet. Returns the results and the failed cells.

    A cell that fails (e.g. a non-finite loss) is reported and the sweep goes on; an interrupt
    (`Interrupted`) stops it with the current cell's checkpoint saved.
    """
    from sslkit.evaluate import evaluate_run
    from sslkit.train import run_training

    results, failed = [], []
    for i, cell in enumerate(sweep.cells):
        status = cell_status(cell)
        on_event("cell", {"index": i, "total": len(sweep.cells), "label": cell.label, "status": status,
                          "dir": str(cell.dir)})
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
            r = evaluate_run(cell.dir, log=log)
            _save_per_query(cell.dir, r.queries, r.per_query)
            results.append(load_result(cell))
        except SslkitError as e:
            failed.append((cell, e.line()))
            log(f"cell {cell.label} failed: {e.line()}")
    return results, failed


def _save_per_query(run_dir: Path, queries: np.ndarray, per_query: dict[str, np.ndarray]) -> None:
    import io as _bytes

    buf = _bytes.BytesIO()
    np.savez(buf, queries=queries, **{k.replace("@", "_at_"): v for k, v in per_query.items()})
    io.atomic_write_bytes(run_dir / "per_query.npz", buf.getvalue())


def load_result(cell: Cell) -> CellResult:
    """A done cell's eval.json and per-query metrics.

    Raises:
        CheckpointError: either file is unreadable or not what `sslkit sweep` wrote.
    """
    try:
        with np.load(cell.dir / "per_query.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        queries = arrays.pop("queries")
        evaluation = io.read_json(cell.dir / "eval.json")
        if not isinstance(evaluation, dict) or not {"metrics", "slices", "toppop"} <= evaluation.keys():
            raise ValueError("eval.json lacks metrics, slices or toppop")
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{cell.dir}: unreadable evaluation ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
    return CellResult(cell=cell, eval=evaluation,
                      per_query={k.replace("_at_", "@"): v for k, v in arrays.items()}, queries=queries)


def summarize_sweep(sweep: Sweep, results: list[CellResult], *, n_boot: int = 1000) -> dict[str, Any]:
    """One row per group: mean ± std over seeds (metrics and slices) and the comparison with its baseline."""
    from sslkit.metrics import mean_std, seeds_bootstrap_ci

    by_group: dict[str, list[CellResult]] = {}
    for r in results:
        by_group.setdefault(r.cell.group, []).append(r)
    rows = []
    for name, members in sweep.groups.items():
        got = by_group.get(name, [])
        row: dict[str, Any] = {"group": name, "values": {k: v for k, v in members[0].values.items() if k != "seed"},
                               "seeds": len(got), "runs": [str(r.cell.dir) for r in got]}
        if not got:
            rows.append(row)
            continue
        names = [m for m in got[0].eval["metrics"] if m.split("@")[0] in REPORTED]
        row["metrics"] = {m: dict(zip(("mean", "std"), mean_std([r.eval["metrics"][m] for r in got]))) for m in names}
        row["slices"] = {s: {"pairs": got[0].eval["slices"][s]["pairs"],
                             **{m: mean_std([r.eval["slices"][s][m] for r in got])[0]
                                for m in names if m in got[0].eval["slices"][s]}}
                         for s in got[0].eval["slices"]}
        row["toppop"] = got[0].eval["toppop"]
        row["train_seconds"] = float(np.mean([io.read_json(Path(r.cell.dir) / "summary.json")["train_seconds"] for r in got]))
        base_name = sweep.baseline_of.get(name)
        if base_name and base_name != name and by_group.get(base_name):
            base = by_group[base_name]
            _same_queries(base[0], got[0])
            row["baseline"] = base_name
            row["vs_baseline"] = {m: seeds_bootstrap_ci(np.stack([b.per_query[m] for b in base]),
                                                        np.stack([r.per_query[m] for r in got]), n_boot=n_boot)
                                  for m in names}
            row["vs_baseline_slices"] = {
                s: {m: _rel(np.mean([r.eval["slices"][s].get(m, np.nan) for r in got]),
                            np.mean([b.eval["slices"][s].get(m, np.nan) for b in base])) for m in names}
                for s in got[0].eval["slices"]}
        rows.append(row)
    return {"spec": str(sweep.path), "cells": len(sweep.cells), "done": len(results), "groups": rows}


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
