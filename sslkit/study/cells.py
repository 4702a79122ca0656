"""Running and reading study cells: train (or resume), evaluate on the cell's split, save the
per-query metrics, and reuse a done cell only while its data pin still matches the data."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sslkit.data import io
from sslkit.errors import CheckpointError, DataChangedError, SslkitError

from sslkit.study.spec import EVAL_FILES, PER_QUERY_FILES, Cell, Sweep


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
        except TrainingDamaged:
            raise
        except CheckpointError as e:  # damaged outside sslkit (writes are atomic): evaluate again
            log(f"warning: {e.message}; evaluating cell {cell.label} again")
    r = evaluate_run(cell.dir, log=log, split=cell.split)
    _save_per_query(cell.dir / PER_QUERY_FILES[cell.split], r.queries,
                    r.per_query | {f"{SLICE_KEY}{sl}{SLICE_KEY}{m}": v for sl, pq in r.slice_per_query.items()
                                   for m, v in pq.items()}, eval_settings(cell))
    _seal(cell)
    return load_result(cell)


# --- checksums of a cell's results: written when they are saved, verified before they are reused ---

class TrainingDamaged(CheckpointError):
    """summary.json of a cell fails its checksum: evaluating again cannot repair it (retrain)."""


def _sums_path(cell: Cell) -> Path:
    return cell.dir / f"checksums.{cell.split}.json"


def _sealed_files(cell: Cell) -> list[str]:
    return [EVAL_FILES[cell.split], PER_QUERY_FILES[cell.split], "summary.json"]


def _seal(cell: Cell) -> None:
    """Record the digests of the cell's evaluation, per-query file and training summary."""
    old = _read_sums(cell)
    _check_summary(cell, old.get("summary.json") if old else None)
    io.write_json(_sums_path(cell), {"format": 1, "files": {name: io.digest_file(cell.dir / name)
                                                           for name in _sealed_files(cell)}})


def _read_sums(cell: Cell) -> dict[str, str] | None:
    try:
        files = io.read_json(_sums_path(cell)).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return files if isinstance(files, dict) else None


def _check_summary(cell: Cell, digest: str | None) -> None:
    """summary.json is what training wrote: its sealed digest (when there is one) and its shape."""
    path = cell.dir / "summary.json"
    fix = f"retrain the cell: delete {cell.dir} and run the sweep again"
    try:
        if digest is not None and io.digest_file(path) != digest:
            raise TrainingDamaged(f"{path} fails its checksum (damaged)", hint=fix)
        summary = io.read_json(path)
        if not isinstance(summary, dict) or not isinstance(summary.get("train_seconds"), (int, float)):
            raise TrainingDamaged(f"{path} is damaged (no train_seconds)", hint=fix)
    except (OSError, ValueError) as e:
        raise TrainingDamaged(f"{path} is unreadable ({type(e).__name__})", hint=fix)


def _verify(cell: Cell) -> None:
    """A done cell's files match the digests recorded when they were saved.

    Raises:
        TrainingDamaged: summary.json changed. CheckpointError: the evaluation files changed, or
            were written without checksums (before sslkit recorded them): evaluate the cell again.
    """
    sums = _read_sums(cell)
    if sums is None:
        raise CheckpointError(f"{_sums_path(cell)} is missing or damaged: the cell's results cannot be verified")
    _check_summary(cell, sums.get("summary.json"))
    for name in _sealed_files(cell)[:2]:
        try:
            ok = io.digest_file(cell.dir / name) == sums.get(name)
        except OSError:
            ok = False
        if not ok:
            raise CheckpointError(f"{cell.dir / name} fails its checksum (damaged or changed)",
                                  hint="re-evaluate the cell")


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
        CheckpointError: a file fails its checksum, is unreadable or not what `sslkit sweep` wrote.
    """
    _verify(cell)
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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
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
