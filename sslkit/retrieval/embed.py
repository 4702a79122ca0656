"""`sslkit embed`: a trained run → (id, vector) rows for the catalog or for new rows, plus an index.

A run directory is self-contained: the checkpoint carries the config, `vocabs.json` the fitted
vocabularies, so new rows (items never seen in training: cold start) are encoded exactly as the
training data was.
"""

from __future__ import annotations

import io as _bytes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from sslkit.data import encode, events, io
from sslkit.training.checkpoint import load_state, read_checkpoint
from sslkit.config import Config, Feature, validate
from sslkit.errors import CheckpointError, DataChangedError, DataError
from sslkit.model.towers import Layout, TwoTower, embed_all, fuse
from sslkit.data.schema import FeatureSpec, check_feature, check_ids, require_columns
from sslkit.data.store import EntityTable, FeatureStore

FORMATS = ("parquet", "npy", "ndjson", "csv")


@dataclass
class Run:
    """A trained run loaded for inference."""

    dir: Path
    cfg: Config
    model: TwoTower
    vocabs: dict[str, dict[str, encode.Vocab]]
    item_specs: dict[str, FeatureSpec]
    query_specs: dict[str, FeatureSpec] | None  # None in item-to-item mode
    state: dict[str, Any]
    allow_data_change: bool = False  # --allow-data-change: use changed data, with a warning
    warn: Any = None  # where that warning goes (default: the stderr console)

    def store(self, log: Any = lambda _: None) -> FeatureStore:
        """The run's feature store (rebuilt from the schema's data files if not cached; for a run
        trained from standard input, the store cached then, found through run.json), checked against
        the data pin in the checkpoint: no silent re-split, no silently changed catalog.

        Raises:
            DataChangedError: the data differs from what the run was trained on (and not allowed).
        """
        from sslkit.data.store import describe_change, fingerprint, load_or_build, reads_stdin

        store = self._stdin_store(log) if reads_stdin(self.cfg) else load_or_build(self.cfg, log=log)
        pinned = self.state.get("data") or {}
        if not pinned:  # trained before runs were pinned: vocabulary sizes are all there is to compare
            for entity, vocabs in self.vocabs.items():
                saved = {f: v.num_embeddings for f, v in vocabs.items()}
                now = {f: v.num_embeddings for f, v in store.vocabs.get(entity, {}).items()}
                if saved != now:
                    raise DataChangedError(f"{self.dir}: the data behind the schema changed since training "
                                           f"({entity} vocabularies differ)", hint="retrain, or restore the original data")
            return store
        now = fingerprint(store)
        if now != pinned:
            what = describe_change(pinned, now)
            if not self.allow_data_change:
                raise DataChangedError(f"{self.dir}: the data changed since training: {what} differ",
                                       hint="restore the data the run was trained on, retrain, "
                                            "or pass --allow-data-change to use the new data anyway")
            warn = self.warn or _console_warn
            warn(f"WARNING: {self.dir}: the data changed since training ({what} differ); "
                 "using the new data as --allow-data-change asks — results are not those of the trained setup")
        return store

    def _stdin_store(self, log: Any) -> FeatureStore:
        from sslkit.data import store as store_mod

        try:
            path = Path(io.read_json(self.dir / "run.json")["feature_store"]["path"])
            store = store_mod.load(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{self.dir}: trained from standard input, and the feature store cached then "
                                  f"is gone or damaged ({type(e).__name__}: {e})",
                                  hint="retrain, piping the same data (its store is cached again)")
        log(f"feature store: cached {path} (the run read standard input)")
        return store


def specs_from(features: dict[str, Feature], vocabs: dict[str, encode.Vocab]) -> dict[str, FeatureSpec]:
    return {n: FeatureSpec(name=n, type=f.type, num_embeddings=0 if f.dense else vocabs[n].num_embeddings,
                           max_len=f.length(), dense=f.dense) for n, f in features.items()}


def _console_warn(message: str) -> None:
    from sslkit import console

    console.warn(message)


def load_run(run_dir: str | Path, *, device: str = "cpu", allow_data_change: bool = False,
             warn: Any = None) -> Run:
    """Model + config + vocabularies from a run directory (CheckpointError when unusable).

    The checkpoint verifies itself (its digest); vocabs.json is verified against the checkpoint's
    data pin. `allow_data_change`/`warn`: see `Run.store`.
    """
    from sslkit.data.store import vocab_digest

    run_dir = Path(run_dir)
    state = read_checkpoint(run_dir)
    try:
        config = state["config"]
        if "validation_fraction" not in config.get("split", {}):  # trained before validation splits existed:
            config = {**config, "split": {**config.get("split", {}), "validation_fraction": 0.0}}  # on all train pairs
        cfg = validate(config, source=str(run_dir / "checkpoint.pt"))
        raw = io.read_json(run_dir / "vocabs.json")
        pinned = state.get("data") or {}
        damaged = [e for e in raw if f"vocab.{e}" in pinned and vocab_digest(raw[e]) != pinned[f"vocab.{e}"]]
        if damaged:
            raise CheckpointError(f"{run_dir / 'vocabs.json'}: does not match the checkpoint ({', '.join(damaged)} "
                                  "vocabularies differ): the file was changed or damaged",
                                  hint="restore it, or retrain into a fresh --out")
        vocabs = {e: {f: encode.Vocab.from_json(v) for f, v in vs.items()} for e, vs in raw.items()}
        item_specs = specs_from(cfg.items.features, vocabs["items"])
        query_specs = None if cfg.item_to_item() else specs_from(cfg.queries.features or {}, vocabs["queries"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{run_dir}: run files are missing or inconsistent ({type(e).__name__}: {e})",
                              hint="retrain into a fresh --out")
    model = TwoTower(item_layout=Layout.from_specs(item_specs),
                     query_layout=Layout.from_specs(query_specs) if query_specs else None,
                     dim=cfg.model.embedding_dim, hidden=list(cfg.model.hidden),
                     share_embeddings=cfg.model.share_embeddings)
    load_state(model, state["model"], run_dir)
    model.eval()
    return Run(dir=run_dir, cfg=cfg, model=model.to(device), vocabs=vocabs, item_specs=item_specs,
               query_specs=query_specs, state=state, allow_data_change=allow_data_change, warn=warn)


def encode_rows(df: pl.DataFrame, features: dict[str, Feature], vocabs: dict[str, encode.Vocab],
                specs: dict[str, FeatureSpec], *, id_col: str, path: str, section: str) -> EntityTable:
    """Encode new rows with a run's fitted vocabularies (unknown values → OOV / hash buckets)."""
    require_columns(df, {id_col: f"{section}.id"} | {f.source(n): f"{section}.features.{n}" for n, f in features.items()},
                    path=path)
    check_ids(df, id_col, path=path, key=f"{section}.id", unique=False)
    out, lengths = {}, {}
    for name, feat in features.items():
        col = feat.source(name)
        check_feature(df, col, feat, path=path, key=f"{section}.features.{name}", fitting=False)
        if feat.type == "numeric":
            out[name], lengths[name] = encode.encode_numeric(df[col], vocabs[name], feat.dense)
        else:
            long = encode.tokens(df, col, feat)
            out[name], lengths[name] = encode.encode_tokens(long, vocabs[name], df.height, feat.length())
    return EntityTable(ids=np.asarray(df[id_col].cast(pl.String).to_numpy()).astype(str), features=out,
                       lengths=lengths, specs=specs)


def embed_table(run: Run, table: EntityTable, *, queries: bool, batch_size: int = 8192) -> np.ndarray:
    """float32 (rows, d) vectors for an encoded table."""
    specs = run.query_specs if queries and run.query_specs else run.item_specs
    fused = fuse(table, Layout.from_specs(specs))
    return embed_all(run.model, fused, queries=queries, batch_size=batch_size).float().cpu().numpy()


def row_keys(cfg: Config, *, item_rows: bool) -> set[str]:
    """The keys a row of new items (or queries) may hold: its id column(s) and feature columns."""
    sec = cfg.items if item_rows else cfg.queries
    keys = {cfg.item_id() if item_rows else cfg.query_id()}
    for ids in (sec.id, cfg.interactions.item if item_rows else cfg.interactions.query):
        keys |= {ids} if isinstance(ids, str) else set(ids or [])
    return keys | {f.source(n) for n, f in (sec.features or {}).items()}


def unknown_key_message(keys: Any, allowed: set[str]) -> str | None:
    """"unknown key 'titel' — did you mean 'title'?" for the first key not in `allowed`, else None."""
    import difflib

    bad = [k for k in keys if k not in allowed]
    if not bad:
        return None
    close = difflib.get_close_matches(bad[0], sorted(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(allowed))}"
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"unknown key '{bad[0]}'{more} — {hint}"


def drop_unknown_key_rows(df: pl.DataFrame, allowed: set[str], *, path: str,
                          warn: Callable[[str], None]) -> pl.DataFrame:
    """NDJSON rows that hold a key the run does not know (a typo like "titel") are reported, one
    line each with the line number, and left out; the other rows go on."""
    extra = [c for c in df.columns if c not in allowed]
    if not extra:
        return df
    has = df.select([pl.col(c).is_not_null().alias(c) for c in extra])
    bad = has.select(pl.any_horizontal(pl.all())).to_series().to_numpy()
    for row in np.flatnonzero(bad):  # only the bad rows: errors are few
        keys = [c for c in extra if has[c][int(row)]]
        warn(f"{path}: line {int(row) + 1}: {unknown_key_message(keys, allowed)}")
    kept = df.filter(pl.Series(~bad)).drop(extra)
    if kept.height == 0:
        raise DataError(f"{path}: every row has an unknown key", hint="fix the keys reported above")
    return kept


def embed(run: Run, *, items: str | None = None, queries: str | None = None, input_format: str | None = None,
          log: Any = lambda _: None, warn: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(ids, vectors, entity): the whole catalog by default, or the rows of an items/queries file
    (`input_format` csv | parquet | ndjson; by default from the extension, and CSV for stdin).

    NDJSON rows with a key the run does not know go to `warn` (one line each) and are left out;
    without `warn` the first such row is an error.
    """
    cfg = run.cfg
    if items and queries:
        raise DataError("give --items or --queries, not both")
    if queries:  # the query tower; item-to-item queries are item rows (the catalog's features)
        item_mode = cfg.item_to_item()
        id_col = cfg.item_id() if item_mode else cfg.query_id()
        parts, separator = events.id_parts(cfg, "items" if item_mode else "queries")
        df = _checked_rows(io.read_table(queries, input_format, strings=[id_col, *parts]), queries,
                           row_keys(cfg, item_rows=item_mode), warn, input_format)
        df = events.with_id(df, parts, separator, path=queries,  # a composite id: its columns joined
                            key="items.id_separator" if item_mode else "queries.id_separator")
        table = encode_rows(df, cfg.items.features if item_mode else cfg.queries.features or {},
                            run.vocabs["items" if item_mode else "queries"],
                            run.item_specs if item_mode else run.query_specs or {},
                            id_col=id_col, path=queries, section="items" if item_mode else "queries")
        return table.ids, embed_table(run, table, queries=True), "queries"
    if items:
        parts, separator = events.id_parts(cfg, "items")
        df = _checked_rows(io.read_table(items, input_format, strings=[cfg.item_id(), *parts]), items,
                           row_keys(cfg, item_rows=True), warn, input_format)
        df = events.with_id(df, parts, separator, path=items)
        table = encode_rows(df, cfg.items.features, run.vocabs["items"], run.item_specs,
                            id_col=cfg.item_id(), path=items, section="items")
        return table.ids, embed_table(run, table, queries=False), "items"
    store = run.store(log)
    return np.asarray(store.items.ids), embed_table(run, store.items, queries=False), "items"


def _checked_rows(df: pl.DataFrame, path: str, allowed: set[str], warn: Callable[[str], None] | None,
                  fmt: str | None = None) -> pl.DataFrame:
    """NDJSON input: rows with unknown keys reported and left out (CSV/Parquet columns are a table's
    own business: extra columns there are ignored)."""
    if io.infer_format(path, fmt) != "ndjson":
        return df

    def fail(message: str) -> None:
        raise DataError(message, hint="fix the key, or drop it")

    return drop_unknown_key_rows(df, allowed, path=path, warn=warn or fail)


IDS_SUFFIX = ".ids.ndjson"  # beside an npy file: its ids (formerly `.ids.txt`, one per line: a newline in an id shifted the rest)


def read_ids(path: str | Path) -> np.ndarray:
    """The ids `write_vectors` wrote beside an npy file, in order."""
    return pl.read_ndjson(path, schema={"id": pl.String})["id"].to_numpy()


def write_vectors(ids: np.ndarray, vectors: np.ndarray, out: str, fmt: str) -> None:
    """Write (id, vector) rows; '-' = stdout. npy writes vectors to OUT and ids to OUT.ids.ndjson
    (one `{"id": …}` per line, JSON-escaped: an id holding a newline cannot shift the ids after it)."""
    import sys

    if fmt == "npy":
        if out == "-":
            raise DataError("--format npy needs a file", hint="pass --out FILE.npy")
        buf = _bytes.BytesIO()
        np.save(buf, vectors.astype(np.float32))
        io.atomic_write_bytes(out, buf.getvalue())
        ids_buf = _bytes.BytesIO()
        pl.DataFrame({"id": pl.Series([str(i) for i in ids.tolist()], dtype=pl.String)}).write_ndjson(ids_buf)
        io.atomic_write_bytes(out + IDS_SUFFIX, ids_buf.getvalue())
        return
    if fmt == "csv":
        df = pl.DataFrame({"id": ids.tolist()}).hstack(
            pl.DataFrame(vectors, schema=[f"v{j}" for j in range(vectors.shape[1])]))
    else:
        df = pl.DataFrame({"id": ids.tolist(), "vector": vectors.astype(np.float32)})
    if out == "-":
        if fmt == "parquet":
            raise DataError("--format parquet needs a file", hint="pass --out FILE.parquet or --format ndjson")
        text = df.write_ndjson() if fmt == "ndjson" else df.write_csv()
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    buf = _bytes.BytesIO()
    {"parquet": df.write_parquet, "ndjson": df.write_ndjson, "csv": df.write_csv}[fmt](buf)
    io.atomic_write_bytes(out, buf.getvalue())


def index_settings(cfg: Config) -> dict[str, Any]:
    """How `build_run_index` builds a run's graph under `cfg`: what an index file must record
    (its sidecar's ``built_with``) for a cached one to be reused."""
    h = cfg.eval.hnsw
    return {"M": h.M, "ef_construction": h.ef_construction, "ef": h.ef, "center": h.center, "normalize": h.normalize,
            "query_nodes": {"max": h.query_nodes, "from": "training queries", "seed": 0},
            "hubs": {"queries": h.hub_queries, "k": max(cfg.eval.k), "from": "training queries", "seed": 2}}


def build_run_index(run: Run, vectors: np.ndarray, log: Any = lambda _: None, *, exclude_self: bool = True,
                    measure: bool = True) -> Any:
    """The run's HNSW index over `vectors` (the catalog's, row i = item row i), built as the schema's
    `eval.hnsw` says: centered, with a fixed sample of the distinct training queries' vectors (query
    tower) as deleted bridge nodes; then its recall@10 / @K against exact search is measured on
    `eval.hnsw.recall_queries` validation queries and recorded in ``index.meta["recall"]``.

    `exclude_self`: item-to-item queries leave out their own item row (False when `vectors` are not
    the catalog, e.g. `embed --items FILE --index`); `measure`: False skips the recall measurement
    (`eval --index hnsw` measures it on the queries it scores).
    """
    from sslkit.data.profile import group_pairs
    from sslkit.data.store import training_split
    from sslkit.retrieval.index import HnswIndex

    h, settings = run.cfg.eval.hnsw, index_settings(run.cfg)
    store = run.store(log)
    train, validation = training_split(store)
    table = store.items if store.item_to_item else store.queries
    rng = np.random.default_rng(0)
    nodes = None
    if h.query_nodes and len(train):
        rows = group_pairs(np.asarray(train))[0]
        rows = np.sort(rng.permutation(rows)[:h.query_nodes])
        nodes = embed_table(run, table.take(rows), queries=True)
    t0 = time.perf_counter()
    vectors = np.ascontiguousarray(vectors, np.float32)
    hubs = None
    if h.hub_queries and len(train) and len(vectors):
        hubs = hub_items(run, store, table, np.asarray(train), vectors, h.hub_queries, max(run.cfg.eval.k), exclude_self)
    index = HnswIndex.build(vectors, M=h.M, ef_construction=h.ef_construction, ef=h.ef, center=h.center,
                           normalize=h.normalize, query_nodes=nodes, hubs=hubs, built_with=settings)
    index.meta["build_seconds"] = round(time.perf_counter() - t0, 1)
    log(f"built HNSW index over {len(vectors):,} items ({len(index.hubs):,} hubs, {index.query_nodes:,} query nodes) "
        f"in {index.meta['build_seconds']} s")
    if measure and h.recall_queries and len(validation) and len(vectors) > 1:
        index.meta["recall"] = measure_recall(index, run, table, validation, h.recall_queries, exclude_self, store)
    return index


def hub_items(run: Run, store: FeatureStore, table: EntityTable, train: np.ndarray, vectors: np.ndarray, n: int,
              k: int, exclude_self: bool) -> np.ndarray:
    """Item rows in the exact top `k` of a fixed sample of `n` distinct training queries (the union)."""
    import torch

    from sslkit.data.profile import group_pairs
    from sslkit.retrieval.index import exact_topk

    q = group_pairs(train)[0]
    q = np.sort(np.random.default_rng(2).permutation(q)[:n])
    qv = embed_table(run, table.take(q), queries=True)
    self_rows = q.astype(np.int64) if exclude_self and store.item_to_item else None
    _, top = exact_topk(torch.from_numpy(qv), torch.from_numpy(vectors), min(k, len(vectors)),
                        exclude_self=None if self_rows is None else torch.from_numpy(self_rows))
    top = top.numpy()
    return np.unique(top[top >= 0])


def measure_recall(index: Any, run: Run, table: EntityTable, pairs: np.ndarray, n: int, exclude_self: bool,
                   store: FeatureStore) -> dict[str, Any]:
    """recall@10 and recall@K (K = the schema's largest eval K) of `index` against exact top-K for a
    fixed sample of `n` distinct queries of `pairs` (validation)."""
    import torch

    from sslkit.data.profile import group_pairs
    from sslkit.retrieval.index import ann_recall, exact_topk

    q = group_pairs(np.asarray(pairs))[0]
    q = np.sort(np.random.default_rng(1).permutation(q)[:n])
    qv = embed_table(run, table.take(q), queries=True)
    self_rows = q.astype(np.int64) if exclude_self and store.item_to_item else None
    k = max(1, min(max(run.cfg.eval.k), index.count - (1 if self_rows is not None else 0)))
    _, exact = exact_topk(torch.from_numpy(qv), torch.from_numpy(index.item_vectors()), k,
                          exclude_self=None if self_rows is None else torch.from_numpy(self_rows))
    _, got = index.query(qv, k, exclude_self=self_rows)
    exact = exact.numpy()
    out = {"split": "validation", "queries": int(len(q)), "ef": int(index.meta["ef"])}
    for kk in sorted({min(10, k), k}):
        out[f"recall@{kk}"] = round(ann_recall(got[:, :kk], exact[:, :kk]), 4)
    return out


def recall_line(meta: dict[str, Any]) -> str:
    """"recall@50 0.97 against exact search on 1,000 validation queries" from a sidecar, or why not."""
    rec = meta.get("recall")
    if not isinstance(rec, dict):
        return "recall against exact search not measured"
    ks = sorted((k for k in rec if k.startswith("recall@")), key=lambda k: int(k.split("@")[1]))
    vals = ", ".join(f"{k} {rec[k]:.3f}" for k in ks)
    return f"{vals} against exact search on {rec.get('queries', 0):,} {rec.get('split', '')} queries"


def build_index(vectors: np.ndarray, path: str, run: Run, log: Any = lambda _: None, *, exclude_self: bool = True) -> Any:
    """`embed --index PATH`: the run's index over vectors (see `build_run_index`), saved atomically."""
    index = build_run_index(run, vectors, log, exclude_self=exclude_self)
    index.save(path)
    return index


DERIVED = "derived.json"  # checksums of files derived from the checkpoint (item vectors, index)


def derived_fresh(run: Run, names: list[str]) -> bool:
    """Were these run-directory files written from this checkpoint and data, and are they intact?"""
    try:
        rec = io.read_json(run.dir / DERIVED)
        return (isinstance(rec, dict) and rec.get("source") == _source(run) and not run.allow_data_change
                and all(rec.get("files", {}).get(n) == io.digest_file(run.dir / n) for n in names))
    except (OSError, ValueError):
        return False


def record_derived(run: Run, names: list[str], log: Any) -> None:
    """Note the checksums of freshly written derived files (skipped, with a log line, if read-only)."""
    try:
        rec = io.read_json(run.dir / DERIVED) if (run.dir / DERIVED).exists() else {}
        files = rec.get("files", {}) if isinstance(rec, dict) and rec.get("source") == _source(run) else {}
        files |= {n: io.digest_file(run.dir / n) for n in names}
        io.write_json(run.dir / DERIVED, {"source": _source(run), "files": files})
    except (OSError, ValueError) as e:
        log(f"could not record {', '.join(names)} in {run.dir / DERIVED} ({e}); they will be recomputed next time")


def _source(run: Run) -> str:
    return f"{run.state.get('digest', '')}:{(run.state.get('data') or {}).get('items', '')}"


def item_vectors(run: Run, log: Any = lambda _: None) -> tuple[np.ndarray, np.ndarray]:
    """Catalog ids and vectors, cached in the run directory (`items.npy`, `items.npy.ids.ndjson`) and
    trusted only while their checksums match the ones recorded for this checkpoint (derived.json)."""
    names = ["items.npy", "items.npy" + IDS_SUFFIX]  # a run's older items.npy.ids.txt is not read: recomputed
    vec_path, ids_path = run.dir / names[0], run.dir / names[1]
    if run.state.get("digest") and derived_fresh(run, names):
        vectors = np.load(vec_path, allow_pickle=False)
        ids = read_ids(ids_path)
        if len(ids) == len(vectors):
            return ids, vectors
    ids, vectors, _ = embed(run, log=log)
    if run.allow_data_change:  # vectors of data the run was not trained on: never cached as the run's
        return ids, vectors
    try:
        write_vectors(ids, vectors, str(vec_path), "npy")
    except OSError as e:  # a read-only run directory: serve from memory
        log(f"could not cache the item vectors in {run.dir} ({e.strerror}); computed them in memory")
        return ids, vectors
    record_derived(run, names, log)
    return ids, vectors

