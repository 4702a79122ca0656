"""MI benchmark: sslkit's vectorized exact MI vs scikit-learn's mutual_info_score per pair; prints JSON.

k = 8 single-valued categorical features over 1M catalog rows, with cardinalities from 1M (an id)
down to 2, several correlated. Target: >= 10x faster than sklearn, identical values (1e-9).

    python benchmarks/mi.py [--rows 1000000] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from sslkit.mi import mutual_information  # noqa: E402


def features(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, 10_000, rows)
    cols = {
        "id": rng.permutation(rows),
        "fine": np.where(rng.random(rows) < 0.9, sub * 10 + rng.integers(0, 10, rows), rng.integers(0, 100_000, rows)),
        "sub": sub,
        "group": sub // 10,
        "bucket": np.where(rng.random(rows) < 0.7, sub // 100, rng.integers(0, 100, rows)),
        "cat": sub // 500,
        "five": rng.integers(0, 5, rows),
        "flag": (sub % 2) ^ (rng.random(rows) < 0.1),
    }
    return {k: (v.astype(np.int32) + 2)[:, None] for k, v in cols.items()}  # encoded ids start at 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    from sklearn.metrics import mutual_info_score

    feats = features(a.rows, a.seed)
    names = list(feats)
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        result = mutual_information(feats)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = {(i, j): mutual_info_score(feats[names[i]][:, 0], feats[names[j]][:, 0])
           for i, j in combinations(range(len(names)), 2)}
    sk = time.perf_counter() - t0
    diff = max(abs(result.mi[i, j] - v) for (i, j), v in ref.items())
    ours = statistics.median(times)
    print(json.dumps({"benchmark": "mi", "rows": a.rows, "features": len(names), "pairs": len(ref),
                      "sslkit_s_runs": [round(t, 3) for t in times], "sslkit_s": round(ours, 3),
                      "sklearn_s": round(sk, 3), "speedup": round(sk / ours, 1), "max_abs_diff": float(diff),
                      "target_speedup": 10, "meets_target": bool(sk / ours >= 10 and diff < 1e-9)}))


if __name__ == "__main__":
    main()
