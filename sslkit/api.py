"""The public Python API: one call per pipeline stage, named after its command.

`import sslkit` gives these names lazily (`sslkit.__getattr__`), so importing the package costs
nothing; each call imports its stage (and torch, polars or hnswlib) when it runs. Every call is a
thin wrapper over the function its command calls, and takes the same settings. Errors a user can
cause are `sslkit.errors.SslkitError` subclasses with a one-line message naming the file, key or
flag and the fix; nothing here prints or exits. Progress lines go to `log` when one is given.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from sslkit.config import Config
    from sslkit.data.store import FeatureStore
    from sslkit.evaluation.evaluate import RunEval
    from sslkit.training.train import TrainResult

Log = Callable[[str], None]
Event = Callable[[str, dict[str, Any]], None]


def _silent(_: str) -> None:
    return None


def load_config(schema: str | Path, overrides: Sequence[str] = (), *,
                settings: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a dataset's YAML schema (`sslkit init` writes a first one).

    Precedence is the command line's: defaults < schema file < `overrides` < `settings`.

    Args:
        schema: Path of the schema file; its relative paths are relative to it.
        overrides: `key=value` strings, as `--set` takes them, e.g. `"ssl.alpha=0.3"`.
        settings: Dotted keys to values, e.g. `{"ssl.aug": "cfm", "train.steps": 50}` (what the
            command's flags set); applied after `overrides`.

    Returns:
        The validated, frozen `sslkit.config.Config`.

    Raises:
        ConfigError: the file is missing, unreadable or not valid YAML, or a key is unknown or
            invalid (the message names its YAML path and, for a typo, the key meant).
    """
    from sslkit.config import load_config as _load_config

    given = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in (settings or {}).items()]
    return _load_config(schema, [*overrides, *given])


def load_store(config: Config, *, log: Log | None = None, use_cache: bool = True) -> FeatureStore:
    """The dataset's feature store: read and encoded once with Polars, then cached and memory-mapped.

    Args:
        config: A validated config (`load_config`).
        log: Called with each progress line (cache hit, build, rows dropped), if given.
        use_cache: Look up and write the cache under `cache_dir` (default `.sslkit-cache` beside the
            schema); False builds in memory only.

    Returns:
        `sslkit.data.store.FeatureStore`: per entity an int32 feature matrix and ids, the train /
        validation / test pair splits as int32 `(n, 2)` arrays of (query row, item row), the
        vocabularies and a report of what the build did.

    Raises:
        SchemaError: a column the schema names is missing or has the wrong type.
        DataError: unreadable or empty data, duplicate or null ids, unknown ids under
            `on_unknown_item: error`, an empty split.
    """
    from sslkit.data.store import load_or_build

    return load_or_build(config, log=log or _silent, use_cache=use_cache)


def init_schema(data: str | Path, *, items: str | Path | None = None, queries: str | Path | None = None) -> str:
    """Infer a starting schema from the data files, as `sslkit init` prints it.

    Args:
        data: The interactions file (CSV, Parquet or NDJSON).
        items: The catalog's file, if there is one.
        queries: The queries' (e.g. users') file, if there is one.

    Returns:
        Commented YAML: every guess (column roles, item-to-item or user-to-item, feature types,
        `max_len`) carries its reason. Check it, then save it and pass the path to `load_config`.

    Raises:
        DataError: a file is missing, unreadable or empty.
    """
    from sslkit.data.infer import infer_schema

    return infer_schema(str(data), str(items) if items else None, str(queries) if queries else None)


def profile(config: Config, *, store: FeatureStore | None = None, log: Log | None = None) -> dict[str, Any]:
    """Dataset statistics, as `sslkit profile --json` prints them.

    Args:
        config: A validated config; its `eval.k`, `eval.head_fraction` and `eval.exclude_seen`
            decide the TopPopular recall and the slices.
        store: The config's feature store, if already loaded (else `load_store(config)`).
        log: Called with each progress line, if given.

    Returns:
        A JSON-able dict: `pairs` (read, dropped, per split), `items`, `queries`, `mode`,
        `item_features` (per feature: cardinality, nulls, values per row, truncated rows, test
        OOV, top values), `popularity` (concentration, Gini, TopPopular Recall@K, head / tail /
        cold test pairs) and `warnings` (each naming its fix).

    Raises:
        SchemaError, DataError: as `load_store`.
    """
    from sslkit.data.profile import profile as _profile

    store = store if store is not None else load_store(config, log=log)
    return _profile(store, ks=tuple(config.eval.k), head_fraction=config.eval.head_fraction,
                    exclude_seen=config.eval.exclude_seen)


def mi(config: Config, *, store: FeatureStore | None = None, normalized: bool | None = None,
       mask_size: int | None = None, log: Log | None = None) -> dict[str, Any]:
    """Mutual information between every pair of item features, and CFM's masking sets.

    Args:
        config: A validated config.
        store: The config's feature store, if already loaded (else `load_store(config)`).
        normalized: Rank the masking sets by normalized MI (True) or raw MI (False); None takes
            `ssl.mi`.
        mask_size: |F_m|, the features masked together; None takes `ssl.mask_size`, else ⌊k/2⌋.
        log: Called with each progress line, if given.

    Returns:
        The dict `sslkit mi --json` prints: `features`, `mi` and `nmi` (F × F lists), `entropy`,
        `mask_sets` (seed feature → the features masked with it), `mask_size`, `measure`. Saved
        as JSON, it is what `ssl.mi_path` (`train --mi`) reads.

    Raises:
        SchemaError, DataError: as `load_store`.
    """
    from sslkit.data.mi import catalog_mi

    store = store if store is not None else load_store(config, log=log)
    use_nmi = normalized if normalized is not None else config.ssl.mi == "nmi"
    return catalog_mi(store, mask_size=mask_size or config.ssl.mask_size, normalized=use_nmi)[1]


def train(config: Config, *, out: str | Path, resume: bool = False, overwrite: bool = False,
          log: Log | None = None, on_event: Event | None = None) -> TrainResult:
    """Train a two-tower model into a run directory, as `sslkit train` does.

    The method and every hyperparameter come from `config` (e.g. `settings={"ssl.aug": "cfm"}` in
    `load_config`). The run directory holds the resolved config, vocabularies, `metrics.jsonl`,
    `checkpoint.pt`, `run.json` and `summary.json`; `evaluate`, `embed` and `recommend` need
    nothing else.

    Args:
        config: A validated config.
        out: The run directory to write.
        resume: Continue the run in `out` from its checkpoint (only `train.steps` / `train.epochs`
            may differ from the run's settings).
        overwrite: Replace a run already in `out`.
        log: Called with each progress line (store, MI, warnings), if given.
        on_event: Called as `on_event(kind, payload)`, if given: `"start"` (steps, device), `"step"`
            (loss parts, examples/s, every `train.log_every` steps), `"eval"` (validation Recall@K
            beside TopPopular's), `"checkpoint"`, `"warning"` (e.g. below TopPopular) and `"done"`.

    Returns:
        `sslkit.training.train.TrainResult`: `run_dir`, `steps`, `epochs_done`, `examples_per_s`
        and the final `validation` metrics.

    Raises:
        ConfigError: both `resume` and `overwrite`.
        TrainingError: `out` already holds a run (and neither flag is set), nothing to resume, a
            non-finite loss (the last good checkpoint is kept), a model too large for memory.
        CheckpointError: `resume` with other settings, data (DataChangedError) or masking sets.
        LockedError: another process is writing `out`.
        SchemaError, DataError: as `load_store`.
    """
    from sslkit.training.train import run_training

    return run_training(config, run_dir=Path(out), resume=resume, overwrite=overwrite, log=log or _silent,
                        on_event=on_event or (lambda kind, payload: None))


def evaluate(run: str | Path, *, split: str = "test", k: Sequence[int] | None = None, index: str | None = None,
             exclude_seen: bool | None = None, allow_data_change: bool = False, log: Log | None = None) -> RunEval:
    """Score a trained run over the whole catalog, as `sslkit eval RUN` does (and write `eval.json`).

    Args:
        run: A run directory written by `train`.
        split: `"test"` (the final table; writes `eval.json`) or `"validation"` (for tuning; writes
            `eval.validation.json`).
        k: Cutoffs; None takes `eval.k` (10 and 50).
        index: `"exact"` or `"hnsw"`; None takes `eval.index`. With `"hnsw"` the result also holds
            the ANN recall against exact search.
        exclude_seen: Drop each query's training positives; None takes `eval.exclude_seen`.
        allow_data_change: Score the run even if its data changed since training (warns).
        log: Called with each progress line, if given.

    Returns:
        `sslkit.evaluation.evaluate.RunEval`: `metrics` (`recall@K`, `map@K`, `ndcg@K`, `mrr@K`),
        `slices` (head / tail / cold, with their sizes), the TopPopular row and the options applied
        in `extra`, and per-query values for comparisons (`sslkit.evaluation.evaluate.compare`).

    Raises:
        CheckpointError: not a run directory, or a damaged or incompatible checkpoint.
        DataChangedError: the data changed since training (and `allow_data_change` is False).
        DataError: an unknown `split`.
    """
    from sslkit.evaluation.evaluate import evaluate_run

    return evaluate_run(run, ks=k, index=index, exclude_seen=exclude_seen, split=split,
                        allow_data_change=allow_data_change, log=log or _silent)


def embed(run: str | Path, *, items: str | Path | None = None, queries: str | Path | None = None,
          allow_data_change: bool = False, log: Log | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectors from a trained run: the whole catalog, or new item or query rows (cold start).

    Args:
        run: A run directory written by `train`.
        items: A file of item rows (the schema's item columns) to embed instead of the catalog;
            their values are encoded with the run's vocabularies.
        queries: A file of query rows to embed with the query tower (item rows in item-to-item mode).
        allow_data_change: Use the run even if its data changed since training (warns).
        log: Called with each progress line, if given.

    Returns:
        `(ids, vectors)`: `ids` a string array `(n,)`, `vectors` float32 `(n, d)`, unit length, so
        the inner product of a query and an item vector is the model's score.

    Raises:
        CheckpointError: not a run directory, or a damaged or incompatible checkpoint.
        DataChangedError: the data changed since training (and `allow_data_change` is False).
        DataError: both `items` and `queries`; an unreadable file; a row with a column the run
            does not know.
    """
    from sslkit.retrieval.embed import embed as _embed
    from sslkit.retrieval.embed import load_run

    r = load_run(run, allow_data_change=allow_data_change)
    ids, vectors, _ = _embed(r, items=str(items) if items else None, queries=str(queries) if queries else None,
                             log=log or _silent)
    return ids, vectors


def recommend(run: str | Path, queries: Iterable[str | Mapping[str, Any]], *, k: int = 10,
              exclude_seen: bool = False, allow_data_change: bool = False,
              log: Log | None = None) -> list[dict[str, Any]]:
    """Top-K items per query from the run's HNSW index (built and cached in the run on first use).

    Args:
        run: A run directory written by `train`.
        queries: Query ids (item ids in item-to-item mode, e.g. user ids otherwise), or mappings of
            a query's feature values for a query the run has not seen.
        k: Items per query.
        exclude_seen: Leave out the items a query id already has a pair with in the run's data.
        allow_data_change: Use the run even if its data changed since training (warns).
        log: Called with each progress line, if given.

    Returns:
        One dict per query, in order: `{"query": id, "items": [item ids, best first], "scores":
        [inner products]}`, as `sslkit recommend` writes them.

    Raises:
        DataError: a query is unknown or malformed; the message names each by its position
            (`line N`, counting from 1), and no result is returned.
        CheckpointError, DataChangedError: as `evaluate`.
    """
    from sslkit.errors import DataError
    from sslkit.retrieval.recommend import recommend_lines

    lines = [q if isinstance(q, str) else json.dumps(dict(q)) for q in queries]
    if any("\n" in q for q in lines):
        raise DataError("a query id holds a line break", hint="pass one id per query")
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sslkit-recommend-") as tmp:  # recommend reads lines from a file
        source = Path(tmp) / "queries.txt"
        source.write_text("".join(q + "\n" for q in lines), encoding="utf-8")
        recommend_lines(run, str(source), k, write=lambda line: results.append(json.loads(line)),
                        warn=problems.append, log=log or _silent, exclude_seen=exclude_seen,
                        allow_data_change=allow_data_change)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{run}: {problems[0]}{more}", hint="fix or drop those queries")
    return results


def run_study(spec: str | Path, *, overrides: Sequence[str] = (), out: str | Path | None = None,
              log: Log | None = None) -> dict[str, Any]:
    """Train and score every cell of a sweep or tuning study, as `sslkit sweep SPEC` does.

    Resumable: finished cells are read back, a half-trained one resumes from its checkpoint.

    Args:
        spec: The study's YAML spec (a grid and a baseline, or arms, tune, seeds and a baseline).
        overrides: `key=value` settings for every cell, applied after the spec's `set`.
        out: Directory of the cell runs; None takes the spec's `out`.
        log: Called with each progress line, if given.

    Returns:
        The summary written to `OUT/SPEC.sweep.json`: the protocol, per group or arm its test
        metrics (mean ± std over seeds) and the paired bootstrap 95% interval against the
        baseline; for a tuning study also each arm's tuning cells, pick and the null check.
        `failed` lists cells that failed (`{"cell", "error"}`); the others are still reported.

    Raises:
        ConfigError: an unreadable spec, an unknown key, a bad value in any cell (before anything
            trains), a study that could only select on test.
    """
    from sslkit.study.sweep import load_sweep, run_sweep, summarize_sweep, write_summary

    sweep = load_sweep(spec, overrides=list(overrides), out=out)
    results, failed = run_sweep(sweep, log=log or _silent)
    summary = summarize_sweep(sweep, results)
    summary["failed"] = [{"cell": cell.label, "error": message} for cell, message in failed]
    write_summary(sweep, summary)
    return summary
