"""Preprocessing benchmark: raw files → feature store (read, validate, split, fit vocabularies, encode).

Generates the synthetic Wikipedia-shaped dataset (item_id, category, tags, title) once, the pairs
as Parquet shards of `--shard` pairs (so the generator never holds them all), then for each size
in `--pairs` builds the store from the first shards in a fresh child process and times:

* `build`: `sslkit.data.store.build` from the files (what a first `sslkit train` or `profile` pays);
* `save`: writing that store into the cache (streamed split files are hard-linked);
* `load`: memory-mapping the cached store again, checksums verified (what every later command pays);

with the child's peak RSS (`ru_maxrss`, build + save + load; `peak_rss_build_mb`: after the build).
Prints ONE JSON object, one row per size, plus the fitted RSS slope in bytes per pair. Logs go to
stderr. `--in-memory` builds with the in-memory pair path instead (for comparison). `--distinct N`
generates only N pairs and builds larger sizes from those shards repeated (`distinct_shards` in the
output): the build does the same work per pair, and generating 100M pairs takes longer than building.

    nice -n 19 python benchmarks/preprocess.py [--items 1000000] [--pairs 20000000,50000000,100000000]
        [--shard 10000000] [--distinct N] [--in-memory] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def log(msg: str) -> None:
    print(f"[bench preprocess] {msg}", file=sys.stderr, flush=True)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def generate(work: Path, items: int, pairs: int, shard: int) -> None:
    """Items + schema via the generator; the pairs as `shard`-sized Parquet files pairs-000.parquet, …"""
    from synthetic import generator

    gen = generator()
    gen.generate(work, preset="wikipedia", items=items, pairs=1000, users=0, fmt="parquet")
    (work / "data/pairs.parquet").unlink()
    text = (work / "schema.yaml").read_text()
    (work / "schema.yaml").write_text(text.replace("data/pairs.parquet", "data/pairs-*.parquet"))
    catalog = gen.make_items(items, np.random.default_rng(np.random.SeedSequence(0).spawn(4)[0]))[1]
    for i, start in enumerate(range(0, pairs, shard)):
        gen.make_pairs(min(shard, pairs - start), catalog, np.random.default_rng([1, i])).write_parquet(
            work / f"data/pairs-{i:03d}.parquet")


def child(schema: str, in_memory: bool) -> None:
    """One measurement in this (fresh) process: build, save, load; JSON on stdout."""
    from sslkit.data import pairstream, store
    from sslkit.config import load_config

    if in_memory:
        pairstream.applies = lambda _cfg: False  # type: ignore[assignment]
    cfg = load_config(schema)
    t0 = time.perf_counter()
    built = store.build(cfg)
    build_s = time.perf_counter() - t0
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cache = Path(schema).parent / "cache"
    t0 = time.perf_counter()
    store.save(built, cache)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = store.load(cache)
    load_s = time.perf_counter() - t0
    assert len(loaded.splits["train"]) == len(built.splits["train"])
    print(json.dumps({
        "pairs_read": built.report["pairs_read"], "items": built.items.rows, "train_pairs": len(built.splits["train"]),
        "validation_pairs": len(built.splits["validation"]), "test_pairs": len(built.splits["test"]),
        "streamed": isinstance(built.splits["train"], np.memmap), "build_s": round(build_s, 2),
        "pairs_per_s": round(built.report["pairs_read"] / build_s), "save_s": round(save_s, 2),
        "load_s": round(load_s, 2), "store_bytes": dir_bytes(cache), "peak_rss_build_mb": round(rss_build / 2**20),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--pairs", default="20000000,50000000,100000000", help="comma-separated sizes")
    p.add_argument("--shard", type=int, default=10_000_000, help="pairs per generated Parquet file")
    p.add_argument("--in-memory", action="store_true", help="build with the in-memory pair path")
    p.add_argument("--keep", help="generate into (or reuse) this directory instead of a temporary one")
    p.add_argument("--distinct", type=int, help="generate only this many pairs; larger sizes repeat the shards "
                   "(the build does the same work per pair; saves generation time)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    from sslkit import runtime

    machine = runtime.machine()  # CPU, bf16 flags, load at the start
    if a.child:
        return child(a.child, a.in_memory)
    sizes = [int(s) for s in a.pairs.split(",")]
    if any(s % a.shard for s in sizes):
        p.error("--pairs sizes must be multiples of --shard")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.keep or tmp)
        if not (work / "schema.yaml").exists():
            t0 = time.perf_counter()
            generate(work, a.items, a.distinct or max(sizes), a.shard)
            log(f"generated {a.distinct or max(sizes):,} pairs over {a.items:,} items in {time.perf_counter() - t0:.1f} s")
        shards = len(list(work.glob("data/pairs-*.parquet")))
        rows = []
        for size in sizes:
            run = Path(tempfile.mkdtemp(dir=tmp, prefix=f"run{size}-"))
            (run / "data").mkdir()
            (run / "data/items.parquet").symlink_to(work / "data/items.parquet")
            for i in range(size // a.shard):  # beyond the generated shards, the first ones again
                (run / f"data/pairs-{i:03d}.parquet").symlink_to(work / f"data/pairs-{i % shards:03d}.parquet")
            (run / "schema.yaml").write_text((work / "schema.yaml").read_text().replace(
                "data/pairs.parquet", "data/pairs-*.parquet"))
            cmd = [sys.executable, __file__, "--child", str(run / "schema.yaml")] + (["--in-memory"] if a.in_memory else [])
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
            row = {"pairs": size, "distinct_shards": min(shards, size // a.shard),
                   "input_bytes": sum((work / f"data/pairs-{i % shards:03d}.parquet").stat().st_size
                                      for i in range(size // a.shard)), **json.loads(out.stdout)}
            rows.append(row)
            log(json.dumps(row))
        slope = (np.polyfit([r["pairs"] for r in rows], [r["peak_rss_mb"] * 2**20 for r in rows], 1)[0]
                 if len(rows) > 1 else None)
        print(json.dumps({"benchmark": "preprocess", "path": "in-memory" if a.in_memory else "streamed",
                          "rows": rows, "rss_bytes_per_pair": None if slope is None else round(float(slope), 2),
                          "machine": machine | {"loadavg_end": runtime.machine()["loadavg"]}},
                         indent=1))


if __name__ == "__main__":
    main()
