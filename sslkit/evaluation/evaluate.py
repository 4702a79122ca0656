"""`sslkit eval`: whole-catalog retrieval metrics for trained runs (DESIGN §5)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sslkit.data import io
from sslkit.errors import DataError
from sslkit.evaluation.metrics import (compute_metrics, mean_std, paired_bootstrap_ci, paired_seeds_bootstrap_ci,
                            seeds_bootstrap_ci, summarize)
from sslkit.data.profile import (csr_take, group_pairs, head_items, item_counts, novel_pairs, seen_items, slice_of_pairs,
                                 toppop_topk)
from sslkit.data.store import training_split


SLICES = ("head", "tail", "cold")  # exclusive, by the item's training count (DESIGN §5)
NOVEL = "novel"  # across them: test pairs absent from training (item-to-item: in either direction)


@dataclass
class RunEval:
    run: str
    config: dict[str, Any]
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    per_query: dict[str, np.ndarray] = field(repr=False)
    queries: np.ndarray = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    # slice → metric → float [Q]: each query's metric on its pairs of that slice (NaN: none in it)
    slice_per_query: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "config": self.config, "metrics": self.metrics, "slices": self.slices, **self.extra}


def retrieve(item_vecs: Any, query_vecs: Any, k: int, *, index: str, exclude_self: np.ndarray | None,
             exclude: tuple[np.ndarray, np.ndarray] | None, batch_size: int, hnsw: Any = None) -> np.ndarray:
    """Top-k item rows (Q, k) by the chosen backend; exclusions applied before the cut."""
    import torch

    from sslkit.retrieval.index import HnswIndex, exact_topk

    if index == "exact":
        _, top = exact_topk(torch.as_tensor(query_vecs).float(), torch.as_tensor(item_vecs).float(), k,
                            exclude_self=None if exclude_self is None else torch.as_tensor(exclude_self),
                            exclude_indptr=None if exclude is None else exclude[0],
                            exclude_items=None if exclude is None else exclude[1], query_block=batch_size)
        return top.cpu().numpy()
    extra = 0 if exclude is None else int(np.diff(exclude[0]).max(initial=0))
    idx = hnsw if hnsw is not None else HnswIndex.build(np.asarray(item_vecs, np.float32), M=16)
    scores, top = idx.query(np.asarray(query_vecs, np.float32), k + extra, exclude_self=exclude_self)
    return drop_excluded(scores, top, exclude, k)[1]


def drop_excluded(scores: np.ndarray, top: np.ndarray, exclude: tuple[np.ndarray, np.ndarray] | None,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranked results (scores float [Q, W], item rows int [Q, W], -1 = none) without each query's
    excluded items (CSR over the Q queries), order kept, cut to k: (scores [Q, k], rows [Q, k])."""
    if exclude is not None:
        owner = np.repeat(np.arange(len(top)), np.diff(exclude[0]))
        n = int(max(top.max(initial=0), np.max(exclude[1], initial=0))) + 2
        banned = np.isin(np.arange(len(top))[:, None] * n + top, owner * n + exclude[1])
        order = np.argsort(banned, axis=1, kind="stable")
        hide = np.take_along_axis(banned, order, 1)
        top = np.where(hide, -1, np.take_along_axis(top, order, 1))
        scores = np.where(hide, -np.inf, np.take_along_axis(scores, order, 1))
    return scores[:, :k], top[:, :k]


def _slice_masks(labels: np.ndarray, novel: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    masks = [(name, labels == i) for i, name in enumerate(SLICES)]
    return masks + ([(NOVEL, np.asarray(novel, bool))] if novel is not None else [])


def slice_per_query(top: np.ndarray, q: np.ndarray, indptr: np.ndarray, items: np.ndarray, labels: np.ndarray,
                    ks: Sequence[int], novel: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """slice → metric → float [Q]: each query's Recall/MAP@K on its pairs of the slice, NaN for a query
    with none (a slice without pairs is absent) — what `slice_metrics` averages and what a paired
    bootstrap over queries needs for a slice's interval (`sslkit.study.sweep.versus`). `novel` (bool
    per pair) adds the novel slice, which cuts across head / tail / cold."""
    owner = np.repeat(np.arange(len(q)), np.diff(indptr))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, sel in _slice_masks(labels, novel):
        if not sel.any():
            continue
        qs, counts = np.unique(owner[sel], return_counts=True)
        sub_indptr = np.concatenate([[0], np.cumsum(counts)])
        out[name] = {}
        for k, v in compute_metrics(top[qs], sub_indptr, items[sel], ks).items():
            if k.split("@")[0] in ("recall", "map"):
                out[name][k] = np.full(len(q), np.nan)
                out[name][k][qs] = v
    return out


def slice_metrics(per_query: dict[str, dict[str, np.ndarray]], labels: np.ndarray,
                  novel: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Metrics restricted to the test pairs of each slice (queries with ≥ 1 pair in it), from
    `slice_per_query`; `labels` gives each pair's slice, `novel` (bool per pair) the novel slice."""
    out = {}
    for name, sel in _slice_masks(labels, novel):
        if name not in per_query:
            out[name] = {"pairs": 0, "queries": 0}
            continue
        has = ~np.isnan(next(iter(per_query[name].values())))
        out[name] = {"pairs": int(sel.sum()), "queries": int(has.sum()),
                     **summarize({k: v[has] for k, v in per_query[name].items()})}
    return out


def evaluate_run(run_dir: str | Path, *, ks: Sequence[int] | None = None, index: str | None = None,
                 exclude_seen: bool | None = None, batch_size: int | None = None, ann_queries: int | None = None,
                 log: Callable[[str], None] = lambda _: None, split: str = "test",
                 allow_data_change: bool = False) -> RunEval:
    """Embed the catalog, retrieve for every query of `split`, score (DESIGN §5).

    `split`: "test" (the final table; writes eval.json) or "validation" (tuning and model selection,
    the pairs `train` validates on; writes eval.validation.json). Both go through this same code with
    the same options; the options applied are recorded in the result (`split`, `exclude_seen`, ...).
    """
    from sslkit.retrieval.embed import build_run_index, embed_table, load_run

    if split not in EVAL_FILES:
        raise DataError(f"unknown split {split!r}", hint="use test or validation (--split)")
    run = load_run(run_dir, allow_data_change=allow_data_change)  # the data pin is checked in run.store
    cfg = run.cfg
    ks = sorted(set(ks or cfg.eval.k))
    index = index or cfg.eval.index
    exclude_seen = cfg.eval.exclude_seen if exclude_seen is None else exclude_seen
    batch = batch_size or cfg.eval.batch_size
    store = run.store(log)
    train, validation = training_split(store)
    scored = np.asarray(store.splits["test"]) if split == "test" else validation
    if not len(scored):
        raise DataError(f"{run_dir}: the run has no {split} pairs (split.validation_fraction is 0)",
                        hint="retrain with split.validation_fraction > 0, or evaluate --split test")
    q, indptr, rel = group_pairs(scored)
    n_items = store.items.rows
    k = min(max(ks), n_items - (1 if store.item_to_item else 0))
    if k < max(ks):
        raise DataError(f"K={max(ks)} exceeds the catalog's {n_items} items", hint="use a smaller --k")
    item_vecs = embed_table(run, store.items, queries=False)
    query_table = store.items if store.item_to_item else store.queries
    query_vecs = embed_table(run, query_table.take(q), queries=True)  # item-to-item too: the query tower
    exclude_self = q if store.item_to_item else None
    seen = seen_items(train, q) if exclude_seen else None
    extra: dict[str, Any] = {"split": split, "index": index, "exclude_seen": bool(exclude_seen), "k": ks,
                             "queries": int(len(q)), "pairs": int(len(rel))}
    if split == "test":
        extra["test_pairs"] = int(len(rel))
    extra["seed_group"] = seed_group_key(cfg, store.key)  # runs that differ only by seed share it
    t0 = time.perf_counter()
    if index == "exact":
        top = retrieve(item_vecs, query_vecs, k, index="exact", exclude_self=exclude_self, exclude=seen, batch_size=batch)
    else:
        from sslkit.retrieval.index import ann_recall

        hn = build_run_index(run, item_vecs, log, measure=False)
        extra["index_build_seconds"] = round(time.perf_counter() - t0, 2)
        # the index behind the ANN numbers: its settings, and the hubs / query nodes it was built with
        extra["hnsw"] = {**cfg.eval.hnsw.model_dump(), "hubs_used": len(hn.hubs), "query_nodes_used": hn.query_nodes}
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
    pop = summarize(compute_metrics(toppop_topk(train_counts, q, k, store.item_to_item, exclude=seen), indptr, rel, ks))
    extra["toppop"] = {m: v for m, v in pop.items() if m.split("@")[0] in ("recall", "map")}
    metrics = {m: v for m, v in summarize(per_query).items()}
    novel = novel_pairs(np.repeat(q, np.diff(indptr)), rel, train, both_directions=store.item_to_item)
    by_slice = slice_per_query(top, q, indptr, rel, labels, ks, novel)
    result = RunEval(run=str(run_dir), config=_config_summary(cfg), metrics=metrics,
                     slices=slice_metrics(by_slice, labels, novel), per_query=per_query, queries=q, extra=extra,
                     slice_per_query=by_slice)
    try:
        io.write_json(Path(run_dir) / EVAL_FILES[split], result.to_json())
    except OSError as e:  # a read-only run directory: the result still goes to stdout
        log(f"could not write {Path(run_dir) / EVAL_FILES[split]} ({e.strerror}); results are printed only")
    return result


EVAL_FILES = {"test": "eval.json", "validation": "eval.validation.json"}  # split → what evaluate_run writes
OPTIONS = {"split": "--split", "index": "--index", "k": "--k", "exclude_seen": "--exclude-seen/--include-seen"}


def check_same_options(results: Sequence[RunEval]) -> None:
    """Rows of one table must be scored alike: runs whose own config defaults (eval.*) led to different
    options are refused, naming the flag that sets the option for all of them.

    Raises:
        ConfigError: two runs differ in split, index, K or exclude_seen.
    """
    from sslkit.errors import ConfigError

    for r in results[1:]:
        for key, flag in OPTIONS.items():
            if r.extra.get(key) != results[0].extra.get(key):
                raise ConfigError(f"{results[0].run} and {r.run} were scored with different {key} "
                                  f"({results[0].extra.get(key)} vs {r.extra.get(key)}, from their configs' eval section)",
                                  hint=f"pass {flag} so every row is scored alike")


def _config_summary(cfg: Any) -> dict[str, Any]:
    return {"aug": cfg.ssl.aug, "alpha": cfg.ssl.alpha, "dropout": cfg.ssl.dropout, "seed": cfg.train.seed,
            "fraction": cfg.split.fraction, "lr": cfg.train.lr, "temperature": cfg.train.temperature,
            "hidden": cfg.model.hidden, "embedding_dim": cfg.model.embedding_dim}


def seed_group_key(cfg: Any, store_key: str) -> str:
    """Runs with the same key differ only by seed: same resolved config (seed and settings that do
    not change the model left out) and the same data (feature-store key: files, schema, split)."""
    import hashlib

    from sslkit.config import dump_config

    d = dump_config(cfg)
    for k in ("name", "base_dir", "cache_dir", "eval"):
        d.pop(k, None)
    for k in ("seed", "device", "log_every", "eval_every", "eval_queries"):
        d["train"].pop(k, None)
    return hashlib.sha256(io.dumps({"config": d, "data": store_key}).encode()).hexdigest()[:16]


CI_COVERS = {
    "queries+seeds": "bootstrap over test queries and training seeds, seed s of one group paired with seed s "
                     "of the other, the interval widened for few seeds: covers test-set and run-to-run "
                     "training variance",
    "queries+seeds (unpaired)": "bootstrap over test queries and, independently per group, its seeds (the "
                                "groups share fewer than 2 seeds): covers test-set and training variance",
    "queries": "bootstrap over test queries only (a single seed on at least one side): it ignores run-to-run "
               "training variance, so an interval that excludes 0 is NOT evidence that the configurations "
               "differ — train more seeds",
}
P_VALUE = ("p_value: one-sided bootstrap p-value for 'better than the baseline' = share of replicates with "
           "relative change <= 0 (near 0: confident gain, near 1: confident loss); two-sided: 2·min(p, 1 − p)")


def seed_groups(results: Sequence[RunEval]) -> list[list[RunEval]]:
    """Runs grouped by `seed_group_key` (groups in order of first appearance, runs by seed)."""
    groups: dict[str, list[RunEval]] = {}
    for r in results:
        groups.setdefault(r.extra.get("seed_group") or r.run, []).append(r)
    return [sorted(g, key=lambda r: r.config["seed"]) for g in groups.values()]


def group_label(runs: Sequence[str]) -> str:
    """One name for a seed group: the runs' common prefix and suffix around their differing parts,
    e.g. runs/ml-cfm-s0, runs/ml-cfm-s1 → runs/ml-cfm-s{0,1}."""
    if len(runs) == 1:
        return runs[0]
    pre = os.path.commonprefix(list(runs))
    suf = os.path.commonprefix([r[len(pre):][::-1] for r in runs])[::-1]
    return pre + "{" + ",".join(r[len(pre):len(r) - len(suf)] for r in runs) + "}" + suf


def _reported(r: RunEval) -> list[str]:
    return [m for m in r.per_query if m.split("@")[0] in ("recall", "map")]


def _group_row(g: list[RunEval]) -> dict[str, Any]:
    return {"group": group_label([r.run for r in g]), "runs": [r.run for r in g],
            "seeds": [r.config["seed"] for r in g], "config": {k: v for k, v in g[0].config.items() if k != "seed"},
            "metrics": {m: dict(zip(("mean", "std"), mean_std([r.metrics[m] for r in g]))) for m in _reported(g[0])}}


def _versus(base: list[RunEval], treat: list[RunEval], n_boot: int) -> dict[str, Any]:
    """The treatment group against the baseline group, per metric, with what the CI resamples."""
    if not np.array_equal(treat[0].queries, base[0].queries):
        raise DataError(f"{treat[0].run} and {base[0].run} were evaluated on different test queries",
                        hint="compare runs of the same schema and split")
    bs, ts = {r.config["seed"]: r for r in base}, {r.config["seed"]: r for r in treat}
    common = sorted(set(bs) & set(ts), key=str)
    row: dict[str, Any] = {"group": group_label([r.run for r in treat]), "runs": [r.run for r in treat]}
    if len(treat) == 1:
        row["run"] = treat[0].run
    stack = lambda runs, m: np.stack([r.per_query[m] for r in runs])  # noqa: E731  (S, Q)
    if len(common) >= 2:
        row.update(resamples="queries+seeds", paired_seeds=common)
        cis = {m: paired_seeds_bootstrap_ci(stack([bs[s] for s in common], m), stack([ts[s] for s in common], m),
                                            n_boot=n_boot) for m in _reported(treat[0])}
    elif len(base) >= 2 and len(treat) >= 2:
        row["resamples"] = "queries+seeds (unpaired)"
        cis = {m: seeds_bootstrap_ci(stack(base, m), stack(treat, m), n_boot=n_boot) for m in _reported(treat[0])}
    else:
        row["resamples"] = "queries"
        cis = {m: paired_bootstrap_ci(stack(base, m).mean(0), stack(treat, m).mean(0), n_boot=n_boot)
               for m in _reported(treat[0])}
    return row | cis


def compare(results: list[RunEval], baseline: RunEval | None, *, n_boot: int = 1000) -> dict[str, Any]:
    """Seed groups (runs identical but for the seed: mean ± std) and, with a baseline, every other
    group against the baseline's group: relative change with a bootstrap CI and what it resamples."""
    groups = seed_groups(results)
    out: dict[str, Any] = {"groups": [_group_row(g) for g in groups]}
    if baseline is not None:
        base = next(g for g in groups if any(r is baseline for r in g))
        out["baseline"] = baseline.run
        out["baseline_group"] = group_label([r.run for r in base])
        out["vs_baseline"] = [_versus(base, g, n_boot) for g in groups if g is not base]
        out["ci_covers"] = {k: CI_COVERS[k] for k in dict.fromkeys(r["resamples"] for r in out["vs_baseline"])}
        out["p_value"] = P_VALUE
    return out
