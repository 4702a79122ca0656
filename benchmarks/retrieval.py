"""Retrieval benchmark: HNSW (hnswlib) vs sslkit's exact blocked top-k on a clustered corpus; prints JSON.

The corpus is ``--items`` L2-normalized float32 vectors drawn around 1000 gaussian cluster centres
(like trained embeddings: clustered, unit norm); queries are corpus points plus noise. Measured:
HNSW build time, HNSW query throughput and recall@k against the exact top-k, exact_topk
throughput on the same queries, and the extrapolated time of an eval with 100k queries over the
corpus for both backends (HNSW: build + queries). One JSON object goes to stdout, logs to stderr.

    python benchmarks/retrieval.py [--items 1000000] [--dim 64] [--queries 10000] [--k 50] [--M 16]
        [--ef-construction 100] [--ef 100] [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sslkit import runtime  # noqa: E402
from sslkit.retrieval.index import HnswIndex, ann_recall, exact_topk  # noqa: E402

EVAL_QUERIES = 100_000


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[retrieval] {msg}", file=sys.stderr, flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 ``[n, d]``."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def corpus(items: int, dim: int, queries: int, seed: int, clusters: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors ``[items, dim]`` and queries ``[queries, dim]`` near corpus points.

    Cluster sizes are Zipf-like (a few big clusters, a long tail), spreads vary per cluster.
    """
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((clusters, dim)))
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    label = rng.choice(clusters, size=items, p=weights / weights.sum())
    spread = rng.uniform(0.15, 0.4, clusters).astype(np.float32) / np.sqrt(dim)
    x = np.empty((items, dim), np.float32)
    for start in range(0, items, 200_000):  # bounded temporaries
        lab = label[start:start + 200_000]
        noise = rng.standard_normal((len(lab), dim), dtype=np.float32) * spread[lab, None]
        x[start:start + len(lab)] = unit(centers[lab] + noise)
    near = x[rng.integers(0, items, queries)]
    q = unit(near + rng.standard_normal((queries, dim), dtype=np.float32) * (0.1 / np.sqrt(dim)))
    return x, q


def bench_hnsw(x: np.ndarray, q: np.ndarray, a: argparse.Namespace) -> tuple[dict[str, Any], np.ndarray]:
    """Build + query timings of HnswIndex; returns (stats, approx top-k int64 [Q, k])."""
    log(f"HNSW build: {len(x):,} × {x.shape[1]}, M={a.M}, ef_construction={a.ef_construction}, {a.threads} threads")
    t0 = time.perf_counter()
    index = HnswIndex.build(x, M=a.M, ef_construction=a.ef_construction, ef=a.ef, seed=a.seed, num_threads=a.threads)
    build = time.perf_counter() - t0
    log(f"HNSW build {build:.1f} s; querying {len(q):,}")
    t0 = time.perf_counter()
    _, approx = index.query(q, a.k, ef=a.ef, num_threads=a.threads)
    query = time.perf_counter() - t0
    return {"build_s": round(build, 2), "build_items_per_s": round(len(x) / build),
            "query_s": round(query, 3), "queries_per_s": round(len(q) / query, 1)}, approx


def bench_exact(x: np.ndarray, q: np.ndarray, a: argparse.Namespace) -> tuple[dict[str, Any], np.ndarray]:
    """exact_topk timing (torch CPU, ``a.threads`` threads); returns (stats, exact top-k [Q, k])."""
    items, queries = torch.from_numpy(x), torch.from_numpy(q)
    exact_topk(queries[:8], items[:1000], a.k)  # warm-up
    log(f"exact_topk: {len(q):,} queries, query_block={a.query_block}, item_block={a.item_block}")
    t0 = time.perf_counter()
    _, top = exact_topk(queries, items, a.k, query_block=a.query_block, item_block=a.item_block)
    secs = time.perf_counter() - t0
    return {"query_s": round(secs, 2), "queries_per_s": round(len(q) / secs, 1)}, top.numpy()


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=100)
    p.add_argument("--ef", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--query-block", type=int, default=1024, help="exact_topk query_block")
    p.add_argument("--item-block", type=int, default=262_144, help="exact_topk item_block")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON report."""
    a = parse(argv)
    machine = runtime.machine()  # CPU, bf16 flags, load at the start
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    x, q = corpus(a.items, a.dim, a.queries, a.seed)
    log(f"corpus {x.shape} + queries {q.shape} in {time.perf_counter() - t0:.1f} s")
    hnsw, approx = bench_hnsw(x, q, a)
    exact, top = bench_exact(x, q, a)
    hnsw["recall_at_k"] = round(ann_recall(approx, top), 4)
    eval_hnsw = hnsw["build_s"] + EVAL_QUERIES / hnsw["queries_per_s"]
    eval_exact = EVAL_QUERIES / exact["queries_per_s"]
    report = {
        "benchmark": "retrieval", "items": a.items, "dim": a.dim, "queries": a.queries, "k": a.k,
        "clusters": 1000, "threads": a.threads, "seed": a.seed,
        "hnsw_params": {"M": a.M, "ef_construction": a.ef_construction, "ef": a.ef},
        "exact_params": {"query_block": a.query_block, "item_block": a.item_block},
        "hnsw": hnsw, "exact": exact,
        "eval_100k_queries_s": {"hnsw_build_plus_query": round(eval_hnsw, 1), "hnsw_query_only":
                                round(EVAL_QUERIES / hnsw["queries_per_s"], 1), "exact": round(eval_exact, 1)},
        "machine": machine | {"loadavg_end": runtime.machine()["loadavg"], "python": platform.python_version(),
                              "torch": torch.__version__, "numpy": np.__version__},
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
