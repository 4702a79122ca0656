"""`sslkit eval`: whole-catalog retrieval metrics for trained runs (DESIGN §5)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sslkit import io
from sslkit.errors import DataError
from sslkit.metrics import compute_metrics, mean_std, paired_bootstrap_ci, summarize
from sslkit.profile import group_pairs, head_items, item_counts, slice_of_pairs, toppop_topk


def csr_take(indptr: np.ndarray, items: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a CSR (indptr, items) in the given order, vectorized: (indptr', items')."""
    starts, counts = indptr[rows], indptr[np.asarray(rows) + 1] - indptr[rows]
    new_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    idx = np.repeat(starts - new_ptr[:-1], counts) + np.arange(new_ptr[-1])
    return new_ptr, items[idx]

SLICES = ("head", "tail", "cold")


@dataclass
class RunEval:
    run: str
    config: dict[str, Any]
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    per_query: dict[str, np.ndarray] = field(repr=False)
    queries: np.ndarray = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "config": self.config, "metrics": self.metrics, "slices": self.slices, **self.extra}


def retrieve(item_vecs: Any, query_vecs: Any, k: int, *, index: str, exclude_self: np.ndarray | None,
             exclude: tuple[np.ndarray, np.ndarray] | None, batch_size: int, hnsw: Any = None) -> np.ndarray:
    """Top-k item rows (Q, k) by the chosen backend; exclusions applied before the cut."""
    import torch

    from sslkit.index import HnswIndex, exact_topk

    if index == "exact":
        _, top = exact_topk(torch.as_tensor(query_vecs).float(), torch.as_tensor(item_vecs).float(), k,
                            exclude_self=None if exclude_self is None else torch.as_tensor(exclude_self),
                            exclude_indptr=None if exclude is None else exclude[0],
                            exclude_items=None if exclude is None else exclude[1], query_block=batch_size)
        return top.cpu().numpy()
    extra = 0 if exclude is None else int(np.diff(exclude[0]).max(initial=0))
    idx = hnsw if hnsw is not None else HnswIndex.build(np.asarray(item_vecs, np.float32), M=16)
    _, top = idx.query(np.asarray(query_vecs, np.float32), k + extra, exclude_self=exclude_self)
    if exclude is not None:
        owner = np.repeat(np.arange(len(top)), np.diff(exclude[0]))
        n = int(max(top.max(initial=0), np.max(exclude[1], initial=0))) + 2
        banned = np.isin(np.arange(len(top))[:, None] * n + top, owner * n + exclude[1])
        order = np.argsort(banned, axis=1, kind="stable")
        top = np.where(np.take_along_axis(banned, order, 1), -1, np.take_along_axis(top, order, 1))
    return top[:, :k]


def slice_metrics(top: np.ndarray, q: np.ndarray, indptr: np.ndarray, items: np.ndarray, labels: np.ndarray,
                  ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """Metrics restricted to the test pairs of each slice (queries with ≥ 1 pair in it)."""
    owner = np.repeat(np.arange(len(q)), np.diff(indptr))
    out = {}
    for i, name in enumerate(SLICES):
        sel = labels == i
        if not sel.any():
            out[name] = {"pairs": 0, "queries": 0}
            continue
        qs, counts = np.unique(owner[sel], return_counts=True)
        sub_indptr = np.concatenate([[0], np.cumsum(counts)])
        m = summarize(compute_metrics(top[qs], sub_indptr, items[sel], ks))
        out[name] = {"pairs": int(sel.sum()), "queries": int(len(qs)), **{k: v for k, v in m.items() if k.split("@")[0] in ("recall", "map")}}
    return out


def evaluate_run(run_dir: str | Path, *, ks: Sequence[int] | None = None, index: str | None = None,
                 exclude_seen: bool | None = None, batch_size: int | None = None, ann_queries: int | None = None,
                 log: Callable[[str], None] = lambda _: None) -> RunEval:
    """Embed the catalog, retrieve for every test query, score (DESIGN §5); writes eval.json."""
    from sslkit.embed import embed_table, load_run

    run = load_run(run_dir)
    cfg = run.cfg
    ks = sorted(set(ks or cfg.eval.k))
    index = index or cfg.eval.index
    exclude_seen = cfg.eval.exclude_seen if exclude_seen is None else exclude_seen
    batch = batch_size or cfg.eval.batch_size
    store = run.store(log)
    test, train = np.asarray(store.splits["test"]), np.asarray(store.splits["train"])
    q, indptr, rel = group_pairs(test)
    n_items = store.items.rows
    k = min(max(ks), n_items - (1 if store.item_to_item else 0))
    if k < max(ks):
        raise DataError(f"K={max(ks)} exceeds the catalog's {n_items} items", hint="use a smaller --k")
    item_vecs = embed_table(run, store.items, queries=False)
    query_table = store.items if store.item_to_item else store.queries
    query_vecs = embed_table(run, query_table.take(q), queries=True)  # item-to-item too: the query tower
    exclude_self = q if store.item_to_item else None
    seen = _seen(train, q) if exclude_seen else None
    extra: dict[str, Any] = {"index": index, "queries": int(len(q)), "test_pairs": int(len(rel))}
    t0 = time.perf_counter()
    if index == "exact":
        top = retrieve(item_vecs, query_vecs, k, index="exact", exclude_self=exclude_self, exclude=seen, batch_size=batch)
    else:
        from sslkit.index import HnswIndex, ann_recall

        h = cfg.eval.hnsw
        hn = HnswIndex.build(item_vecs, M=h.M, ef_construction=h.ef_construction, ef=h.ef)
        extra["index_build_seconds"] = round(time.perf_counter() - t0, 2)
        top = retrieve(item_vecs, query_vecs, k, index="hnsw", exclude_self=exclude_self, exclude=seen,
                       batch_size=batch, hnsw=hn)
        # ANN recall against exact top-K on a fixed sample of queries (exact search is the slow part)
        pick = np.sort(np.random.default_rng(0).permutation(len(q))[:ann_queries or cfg.eval.ann_queries])
        sub_seen = None if seen is None else csr_take(*seen, pick)
        exact = retrieve(item_vecs, query_vecs[pick], k, index="exact",
                         exclude_self=None if exclude_self is None else exclude_self[pick], exclude=sub_seen,
                         batch_size=batch)
        extra[f"ann_recall@{k}"] = ann_recall(top[pick], exact)
        extra["ann_recall_queries"] = int(len(pick))
    extra["retrieval_seconds"] = round(time.perf_counter() - t0, 2)
    per_query = compute_metrics(top, indptr, rel, ks)
    train_counts = item_counts(train, n_items)
    labels = slice_of_pairs(rel, train_counts, head_items(train_counts, cfg.eval.head_fraction))
    pop = summarize(compute_metrics(toppop_topk(train_counts, q, k, store.item_to_item), indptr, rel, ks))
    extra["toppop"] = {m: v for m, v in pop.items() if m.split("@")[0] in ("recall", "map")}
    metrics = {m: v for m, v in summarize(per_query).items()}
    result = RunEval(run=str(run_dir), config=_config_summary(cfg), metrics=metrics,
                     slices=slice_metrics(top, q, indptr, rel, labels, ks), per_query=per_query, queries=q, extra=extra)
    io.write_json(Path(run_dir) / "eval.json", result.to_json())
    return result


def _seen(train: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each evaluated query's training positives."""
    tq, tptr, titems = group_pairs(train)
    pos = np.minimum(np.searchsorted(tq, queries), max(len(tq) - 1, 0))
    found = (tq[pos] == queries) if len(tq) else np.zeros(len(queries), bool)
    # queries without training pairs select an empty row: point them at a zero-length slice
    ptr = np.append(tptr, tptr[-1])
    rows = np.where(found, pos, len(tptr) - 1)
    return csr_take(ptr, titems, rows)

def _config_summary(cfg: Any) -> dict[str, Any]:
    return {"aug": cfg.ssl.aug, "alpha": cfg.ssl.alpha, "dropout": cfg.ssl.dropout, "seed": cfg.train.seed,
            "fraction": cfg.split.fraction, "lr": cfg.train.lr, "temperature": cfg.train.temperature,
            "hidden": cfg.model.hidden, "embedding_dim": cfg.model.embedding_dim}


def compare(results: list[RunEval], baseline: RunEval | None, *, n_boot: int = 1000) -> dict[str, Any]:
    """Relative improvements with paired bootstrap CIs vs the baseline, and seed groups (mean ± std)."""
    out: dict[str, Any] = {}
    if baseline is not None:
        rows = []
        for r in results:
            if r is baseline:
                continue
            if not np.array_equal(r.queries, baseline.queries):
                raise DataError(f"{r.run} and {baseline.run} were evaluated on different test queries",
                                hint="compare runs of the same schema and split")
            rows.append({"run": r.run, **{m: paired_bootstrap_ci(baseline.per_query[m], r.per_query[m], n_boot=n_boot)
                                           for m in r.per_query if m.split("@")[0] in ("recall", "map")}})
        out["baseline"] = baseline.run
        out["vs_baseline"] = rows
    groups: dict[str, list[RunEval]] = {}
    for r in results:
        key = io.dumps({k: v for k, v in r.config.items() if k != "seed"})
        groups.setdefault(key, []).append(r)
    out["groups"] = [{"runs": [r.run for r in g], "config": {k: v for k, v in g[0].config.items() if k != "seed"},
                      "seeds": len(g), **{m: dict(zip(("mean", "std"), mean_std([r.metrics[m] for r in g])))
                                          for m in g[0].metrics if m.split("@")[0] in ("recall", "map")}}
                     for g in groups.values() if len(g) > 1]
    return out
