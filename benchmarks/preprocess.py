"""Preprocessing benchmark: raw files → feature store (read, validate, split, fit vocabularies, encode).

Generates the synthetic Wikipedia-shaped dataset (item_id, category, tags, title) at a chosen size
as Parquet or CSV, then times, in one process:

* `build`: `sslkit.store.build` from the files (what a first `sslkit train` or `profile` pays),
  median of `--repeats`;
* `save`: writing that store into the cache (atomic, .npy per feature);
* `load`: memory-mapping the cached store again (what every later command pays);

and prints ONE JSON object with pairs/s, the store's size on disk and the process's peak RSS. Logs
go to stderr.

    python benchmarks/preprocess.py [--items 1000000] [--pairs 20000000] [--format parquet|csv]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synthetic import generator  # noqa: E402
from sslkit import store as store_mod  # noqa: E402
from sslkit.config import load_config  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench preprocess] {msg}", file=sys.stderr, flush=True)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--pairs", type=int, default=20_000_000)
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        generator().generate(work, preset="wikipedia", items=a.items, pairs=a.pairs, users=0, fmt=a.format)
        gen_s = time.perf_counter() - t0
        log(f"generated {a.pairs:,} pairs over {a.items:,} items in {gen_s:.1f} s")
        cfg = load_config(work / "schema.yaml")
        times = []
        for i in range(a.repeats):
            t0 = time.perf_counter()
            built = store_mod.build(cfg)
            times.append(time.perf_counter() - t0)
            log(f"build {i + 1}/{a.repeats}: {times[-1]:.2f} s")
        cache = work / "cache"
        t0 = time.perf_counter()
        store_mod.save(built, cache)
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = store_mod.load(cache)
        load_s = time.perf_counter() - t0
        assert len(loaded.splits["train"]) == len(built.splits["train"])
        build_s = statistics.median(times)
        print(json.dumps({
            "benchmark": "preprocess", "format": a.format, "items": built.items.rows,
            "pairs_read": built.report["pairs_read"], "train_pairs": len(built.splits["train"]),
            "test_pairs": len(built.splits["test"]), "input_bytes": dir_bytes(work / "data"),
            "generate_s": round(gen_s, 2), "build_s_runs": [round(t, 2) for t in times],
            "build_s": round(build_s, 2), "pairs_per_s": round(built.report["pairs_read"] / build_s),
            "save_s": round(save_s, 2), "load_s": round(load_s, 4), "store_bytes": dir_bytes(cache),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}, indent=1))


if __name__ == "__main__":
    main()
