#!/usr/bin/env python
"""Generate the simulated large catalog (SIMULATED data, not a real log) into data/.

    python examples/simulated/prepare.py            # 100,000 items, 1,000,000 pairs (~3 s)
    python examples/simulated/prepare.py --items 200000 --pairs 5000000   # the paper's Wikipedia size

The generator is `examples/synthetic/generate.py` (seed 0; identical arguments give byte-identical
files): a power-law popularity over a random order of items (exponent 1.1; with the default sizes
the top 1% of items take 57% of the pairs and the median item has 2), 10% of the catalog never in
any pair, and targets drawn mostly from the query's subcategory or category, so the eight item
features carry real signal. It stands in for the paper's regime — a large catalog with a heavy
tail and many cold items — which no real public data installable from the package registries
offers at this size with item features. Every result on it is labelled *simulated*.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS, PAIRS = 100_000, 1_000_000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=ITEMS)
    ap.add_argument("--pairs", type=int, default=PAIRS)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("sslkit_generate", HERE.parent / "synthetic/generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    tables = gen.make_tables(args.items, args.pairs, 0, 0, seed=0)
    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("items", "pairs"):
        tables[name].write_parquet(data / f"{name}.parquet")
    print(f"wrote {args.items:,} items and {args.pairs:,} pairs to {data} (simulated)", file=sys.stderr)


if __name__ == "__main__":
    main()
