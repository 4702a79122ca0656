"""End-to-end `sslkit eval` on a 1M-item catalog with ~100k test queries; prints one JSON object.

Generates a synthetic item-to-item dataset (wikipedia features: item_id, category, tags, title)
with `--items` items, trains a run for `--steps` steps (enough for the vectors to spread out: after
5 steps they are nearly identical, and the ANN recall against exact top-K measures ties, not the
index), then times the `sslkit eval RUN --index hnsw` command as a user runs it — process start,
feature store load, catalog embedding, HNSW build, retrieval, ANN recall on a sample, metrics —
and reads the phase timings eval.json records. Target on a 2-core CPU: <= 180 s.

    python benchmarks/eval_e2e.py [--items 1000000] [--pairs 2000000] [--test-fraction 0.27]
        [--steps 300] [--ef-construction 100] [--ef 100] [--exact] [--train-only] [--work /tmp/sslkit-eval-e2e]

The defaults give about 100k distinct test queries (the generator's 2M pairs have 241k distinct
query items; a random 27% of the pairs touches about 100k of them). `--train-only` stops after
generating and training (the run for `hnsw_recall.py` / `recommend_latency.py`) and prints its path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslkit import runtime  # noqa: E402


def log(msg: str) -> None:
    print(f"[eval_e2e] {msg}", file=sys.stderr, flush=True)


def sslkit(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sslkit", "-q", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sslkit {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - t0, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=2_000_000)
    ap.add_argument("--test-fraction", type=float, default=0.27)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", type=int, default=100)
    ap.add_argument("--exact", action="store_true", help="also time --index exact (slow: ~4 ms per query)")
    ap.add_argument("--train-only", action="store_true", help="generate and train only: no eval")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sslkit-eval-e2e"))
    args = ap.parse_args()
    machine = runtime.machine()  # CPU, bf16 flags, load at the start

    data = args.work / f"data-{args.items}-{args.pairs}"
    if not (data / "schema.yaml").exists():
        spec = importlib.util.spec_from_file_location("gen", ROOT / "examples/synthetic/generate.py")
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)  # type: ignore[union-attr]
        t0 = time.perf_counter()
        gen.generate(data, preset="wikipedia", items=args.items, pairs=args.pairs, users=0, fmt="parquet")
        log(f"generated {args.items:,} items / {args.pairs:,} pairs in {time.perf_counter() - t0:.1f} s")
    run = args.work / f"run-{args.items}-t{args.test_fraction}-s{args.steps}-ef{args.ef_construction}-{args.ef}"
    sets = [f"split.test_fraction={args.test_fraction}", f"eval.hnsw.ef_construction={args.ef_construction}",
            f"eval.hnsw.ef={args.ef}", "train.eval_queries=100"]
    train_s, _ = sslkit("train", str(data / "schema.yaml"), "--steps", str(args.steps), "--out", str(run), "--overwrite",
                        *[x for s in sets for x in ("--set", s)])
    log(f"trained {args.steps} steps (store build included) in {train_s:.1f} s")
    if args.train_only:
        print(json.dumps({"items": args.items, "train_steps": args.steps, "run": str(run),
                          "train_wall_s": round(train_s, 1),
                          "machine": machine | {"loadavg_end": runtime.machine()["loadavg"]}}))
        return
    eval_s, out = sslkit("eval", str(run), "--index", "hnsw", "--json")
    r = json.loads(out)["runs"][0]
    result = {
        "items": args.items, "train_steps": args.steps, "test_queries": r["queries"], "test_pairs": r["test_pairs"],
        "hnsw": {"M": 16, "ef_construction": args.ef_construction, "ef": args.ef},
        "eval_hnsw_wall_s": round(eval_s, 1), "index_build_s": r["index_build_seconds"],
        "retrieval_s": r["retrieval_seconds"], "ann_recall": {k: v for k, v in r.items() if k.startswith("ann_recall")},
        "meets_180s_target": eval_s <= 180, "threads": os.cpu_count(),
        "machine": machine | {"loadavg_end": runtime.machine()["loadavg"]},
    }
    if args.exact:
        exact_s, out = sslkit("eval", str(run), "--index", "exact", "--json")
        result["eval_exact_wall_s"] = round(exact_s, 1)
        result["exact_retrieval_s"] = json.loads(out)["runs"][0]["retrieval_seconds"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
