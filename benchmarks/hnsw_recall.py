"""HNSW recall vs time on a trained run's real vectors; prints one JSON object.

Why does hnswlib find only ~0.88 of the exact top-50 at ef 400 on 1M learned vectors when it finds
0.99 at 50k? This measures, on the vectors `sslkit eval --index hnsw` indexes:

* the geometry: how concentrated the unit item vectors are (norm of their mean; mean cosine of
  random pairs; participation ratio = effective dimension), how far the query vectors (the query
  tower's) sit from the items (cosine of the two means; a query's exact top-1 and top-50 scores), and
  how close the 50th and 51st exact scores are (near-ties make a top-50 hard to hit exactly);
* ANN recall@K against exact top-K, for the run's test queries and, as a control, for item vectors
  used as queries (in-distribution), per graph (M × ef_construction, build time) and search breadth
  ef (queries/s on all cores, one query batch, hnswlib's own threads).

    python benchmarks/hnsw_recall.py RUN [--queries 2000] [--M 16 32] [--ef-construction 100]
        [--ef 100 200 400 800 1600] [--k 50] [--center]

`--hubs N…` also builds centred graphs whose queries also score, exactly, the items found in the
exact top K of N training queries (`eval.hnsw.hub_queries`, the default); the graph's build and the
hubs' exact search are timed apart, and the same graph is also searched without the hubs
(`search_graph_only`: the centred graph alone, without building it twice). `--query-nodes N…` also builds centred graphs holding N training queries' vectors as deleted bridge
nodes (`eval.hnsw.query_nodes`); `--normalize` a centred graph of unit vectors searched by angle
whose ef candidates are ranked by exact inner product (`eval.hnsw.normalize`). Every search
rescores its results exactly (as `recommend` does); build and search report wall and CPU seconds
(the machine may be shared: `machine.loadavg`), and the saved index's size.

RUN: a trained run (e.g. from `benchmarks/eval_e2e.py --work DIR`: DIR/run-...). `--center` also
indexes item vectors minus their mean (`HnswIndex.build(center=True)`, `eval.hnsw.center`): a
query's inner products all shift by the same q·mean, so the exact ranking is unchanged, while the
cone the vectors sit in is opened up. `--xbox` also lifts the centred vectors onto a sphere
(one more coordinate; the same inner products). `--no-raw` skips the uncentred graphs.

`--cache FILE.npz` keeps what comes before the graphs (the embedded items, the sampled test and
training queries, their exact top K) and reuses it when it exists, for the same --queries, --k and
training-query count: embed once (`--prepare` stops there), then time only the graphs, e.g. with
other jobs paused. `--index-dir DIR` saves each graph there and, when it is already there, loads
it instead of building it (no build time is then reported); `--repeat N` times each search N times
and reports the median queries/s (a 2,000-query search takes well under a second).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[hnsw_recall] {msg}", file=sys.stderr, flush=True)


def geometry(items: np.ndarray, queries: np.ndarray, exact_scores: np.ndarray, rng: np.random.Generator) -> dict:
    """Concentration of the item vectors, the query/item gap, and the near-tie margin at K."""
    sample = items[rng.choice(len(items), size=min(len(items), 20_000), replace=False)]
    a, b = sample[: len(sample) // 2], sample[len(sample) // 2: 2 * (len(sample) // 2)]
    mean_i, mean_q = items.mean(0), queries.mean(0)
    cov = np.cov(sample.T)
    ev = np.clip(np.linalg.eigvalsh(cov), 0, None)
    k = exact_scores.shape[1] - 1  # exact_scores holds K + 1 columns
    return {
        "item_norm_mean": round(float(np.linalg.norm(items, axis=1).mean()), 4),
        "item_mean_vector_norm": round(float(np.linalg.norm(mean_i)), 4),  # 0: spread on the sphere; 1: all equal
        "item_pair_cosine_mean": round(float((a * b).sum(1).mean()), 4),
        "item_participation_ratio": round(float(ev.sum() ** 2 / (ev ** 2).sum()), 2),  # effective dimension
        "dim": int(items.shape[1]),
        "query_mean_vector_norm": round(float(np.linalg.norm(mean_q)), 4),
        "query_item_mean_cosine": round(float(mean_q @ mean_i / (np.linalg.norm(mean_q) * np.linalg.norm(mean_i))), 4),
        "exact_top1_score_median": round(float(np.median(exact_scores[:, 0])), 4),
        f"exact_top{k}_score_median": round(float(np.median(exact_scores[:, k - 1])), 4),
        f"score_gap_{k}_{k + 1}_median": float(f"{np.median(exact_scores[:, k - 1] - exact_scores[:, k]):.3g}"),
        f"score_spread_1_{k}_median": round(float(np.median(exact_scores[:, 0] - exact_scores[:, k - 1])), 4),
    }


def steal_s() -> float | None:
    """CPU time the hypervisor took from this VM since boot (/proc/stat steal), seconds; None if unknown."""
    try:
        return int(Path("/proc/stat").read_text().split()[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--queries", type=int, default=2000, help="test queries sampled for recall (fixed seed)")
    ap.add_argument("--M", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--ef-construction", type=int, nargs="+", default=[100])
    ap.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--center", action="store_true", help="also index mean-centred item vectors (same exact ranking)")
    ap.add_argument("--no-raw", action="store_true", help="skip the uncentred graphs (with --center and/or --xbox)")
    ap.add_argument("--xbox", action="store_true", help="also centred vectors lifted onto a sphere: v' = [v - m, "
                    "sqrt(R^2 - |v - m|^2)], queries [q, 0] (the same inner products; Bachrach et al. 2014)")
    ap.add_argument("--query-nodes", type=int, nargs="*", default=[], help="also centred graphs holding this many "
                    "training queries as deleted bridge nodes (eval.hnsw.query_nodes), one graph per count")
    ap.add_argument("--query-node-scale", type=float, default=1.0, help="scale of the bridge vectors (1: as they are)")
    ap.add_argument("--hubs", type=int, nargs="*", default=[], help="also centred graphs whose queries score "
                    "exactly the items in the exact top K of this many training queries (eval.hnsw.hub_queries), "
                    "one graph per count, also searched without them (search_graph_only); the time to find them "
                    "is reported apart (hubs_s, hubs_cpu_s)")
    ap.add_argument("--cache", type=Path, help="npz of the embedded vectors and exact top K: written if absent, "
                    "else read (the run is then not loaded)")
    ap.add_argument("--prepare", action="store_true", help="stop after writing --cache (no graphs)")
    ap.add_argument("--index-dir", type=Path, help="save each graph here; load it instead of building when present")
    ap.add_argument("--repeat", type=int, default=1, help="time each search this many times; median queries/s")
    ap.add_argument("--normalize", action="store_true", help="also a centred graph of unit-length vectors searched "
                    "by angle, its ef candidates ranked by exact inner product (eval.hnsw.normalize)")
    args = ap.parse_args()
    import tempfile

    from sslkit import runtime

    machine = runtime.machine()  # CPU, bf16 flags, load at the start
    steal0 = steal_s()

    import torch

    from sslkit.retrieval.embed import embed_table, load_run
    from sslkit.retrieval.index import HnswIndex, ann_recall, exact_topk
    from sslkit.data.profile import group_pairs

    n_train = max(args.query_nodes + args.hubs, default=0)
    cache_key = np.array([args.queries, args.k, n_train])
    if args.cache is not None and args.cache.exists():
        z = np.load(args.cache)
        if not np.array_equal(z["key"], cache_key):
            sys.exit(f"{args.cache}: made for --queries/--k/training queries {z['key'].tolist()}, "
                     f"not {cache_key.tolist()}")
        items, queries, q, ctrl, ex_scores, ex_idx, ctrl_idx, train_q = (
            z[n] for n in ("items", "queries", "q", "ctrl", "ex_scores", "ex_idx", "ctrl_idx", "train_q"))
        item_to_item, exact_qps, geo = bool(z["item_to_item"]), float(z["exact_qps"]), json.loads(str(z["geometry"]))
        self_rows = q.astype(np.int64) if item_to_item else None
        train_self = z["train_self"] if item_to_item else None
        log(f"read {len(items):,} items, {len(q):,} test queries and their exact top {args.k} from {args.cache}")
    else:
        run = load_run(args.run)
        store = run.store(log)
        item_to_item = bool(store.item_to_item)
        t0 = time.perf_counter()
        items = embed_table(run, store.items, queries=False).astype(np.float32)
        q_all, _, _ = group_pairs(np.asarray(store.splits["test"]))
        rng = np.random.default_rng(0)
        q = np.sort(rng.choice(q_all, size=min(args.queries, len(q_all)), replace=False))
        table = store.items if item_to_item else store.queries
        queries = embed_table(run, table.take(q), queries=True).astype(np.float32)
        log(f"embedded {len(items):,} items and {len(q):,} test queries in {time.perf_counter() - t0:.1f} s")
        self_rows = q.astype(np.int64) if item_to_item else None
        ctrl = rng.choice(len(items), size=len(q), replace=False).astype(np.int64)  # items as queries: the control

        def exact(qv: np.ndarray, ex: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            s, i = exact_topk(torch.from_numpy(qv), torch.from_numpy(items), args.k + 1,
                              exclude_self=None if ex is None else torch.from_numpy(ex))
            return s.numpy(), i.numpy()

        t0 = time.perf_counter()
        ex_scores, ex_idx = exact(queries, self_rows)
        _, ctrl_idx = exact(items[ctrl], ctrl)
        exact_qps = 2 * len(q) / (time.perf_counter() - t0)
        geo = geometry(items, queries, ex_scores, rng)
        train_q, train_self = np.zeros((0, items.shape[1]), np.float32), None
        if n_train:
            from sslkit.data.store import training_split

            tq = group_pairs(np.asarray(training_split(store)[0]))[0]
            tq = np.random.default_rng(0).permutation(tq)[:n_train]
            train_q = embed_table(run, table.take(tq), queries=True).astype(np.float32)
            train_self = tq.astype(np.int64) if item_to_item else None
        if args.cache is not None:
            np.savez(args.cache, key=cache_key, items=items, queries=queries, q=q, ctrl=ctrl, ex_scores=ex_scores,
                     ex_idx=ex_idx, ctrl_idx=ctrl_idx, train_q=train_q,
                     train_self=np.zeros(0, np.int64) if train_self is None else train_self,
                     item_to_item=item_to_item, exact_qps=exact_qps, geometry=json.dumps(geo))
            log(f"wrote {args.cache}")
    if args.prepare:
        return
    result: dict = {"run": str(args.run), "items": len(items), "queries": len(q), "k": args.k,
                    "item_to_item": item_to_item, "threads": torch.get_num_threads(),
                    "exact_queries_per_s": round(exact_qps, 1),
                    "geometry": geo, "graphs": []}
    log(json.dumps(result["geometry"]))
    variants = ([] if args.no_raw else ["raw"]) + (["centered"] if args.center else []) \
        + (["xbox"] if args.xbox else []) + [f"centered+{n}q" for n in args.query_nodes] \
        + (["centered+normalized"] if args.normalize else []) + [f"centered+hubs{n}" for n in args.hubs]
    if args.xbox:
        c = items - items.mean(0, keepdims=True)
        norms = np.linalg.norm(c, axis=1)
        lifted = np.hstack([c, np.sqrt(np.maximum(norms.max() ** 2 - norms ** 2, 0))[:, None]]).astype(np.float32)
    pad = lambda v: np.hstack([v, np.zeros((len(v), 1), np.float32)])  # noqa: E731
    for name in variants:
        for m in args.M:
            for efc in args.ef_construction:
                t0, c0 = time.perf_counter(), time.process_time()
                saved = None if args.index_dir is None else args.index_dir / f"{name}-M{m}-efc{efc}.hnsw"
                loaded = saved is not None and saved.exists()
                if loaded:
                    index = HnswIndex.load(saved, vectors=lifted if name == "xbox" else items)
                elif name == "xbox":
                    index = HnswIndex.build(lifted, M=m, ef_construction=efc)
                elif "+" in name and name.endswith("q"):
                    nq = int(name.split("+")[1][:-1])
                    index = HnswIndex.build(items, M=m, ef_construction=efc, center=True,
                                            query_nodes=train_q[:nq] * args.query_node_scale)
                elif "+hubs" in name:
                    nh = int(name.split("+hubs")[1])
                    _, top = exact_topk(torch.from_numpy(train_q[:nh]), torch.from_numpy(items), args.k,
                                        exclude_self=None if train_self is None else torch.from_numpy(train_self[:nh]))
                    hubs_s, hubs_cpu = time.perf_counter() - t0, time.process_time() - c0
                    t1, c1 = time.perf_counter(), time.process_time()
                    index = HnswIndex.build(items, M=m, ef_construction=efc, center=True, hubs=top.numpy())
                    graph_s, graph_cpu = time.perf_counter() - t1, time.process_time() - c1
                else:
                    index = HnswIndex.build(items, M=m, ef_construction=efc, center=name != "raw",
                                            normalize=name.endswith("normalized"))
                graph = {"vectors": name, "M": m, "ef_construction": efc, "query_node_scale": args.query_node_scale,
                         "build_s": round(time.perf_counter() - t0, 1), "build_cpu_s": round(time.process_time() - c0, 1),
                         "search": []}
                if "+hubs" in name:
                    graph |= {"hubs": len(index.hubs), "search_graph_only": []}
                if loaded:
                    graph |= {"loaded_from": str(saved), "build_s": None, "build_cpu_s": None}
                elif "+hubs" in name:
                    graph |= {"hubs_s": round(hubs_s, 1), "hubs_cpu_s": round(hubs_cpu, 1),
                              "graph_build_s": round(graph_s, 1), "graph_build_cpu_s": round(graph_cpu, 1)}
                with tempfile.TemporaryDirectory() as tmp:
                    if not loaded:
                        index.save(saved or Path(tmp) / "i.hnsw")
                    graph["index_mb"] = round(os.path.getsize(saved or Path(tmp) / "i.hnsw") / 2**20, 1)
                hubs = index.hubs
                for key, index.hubs in [("search", hubs)] + ([("search_graph_only", hubs[:0])] if len(hubs) else []):
                    for ef in args.ef:
                        lift = pad if name == "xbox" else (lambda v: v)
                        times = []
                        for _ in range(args.repeat):
                            t0, c0 = time.perf_counter(), time.process_time()
                            _, got = index.query(lift(queries), args.k, ef=ef, exclude_self=self_rows)
                            times.append((time.perf_counter() - t0, time.process_time() - c0))
                        dt, dc = (float(np.median(x)) for x in zip(*times))
                        _, got_ctrl = index.query(lift(items[ctrl]), args.k, ef=ef, exclude_self=ctrl)
                        graph[key].append({
                            "ef": ef, "queries_per_s": round(len(q) / dt, 1),
                            "queries_per_cpu_s": round(len(q) / dc, 1),
                            **({"queries_per_s_each": [round(len(q) / t, 1) for t, _ in times]} if args.repeat > 1
                               else {}),
                            f"recall@{args.k}": round(ann_recall(got, ex_idx[:, : args.k]), 4),
                            f"recall@{args.k}_items_as_queries": round(ann_recall(got_ctrl, ctrl_idx[:, : args.k]), 4),
                            "recall@10": round(ann_recall(got[:, :10], ex_idx[:, :10]), 4)})
                        log(f"{name}{' (graph only)' if key != 'search' else ''} M={m} efc={efc} ef={ef}: "
                            f"{graph[key][-1]}")
                result["graphs"].append(graph)
                del index
    steal1 = steal_s()
    result["machine"] = machine | {"loadavg_end": runtime.machine()["loadavg"],
                                   "steal_s": None if steal0 is None or steal1 is None else round(steal1 - steal0, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
