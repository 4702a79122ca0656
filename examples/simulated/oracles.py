#!/usr/bin/env python
"""Reference rankers on a SIMULATED control (see controls.py), scored like `sslkit eval`, and the same
scoring for trained runs, with the novel-pair slice.

    python examples/simulated/oracles.py examples/simulated/data/positive/schema.yaml        # JSON on stdout
    python examples/simulated/oracles.py SCHEMA --split validation --runs runs/a runs/b     # models too

Rankers (every one on the whole catalog, the query item excluded, `eval.exclude_seen` as configured —
the exclusions of `sslkit eval`):
  bayes      the generator's own P(j | q) ∝ pop_j · exp(kappa e_q·e_j): the Bayes-optimal ranking;
  content    features only (no id, no counts): ê = a ridge fit from one-hot features (item id left out)
             to the engagement latent e, p̂ = the same fit to log popularity, both cross-fitted (each
             item's values from a fit on the other 80% of the catalog), and the score kappa ê_q·ê_j + p̂_j:
             what a linear content model fitted on the truth knows about an item it has not seen;
  toppop     the most frequent training items (sslkit's TopPopular).
Metrics: Recall@K and MAP@K overall, per slice of the ground-truth item (head = top 10% of training
items, tail, cold = never in training) and on *novel* pairs (neither (q, j) nor (j, q) is a training
pair). Also reported: the share of scored pairs that repeat a training pair, the split sizes, and the
fit of the content model (R² of ê for e).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

KS = (10, 50)


def _load_controls() -> Any:
    spec = importlib.util.spec_from_file_location("sslkit_simulated_controls", Path(__file__).with_name("controls.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def truth_rows(store: Any, truth: dict[str, np.ndarray]) -> np.ndarray:
    """Generator row of each store item row."""
    pos = {str(v): i for i, v in enumerate(truth["ids"])}
    return np.array([pos[str(v)] for v in store.items.ids])


def topk_scores(scores_fn: Any, q: np.ndarray, k: int, seen: tuple[np.ndarray, np.ndarray] | None,
                item_to_item: bool, block: int = 1024) -> np.ndarray:
    """Top-k item rows (Q, k) by a score function of a block of query rows, with eval's exclusions."""
    out = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), block):
        qs = q[s:s + block]
        sc = np.array(scores_fn(qs), np.float64)  # (b, N)
        if item_to_item:
            sc[np.arange(len(qs)), qs] = -np.inf
        if seen is not None:
            ptr, items = seen
            for r in range(len(qs)):
                sc[r, items[ptr[s + r]:ptr[s + r + 1]]] = -np.inf
        part = np.argpartition(-sc, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1, kind="stable")
        out[s:s + len(qs)] = np.take_along_axis(part, order, 1)
    return out


class Scorer:
    """Everything `sslkit eval` fixes for a split: queries, relevant items, slices, exclusions."""

    def __init__(self, schema: str | Path, split: str = "test") -> None:
        from sslkit.config import load_config
        from sslkit.data.profile import group_pairs, head_items, item_counts, novel_pairs, seen_items, slice_of_pairs
        from sslkit.data.store import load_or_build, training_split

        self.cfg = load_config(schema)
        self.store = load_or_build(self.cfg)
        train, validation = training_split(self.store)
        scored = np.asarray(self.store.splits["test"]) if split == "test" else validation
        self.split, self.train = split, train
        self.q, self.indptr, self.rel = group_pairs(scored)
        n = self.store.items.rows
        self.counts = item_counts(train, n)
        self.labels = slice_of_pairs(self.rel, self.counts, head_items(self.counts, self.cfg.eval.head_fraction))
        self.seen = seen_items(train, self.q) if self.cfg.eval.exclude_seen else None
        # a pair repeats a training pair when (q, j) or (j, q) was trained on; the rest are the novel slice
        self.repeat = ~novel_pairs(np.repeat(self.q, np.diff(self.indptr)), self.rel, train, both_directions=True)

    def score(self, top: np.ndarray) -> dict[str, Any]:
        """Recall/MAP@K overall, per slice and on novel pairs, for top-k rows (Q, k)."""
        from sslkit.evaluation.evaluate import slice_metrics, slice_per_query
        from sslkit.evaluation.metrics import compute_metrics, summarize

        keep = lambda d: {m: round(v, 5) for m, v in d.items() if m.split("@")[0] in ("recall", "map")}  # noqa: E731
        out = {"overall": keep(summarize(compute_metrics(top, self.indptr, self.rel, KS)))}
        novel = ~self.repeat  # the same slices `sslkit eval` reports, novel pairs included
        for name, row in slice_metrics(slice_per_query(top, self.q, self.indptr, self.rel, self.labels, KS, novel),
                                       self.labels, novel).items():
            out[name] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
        return out

    def describe(self) -> dict[str, Any]:
        return {"split": self.split, "queries": int(len(self.q)), "pairs": int(len(self.rel)),
                "train_pairs": int(len(self.train)), "items": int(self.store.items.rows),
                "exclude_seen": bool(self.cfg.eval.exclude_seen),
                "repeat_share": round(float(self.repeat.mean()), 4),
                "slice_pairs": {s: int((self.labels == i).sum()) for i, s in enumerate(("head", "tail", "cold"))},
                "items_in_training": int((self.counts > 0).sum())}


def oracles(sc: Scorer, truth: dict[str, np.ndarray]) -> dict[str, Any]:
    """Bayes-optimal, content-only and TopPopular rankers scored on the split."""
    from sslkit.data.profile import toppop_topk

    rows = truth_rows(sc.store, truth)
    e, log_pop, kappa = truth["e"][rows], truth["log_pop"][rows], float(truth["kappa"])
    k = max(KS)
    import polars as pl

    controls = _load_controls()
    items = pl.read_parquet(sc.cfg.resolve(sc.cfg.items.path))
    x = controls.feature_matrix(items)[rows]  # generator rows → store rows
    e_hat, r2_e = controls.crossfit_ridge(x, e)
    p_hat, r2_p = controls.crossfit_ridge(x, log_pop)
    ii = sc.store.item_to_item
    tops = {
        "bayes": topk_scores(lambda qs: kappa * e[qs] @ e.T + log_pop[None], sc.q, k, sc.seen, ii),
        "content": topk_scores(lambda qs: kappa * e_hat[qs] @ e_hat.T + p_hat[:, 0][None], sc.q, k, sc.seen, ii),
        "toppop": toppop_topk(sc.counts, sc.q, k, ii, exclude=sc.seen),
    }
    return {"rankers": {name: sc.score(top) for name, top in tops.items()},
            "content_fit": {"r2_latent": round(r2_e, 4), "r2_log_popularity": round(r2_p, 4)}}


def run_rows(sc: Scorer, runs: Sequence[str]) -> dict[str, Any]:
    """Trained runs scored by the same code (exact search, the run's own embeddings)."""
    from sslkit.evaluation.evaluate import retrieve
    from sslkit.retrieval.embed import embed_table, load_run

    out = {}
    for r in runs:
        run = load_run(r)
        items = embed_table(run, sc.store.items, queries=False)
        queries = embed_table(run, sc.store.items.take(sc.q), queries=True)
        top = retrieve(items, queries, max(KS), index="exact", exclude_self=sc.q if sc.store.item_to_item else None,
                       exclude=sc.seen, batch_size=4096)
        out[r] = sc.score(top)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("schema", type=Path)
    ap.add_argument("--split", choices=("test", "validation"), default="test")
    ap.add_argument("--runs", nargs="*", default=[])
    a = ap.parse_args(argv)
    truth = dict(np.load(a.schema.parent / "truth.npz"))
    sc = Scorer(a.schema, a.split)
    out = {"data": sc.describe(), **oracles(sc, truth)}
    if a.runs:
        out["runs"] = run_rows(sc, a.runs)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
