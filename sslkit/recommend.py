"""`sslkit recommend`: query ids or feature rows in (one per line), top-K item ids out (NDJSON).

Lines are answered in input order; a malformed line or unknown id is reported on stderr with its
line number and the good lines are still answered.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from sslkit.embed import Run, embed_table, encode_rows, item_vectors, load_run
from sslkit.errors import DataError
from sslkit.index import HnswIndex


def _read_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(source).read_text().splitlines()
    except OSError as e:
        raise DataError(f"{source}: cannot read queries ({e.strerror})")


def load_index(run: Run, log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, HnswIndex]:
    """Catalog ids, vectors and the run's HNSW index (built and saved on first use)."""
    ids, vectors = item_vectors(run, log)
    path = run.dir / "index.hnsw"
    if path.exists() and path.stat().st_mtime >= (run.dir / "checkpoint.pt").stat().st_mtime:
        index = HnswIndex.load(path)
        if index.meta["count"] == len(ids):
            return ids, vectors, index
    h = run.cfg.eval.hnsw
    log(f"building HNSW index over {len(ids):,} items → {path}")
    index = HnswIndex.build(vectors, M=h.M, ef_construction=h.ef_construction, ef=h.ef)
    index.save(path)
    return ids, vectors, index


def recommend_lines(run_dir: str | Path, source: str, k: int, *, write: Callable[[str], Any],
                    warn: Callable[[str], None], log: Callable[[str], None] = lambda _: None) -> int:
    """Answer every input line; returns the number of lines that failed."""
    run = load_run(run_dir)
    lines = _read_lines(source)
    ids, item_vecs, index = load_index(run, log)
    item_row = {v: i for i, v in enumerate(ids.tolist())}
    query_row: dict[str, int] = {}
    if not run.cfg.item_to_item():
        store = run.store(log)
        query_row = {v: i for i, v in enumerate(np.asarray(store.queries.ids).tolist())}
    answers: dict[int, tuple[str, np.ndarray, int]] = {}  # line → (query id, vector, self row)
    feature_rows: list[tuple[int, dict[str, Any]]] = []
    failed = 0
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                obj = json.loads(text)
                assert isinstance(obj, dict)
            except (json.JSONDecodeError, AssertionError):
                warn(f"line {n}: not a JSON object: {text[:60]!r}")
                failed += 1
                continue
            feature_rows.append((n, obj))
            continue
        if run.cfg.item_to_item():
            row = item_row.get(text)
            if row is None:
                warn(f"line {n}: unknown item id {text!r} (not in the catalog)")
                failed += 1
                continue
            answers[n] = (text, item_vecs[row], row)
        else:
            row = query_row.get(text)
            if row is None:
                warn(f"line {n}: unknown query id {text!r}; pass its features as an NDJSON object instead")
                failed += 1
                continue
            answers[n] = (text, np.empty(0), -2 - row)  # embedded below
    failed += _embed_pending(run, answers, feature_rows, warn)
    _answer(run, answers, ids, index, k, write)
    return failed


def _embed_pending(run: Run, answers: dict[int, tuple[str, np.ndarray, int]], feature_rows: list[tuple[int, dict[str, Any]]],
                   warn: Callable[[str], None]) -> int:
    """Vectors for known user ids (query tower) and for feature rows (cold queries)."""
    failed = 0
    pending = [n for n, (_, vec, row) in answers.items() if row <= -2]
    if pending:
        store = run.store()
        from sslkit.evaluate import _rows

        rows = np.array([-2 - answers[n][2] for n in pending])
        vecs = embed_table(run, _rows(store.queries, rows), queries=True)
        for n, v in zip(pending, vecs):
            answers[n] = (answers[n][0], v, -1)
    item_mode = run.cfg.item_to_item()
    feats = run.cfg.items.features if item_mode else (run.cfg.queries.features or {})
    vocabs = run.vocabs["items" if item_mode else "queries"]
    specs = run.item_specs if item_mode else (run.query_specs or {})
    id_col = run.cfg.item_id() if item_mode else run.cfg.query_id()
    for n, obj in feature_rows:
        try:
            df = pl.DataFrame([{id_col: str(obj.get(id_col, f"line{n}")), **{k: v for k, v in obj.items() if k != id_col}}])
            table = encode_rows(df, feats, vocabs, specs, id_col=id_col, path=f"line {n}", section="items" if item_mode else "queries")
            vec = embed_table(run, table, queries=not item_mode)[0]
        except (DataError, Exception) as e:  # one bad row must not stop the others
            warn(f"line {n}: {e}")
            failed += 1
            continue
        answers[n] = (str(table.ids[0]), vec, -1)
    return failed


def _answer(run: Run, answers: dict[int, tuple[str, np.ndarray, int]], ids: np.ndarray, index: HnswIndex, k: int,
            write: Callable[[str], Any]) -> None:
    if not answers:
        return
    order = sorted(answers)
    vecs = np.stack([answers[n][1] for n in order]).astype(np.float32)
    self_rows = np.array([answers[n][2] for n in order]) if run.cfg.item_to_item() else None
    scores, top = index.query(vecs, min(k, len(ids) - (1 if self_rows is not None else 0)), exclude_self=self_rows)
    for n, s, t in zip(order, scores, top):
        ok = t >= 0
        write(json.dumps({"query": answers[n][0], "items": ids[t[ok]].tolist(),
                          "scores": [round(float(x), 6) for x in s[ok]]}))
