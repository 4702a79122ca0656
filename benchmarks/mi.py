"""MI benchmark: sslkit's vectorized exact MI vs scikit-learn's `mutual_info_score` on every pair.

Builds k single-valued categorical item features over a synthetic catalog (default k = 8 over
1M rows) with cardinalities from an id (one value per row) down to 2, several of them correlated
(a hierarchy id → fine → sub → group → bucket → cat, a noisy flag of sub), times
`sslkit.data.mi.mutual_information` (median over repeats) and, in the same run, scikit-learn on all
k·(k-1)/2 pairs (once), checks they agree to 1e-9, and prints ONE JSON object to stdout. Logs go
to stderr. Target: >= 10x faster than scikit-learn.

    python benchmarks/mi.py [--rows 1000000] [--features 8] [--repeats 3] [--seed 0]
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

from sslkit import runtime  # noqa: E402
from sslkit.data.mi import mutual_information  # noqa: E402

TARGET_SPEEDUP = 10
TOLERANCE = 1e-9


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench mi] {msg}", file=sys.stderr, flush=True)


def make_features(rows: int, k: int, seed: int) -> dict[str, np.ndarray]:
    """k encoded single-valued features (int32 [rows, 1], values >= 2) with varied cardinalities.

    The first eight: id (rows values), fine (~100k), sub (10k), group (1000), bucket (100),
    cat (20), five (5, independent), flag (2); further ones are noisy hashes of ``sub`` with
    cardinalities 50, 500, 5000, 50000 in turn.
    """
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, 10_000, rows)
    cols: dict[str, np.ndarray] = {
        "id": rng.permutation(rows),
        "fine": np.where(rng.random(rows) < 0.9, sub * 10 + rng.integers(0, 10, rows), rng.integers(0, 100_000, rows)),
        "sub": sub,
        "group": sub // 10,
        "bucket": np.where(rng.random(rows) < 0.7, sub // 100, rng.integers(0, 100, rows)),
        "cat": sub // 500,
        "five": rng.integers(0, 5, rows),
        "flag": (sub % 2) ^ (rng.random(rows) < 0.1),
    }
    cards = [50, 500, 5000, 50_000]
    for m in range(max(0, k - len(cols))):
        card = cards[m % len(cards)]
        cols[f"extra{m}"] = np.where(rng.random(rows) < 0.8, (sub * (2 * m + 7919)) % card, rng.integers(0, card, rows))
    return {name: (v.astype(np.int32) + 2)[:, None] for name, v in list(cols.items())[:k]}  # ids start at 2


def main() -> None:
    """Run the benchmark and print its JSON result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="catalog rows (default 1000000)")
    p.add_argument("--features", type=int, default=8, help="number of features, >= 2 (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed sslkit runs; the median is reported (default 3)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    machine = runtime.machine()  # CPU, bf16 flags, load at the start
    if a.rows < 2 or a.features < 2 or a.repeats < 1:
        p.error("need --rows >= 2, --features >= 2 and --repeats >= 1")
    from sklearn.metrics import mutual_info_score

    t0 = time.perf_counter()
    feats = make_features(a.rows, a.features, a.seed)
    names = list(feats)
    log(f"built {len(names)} features over {a.rows} rows in {time.perf_counter() - t0:.2f}s: "
        + ", ".join(f"{n}={len(np.unique(v))}" for n, v in feats.items()))

    times = []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        result = mutual_information(feats)
        times.append(time.perf_counter() - t0)
        log(f"sslkit run {r + 1}/{a.repeats}: {times[-1]:.3f}s")
    ours = statistics.median(times)

    pairs = list(combinations(range(len(names)), 2))
    t0 = time.perf_counter()
    ref = {(i, j): mutual_info_score(feats[names[i]][:, 0], feats[names[j]][:, 0]) for i, j in pairs}
    theirs = time.perf_counter() - t0
    log(f"sklearn mutual_info_score on {len(pairs)} pairs: {theirs:.3f}s")

    diff = max(abs(float(result.mi[i, j]) - float(v)) for (i, j), v in ref.items())
    speedup = theirs / ours
    print(json.dumps({"benchmark": "mi", "rows": a.rows, "features": len(names), "pairs": len(pairs),
                      "sslkit_s": round(ours, 4), "sklearn_s": round(theirs, 4), "speedup": round(speedup, 1),
                      "max_abs_diff": diff, "target_speedup": TARGET_SPEEDUP,
                      "meets_target": bool(speedup >= TARGET_SPEEDUP and diff <= TOLERANCE),
                      "machine": machine | {"loadavg_end": runtime.machine()["loadavg"]}}))


if __name__ == "__main__":
    main()
