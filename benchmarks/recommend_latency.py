"""`recommend` serving latency on a trained run; prints one JSON object.

Measures, after the run's index is loaded (or built) once:

* single queries, one at a time as a stream of stdin lines is answered: query tower on the line's
  query row + index search + exact rescoring (`sslkit.retrieval.recommend._answer`), p50 / p99 / mean
  milliseconds per query over `--single` queries;
* batches of `--batch` queries answered together (one embedding batch, one index call): ms per
  batch and per query, queries/s;
* the whole command as a user runs it (`sslkit -q recommend RUN < ids`) for 1 line and for
  `--batch` lines: process start, run and index load, answers (wall seconds);

for the run's HNSW index and, with `--exact`, for `--index exact`. Test queries (a fixed sample)
are the input; the catalog's size is the run's. `--ef N…` times the index at these search breadths
(mode `hnsw_efN`) instead of the one it was built with; the whole-command timings always use the
run's own settings. `--warm` first answers one untimed batch, as a server that has been running
a while would have (a freshly loaded 1M-item graph is paged in by its first searches).

    python benchmarks/recommend_latency.py RUN [--single 500] [--batch 1000] [--k 50] [--ef N …] [--exact]
        [--warm] [--no-cli]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[recommend_latency] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--single", type=int, default=500, help="queries answered one at a time")
    ap.add_argument("--batch", type=int, default=1000, help="queries per batch")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--ef", type=int, nargs="+", help="HNSW search breadths to time (default: the index's)")
    ap.add_argument("--exact", action="store_true", help="also --index exact")
    ap.add_argument("--warm", action="store_true", help="answer one untimed batch first")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-command timings")
    args = ap.parse_args()

    from sslkit import runtime
    from sslkit.data.profile import group_pairs
    from sslkit.retrieval.embed import embed_table, load_run
    from sslkit.retrieval.recommend import _answer, load_index

    run = load_run(args.run)
    store = run.store(log)
    table = store.items if store.item_to_item else store.queries
    q_all = group_pairs(np.asarray(store.splits["test"]))[0]
    q = np.random.default_rng(0).permutation(q_all)[:max(args.single, args.batch)]
    ids = np.asarray(table.ids)
    machine = runtime.machine()  # CPU, bf16 flags, load at the start
    result: dict = {"run": str(args.run), "items": int(store.items.rows), "k": args.k, "warm": args.warm,
                    "modes": {}}
    loaded: dict = {}
    for kind, ef in [("hnsw", ef) for ef in args.ef or [None]] + ([("exact", None)] if args.exact else []):
        t0 = time.perf_counter()
        if kind not in loaded:
            loaded[kind] = load_index(run, log, kind)
        cat_ids, vectors, index = loaded[kind]
        load_s = time.perf_counter() - t0
        built_ef = None if index is None else int(index.meta["ef"])
        if index is not None and ef is not None:
            index.meta["ef"] = ef  # searches read it (hnswlib's own setting is restored to it after each)
        sink: list[str] = []
        if args.warm:
            v = embed_table(run, table.take(q[:args.batch]), queries=True)
            _answer(run, {i: (str(ids[r]), v[i], int(r)) for i, r in enumerate(q[:args.batch])}, cat_ids, vectors,
                    index, args.k, sink.append)
        lat = []
        c0 = time.process_time()
        for r in q[:args.single]:
            t = time.perf_counter()
            v = embed_table(run, table.take(np.array([r])), queries=True)
            _answer(run, {1: (str(ids[r]), v[0], int(r))}, cat_ids, vectors, index, args.k, sink.append)
            lat.append(time.perf_counter() - t)
        single_cpu = time.process_time() - c0
        lat_ms = np.array(lat) * 1e3
        rows = q[:args.batch]
        t, c0 = time.perf_counter(), time.process_time()
        v = embed_table(run, table.take(rows), queries=True)
        _answer(run, {i: (str(ids[r]), v[i], int(r)) for i, r in enumerate(rows)}, cat_ids, vectors, index, args.k,
                sink.append)
        batch_s, batch_cpu = time.perf_counter() - t, time.process_time() - c0
        mode = {"index_load_or_build_s": round(load_s, 1),
                "single": {"queries": len(lat), "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
                           "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
                           "mean_ms": round(float(lat_ms.mean()), 2),
                           "queries_per_cpu_s": round(len(lat) / max(single_cpu, 1e-9), 1)},
                "batch": {"queries": len(rows), "ms_per_batch": round(batch_s * 1e3, 1),
                          "ms_per_query": round(batch_s * 1e3 / len(rows), 3),
                          "queries_per_s": round(len(rows) / batch_s, 1),
                          "queries_per_cpu_s": round(len(rows) / max(batch_cpu, 1e-9), 1)}}
        if kind == "hnsw" and index is not None:
            keys = ("M", "ef_construction", "ef", "query_nodes", "recall", "build_seconds")
            mode["index"] = {k: index.meta.get(k) for k in keys} | {"hubs": len(index.hubs), "built_with_ef": built_ef}
            index.meta["ef"] = built_ef
        if not args.no_cli and (ef is None or ef == args.ef[0]):  # the run's own settings: once per kind
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            for n in (1, args.batch):
                text = "".join(f"{ids[r]}\n" for r in q[:n])
                t = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "sslkit", "-q", "recommend", str(args.run), "--k",
                                       str(args.k), "--index", kind], input=text, capture_output=True, text=True,
                                      env=env)
                if done.returncode != 0:
                    sys.exit(f"recommend failed: {done.stderr.strip()[-500:]}")
                mode[f"cli_{n}_lines_wall_s"] = round(time.perf_counter() - t, 2)
            if built_ef is not None:
                mode["cli_ef"] = built_ef  # the index as the run's settings built it
        name = kind if ef is None else f"{kind}_ef{ef}"
        result["modes"][name] = mode
        log(f"{name}: {json.dumps(mode)}")
    result["machine"] = machine | {"loadavg_end": runtime.machine()["loadavg"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
