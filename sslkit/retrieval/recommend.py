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

from sslkit.retrieval.embed import (Run, build_run_index, derived_fresh, embed_table, encode_rows, index_settings, item_vectors,
                                    load_run, recall_line, record_derived, row_keys, unknown_key_message)
from sslkit.errors import CheckpointError, DataError, SslkitError
from sslkit.evaluation.evaluate import drop_excluded
from sslkit.retrieval.index import HnswIndex
from sslkit.data.profile import seen_items
from sslkit.data.store import all_pairs


MAX_LINE_BYTES = 1 << 20  # a feature row; longer lines are skipped (and reported) without being held
MAX_ID_CHARS = 1024  # ids are compared as fixed-width strings: one huge id would widen them all


def _read_lines(source: str) -> tuple[list[str], list[tuple[int, str]]]:
    """Input lines (a bad line becomes "") and the problems found: invalid UTF-8, overlong lines.

    Read in binary, one bounded line at a time, so memory does not depend on a line's length.
    """
    try:
        fh = sys.stdin.buffer if source == "-" else open(source, "rb")
    except OSError as e:
        raise DataError(f"{source}: cannot read queries ({e.strerror})")
    lines: list[str] = []
    problems: list[tuple[int, str]] = []
    try:
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            n = len(lines) + 1
            lines.append("")
            if len(raw) > MAX_LINE_BYTES:
                while not raw.endswith(b"\n") and (raw := fh.readline(1 << 16)):
                    pass  # the rest of the line, read and dropped in bounded pieces
                problems.append((n, f"line {n}: longer than {MAX_LINE_BYTES >> 10} KiB; skipped"))
                continue
            try:
                lines[-1] = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append((n, f"line {n}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at position {e.start + 1})"))
    finally:
        if source != "-":
            fh.close()
    return lines, problems


def _clip(text: str, n: int = 60) -> str:
    """A user's input echoed in a message: at most `n` characters."""
    return text if len(text) <= n else text[:n] + "…"


def load_index(run: Run, log: Callable[[str], None], kind: str = "hnsw") -> tuple[np.ndarray, np.ndarray, HnswIndex | None]:
    """Catalog ids, vectors and the run's HNSW index (None for `kind` "exact").

    The index is built on first use and cached in the run (`index.hnsw` + sidecar, their checksums
    in derived.json); a cached one is used only while both files are intact, were built from this
    checkpoint, and record the schema's `eval.hnsw` settings — otherwise it is rebuilt, saying why.
    """
    ids, vectors = item_vectors(run, log)
    if kind == "exact":
        log(f"serving by exact search over {len(ids):,} items")
        return ids, vectors, None
    path = run.dir / "index.hnsw"
    names = ["index.hnsw", "index.hnsw.json"]
    why = None
    if path.exists() and not run.allow_data_change:
        if not (run.state.get("digest") and derived_fresh(run, [*names, "items.npy"])):
            why = (f"{path}: does not match the checksums derived.json records for this checkpoint "
                   "(edited, damaged, or built by an older sslkit or from another checkpoint)")
        else:
            try:
                index = HnswIndex.load(path, vectors=vectors)
            except CheckpointError as e:
                why = e.message
            else:
                if index.count == len(ids) and index.meta.get("built_with") == index_settings(run.cfg):
                    log(f"serving from {path} ({recall_line(index.meta)})")
                    return ids, vectors, index
                why = f"{path}: built with other settings than the schema's eval.hnsw"
    if why:
        log(f"{why}; rebuilding it")
    log(f"building HNSW index over {len(ids):,} items → {path}")
    index = build_run_index(run, vectors, log)
    log(f"index: {recall_line(index.meta)}")
    if run.allow_data_change:  # built over data the run was not trained on: not kept in the run
        return ids, vectors, index
    try:
        index.save(path)
    except OSError as e:  # a read-only run directory: serve from memory
        log(f"could not save the index in {run.dir} ({e.strerror}); built it in memory")
        return ids, vectors, index
    record_derived(run, names, log)
    return ids, vectors, index


def rows_of(ids: np.ndarray, keys: list[str]) -> np.ndarray:
    """Row of each key in `ids` (−1 when absent), by sorting once: no per-row dict over the catalog."""
    ids = np.asarray(ids).astype(str)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    k = np.asarray(keys, dtype=str) if keys else np.zeros(0, dtype=str)
    pos = np.minimum(np.searchsorted(sorted_ids, k), max(len(ids) - 1, 0))
    hit = (sorted_ids[pos] == k) if len(ids) else np.zeros(len(k), bool)
    return np.where(hit, order[pos], -1)


def recommend_lines(run_dir: str | Path, source: str, k: int, *, write: Callable[[str], Any],
                    warn: Callable[[str], None], log: Callable[[str], None] = lambda _: None,
                    exclude_seen: bool = False, allow_data_change: bool = False, index: str = "hnsw") -> int:
    """Answer every input line in order; returns the number of lines that failed.

    `exclude_seen`: a query given by id gets no item it already has a pair with anywhere in the
    run's data (training, validation or test pairs: what the user has rated, bought, seen); a query
    given as a feature row has no history. `index`: "hnsw" (the run's cached graph) or "exact".
    """
    run = load_run(run_dir, allow_data_change=allow_data_change)
    lines, unreadable = _read_lines(source)
    problems: list[tuple[int, str]] = list(unreadable)  # reported in line order at the end
    ids, vectors, graph = load_index(run, log, index)
    if len(ids) - (1 if run.cfg.item_to_item() else 0) < 1:
        raise DataError(f"{run_dir}: the catalog has {len(ids)} item(s), so there is nothing to recommend "
                        "(item-to-item leaves out the query item itself)", hint="train on a catalog of 2 or more items")
    item_mode = run.cfg.item_to_item()
    store = run.store(log)
    queries = store.items if item_mode else store.queries  # item-to-item: queries are catalog items
    id_lines: list[tuple[int, str]] = []
    allowed = row_keys(run.cfg, item_rows=item_mode)
    feature_lines: list[tuple[int, dict[str, Any]]] = []
    for n, raw in enumerate(lines, 1):  # parsing only; lookups and embedding are batched below
        text = raw.strip()
        if not text:
            continue
        if not text.startswith("{"):
            if len(text) > MAX_ID_CHARS:
                problems.append((n, f"line {n}: an id of {len(text):,} characters ({_clip(text)!r}); "
                                    f"ids are at most {MAX_ID_CHARS}"))
            else:
                id_lines.append((n, text))
            continue
        try:
            obj = json.loads(text)
        except RecursionError:  # "[[[[…" thousands deep: this line only, like any other bad line
            problems.append((n, f"line {n}: JSON nested too deeply to read"))
            continue
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            problems.append((n, f"line {n}: not a JSON object: {text[:60]!r}"))
            continue
        nested = [k for k, v in obj.items() if isinstance(v, dict)
                  or (isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v))]
        if nested:
            problems.append((n, f"line {n}: key {_clip(str(nested[0]))!r} holds nested JSON; a feature value is "
                                "text, a number, or a list of them"))
            continue
        if (unknown := unknown_key_message(obj, allowed)):
            problems.append((n, f"line {n}: {unknown}"))
            continue
        feature_lines.append((n, obj))
    answers: dict[int, tuple[str, np.ndarray, int]] = {}  # line → (query id, vector, query row or −1)
    rows = rows_of(queries.ids, [t for _, t in id_lines])
    known = [(n, t, r) for (n, t), r in zip(id_lines, rows) if r >= 0]
    for (n, t), r in zip(id_lines, rows):
        if r < 0:
            what = "item id" if item_mode else "query id"
            fix = "(not in the catalog)" if item_mode else "; pass its features as an NDJSON object instead"
            problems.append((n, f"line {n}: unknown {what} {_clip(t)!r} {fix}"))
    if known:
        sel = np.array([r for _, _, r in known])
        vecs = embed_table(run, queries.take(sel), queries=True)  # the query tower, in both modes
        for (n, t, r), v in zip(known, vecs):
            answers[n] = (t, v, int(r))
    _embed_feature_lines(run, feature_lines, answers, problems)
    for _, message in sorted(problems, key=lambda p: p[0]):
        warn(_clip(message, 500))
    _answer(run, answers, ids, vectors, graph, k, write, seen=all_pairs(store) if exclude_seen else None)
    return len(problems)


def _embed_feature_lines(run: Run, lines: list[tuple[int, dict[str, Any]]],
                         answers: dict[int, tuple[str, np.ndarray, int]], problems: list[tuple[int, str]]) -> None:
    """Encode feature rows with the run's vocabularies and embed them in one batch; on a bad row,
    fall back to row by row so that only the bad rows are reported."""
    if not lines:
        return
    try:
        for n, (qid, vec) in zip([n for n, _ in lines], _embed_objects(run, lines)):
            answers[n] = (qid, vec, -1)
        return
    except (SslkitError, ValueError, TypeError, pl.exceptions.PolarsError):
        pass
    for n, obj in lines:
        try:
            (qid, vec), = _embed_objects(run, [(n, obj)])
        except SslkitError as e:
            problems.append((n, e.line()))  # its message already names the line
            continue
        except (ValueError, TypeError, pl.exceptions.PolarsError) as e:
            problems.append((n, f"line {n}: {str(e).splitlines()[0]}"))
            continue
        answers[n] = (qid, vec, -1)


def _embed_objects(run: Run, lines: list[tuple[int, dict[str, Any]]]) -> list[tuple[str, np.ndarray]]:
    item_mode = run.cfg.item_to_item()
    feats = run.cfg.items.features if item_mode else (run.cfg.queries.features or {})
    id_col = run.cfg.item_id() if item_mode else run.cfg.query_id()
    df = pl.DataFrame([{**obj, id_col: str(obj.get(id_col, f"line{n}"))} for n, obj in lines])
    where = f"line {lines[0][0]}" if len(lines) == 1 else "stdin"
    table = encode_rows(df, feats, run.vocabs["items" if item_mode else "queries"],
                        run.item_specs if item_mode else (run.query_specs or {}), id_col=id_col, path=where,
                        section="items" if item_mode else "queries")
    return list(zip(table.ids.tolist(), embed_table(run, table, queries=True)))


def _answer(run: Run, answers: dict[int, tuple[str, np.ndarray, int]], ids: np.ndarray, vectors: np.ndarray,
            index: HnswIndex | None, k: int, write: Callable[[str], Any], seen: np.ndarray | None = None) -> None:
    """Top-k per answer (its own item excluded in item-to-item mode; with `seen` pairs, the items its
    query row has a pair with too), from `index`, or by exact search when it is None."""
    if not answers:
        return
    order = sorted(answers)
    vecs = np.stack([answers[n][1] for n in order]).astype(np.float32)
    rows = np.array([answers[n][2] for n in order])  # query row, -1 for feature rows
    self_rows = rows if run.cfg.item_to_item() else None
    k = max(1, min(k, len(ids) - (1 if self_rows is not None else 0)))  # --k above the catalog: all there is
    exclude = None if seen is None else seen_items(seen, rows)
    if index is None:
        import torch

        from sslkit.retrieval.index import exact_topk

        st, it = exact_topk(torch.from_numpy(vecs), torch.from_numpy(np.ascontiguousarray(vectors, np.float32)), k,
                            exclude_self=None if self_rows is None else torch.from_numpy(self_rows.astype(np.int64)),
                            exclude_indptr=None if exclude is None else exclude[0],
                            exclude_items=None if exclude is None else exclude[1])
        scores, top = st.numpy(), it.numpy()
    else:
        extra = 0 if exclude is None else int(np.diff(exclude[0]).max(initial=0))
        scores, top = drop_excluded(*index.query(vecs, k + extra, exclude_self=self_rows), exclude, k)
    for n, s, t in zip(order, scores, top):
        ok = t >= 0
        write(json.dumps({"query": answers[n][0], "items": ids[t[ok]].tolist(),
                          "scores": [round(float(x), 6) for x in s[ok]]}))
