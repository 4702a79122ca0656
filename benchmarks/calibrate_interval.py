"""Calibrate the study interval (`study.stats.hierarchical_paired_ci`) under a null; prints JSON.

Every run is the baseline. A "tuning replicate" is simulated by drawing the backbone's pick at random —
lr and τ log-uniform in small ranges, one draw per replicate — as independent tuning runs would land on
different picks. Comparison c puts R replicate draws on each side ("base" and "arm", all 2R draws
distinct) and trains each with the same S seeds on both sides (paired seeds, as a study pairs them); no
two comparisons share a run, so the comparisons are independent and the count of false positives is
binomial. For each comparison it computes

* ``new``: the study's interval over replicates × seeds × queries (R replicates, S seeds, test queries);
* ``new_unexpanded``: the same bootstrap without the small-sample expansion;
* ``old``: the seeds × queries interval (`metrics.paired_seeds_bootstrap_ci`) on replicate 0 alone —
  what a study with one tuning draw per arm reported;

and reports how many of them exclude 0 (a false positive: there is no difference to find), with a
Clopper–Pearson interval. Resumable: finished runs in ``--out`` are reused (each run directory keeps the
per-query test metric it was scored with), so an interrupted calibration continues where it stopped; the
report covers the comparisons whose runs are all complete.

    PYTHONPATH=. python benchmarks/calibrate_interval.py --out /tmp/calib
    # or in 2 processes, then the report:
    for i in 0 1; do PYTHONPATH=. python benchmarks/calibrate_interval.py --out /tmp/calib --shard $i --shards 2 & done
    wait; PYTHONPATH=. python benchmarks/calibrate_interval.py --out /tmp/calib --report-only
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def pick(draw: int, seed: int, lr: tuple[float, float], tau: tuple[float, float]) -> dict[str, float]:
    """Replicate draw j's backbone pick: lr and τ log-uniform, from its own generator."""
    rng = np.random.default_rng([seed, draw])
    u = rng.random(2)
    return {"lr": float(np.exp(np.log(lr[0]) + u[0] * np.log(lr[1] / lr[0]))),
            "temperature": float(np.exp(np.log(tau[0]) + u[1] * np.log(tau[1] / tau[0])))}


def run_one(args: argparse.Namespace, draw: int, seed: int, store_cache: dict) -> tuple[np.ndarray, float]:
    """Train (or reuse) one baseline run and return its per-query test metric and the CPU seconds spent."""
    from sslkit.config import load_config
    from sslkit.data.io import atomic_write_bytes
    from sslkit.data.store import load_or_build
    from sslkit.evaluation.evaluate import evaluate_run
    from sslkit.training.train import train

    run = args.out / "runs" / f"d{draw}-s{seed}"
    done = run / "per_query.npy"
    p = pick(draw, args.seed, tuple(args.lr), tuple(args.tau))
    design = {"steps": args.steps, "set": args.set, "schema": str(args.schema)}
    if done.exists() and json.loads((run / "pick.json").read_text()).get("design") == design:
        return np.load(done), 0.0
    cfg = load_config(args.schema, [*args.set, f"train.steps={args.steps}", f"train.seed={seed}",
                                    f"train.lr={p['lr']!r}", f"train.temperature={p['temperature']!r}"])
    if "store" not in store_cache:
        store_cache["store"] = load_or_build(cfg)
    shutil.rmtree(run, ignore_errors=True)  # a run cut short is retrained from scratch
    t0 = time.process_time()
    train(cfg, store_cache["store"], run_dir=run)
    per_query = evaluate_run(run, ks=[args.k]).per_query[f"{args.metric}@{args.k}"]
    spent = time.process_time() - t0
    import io

    buf = io.BytesIO()
    np.save(buf, per_query)
    (run / "pick.json").write_text(json.dumps(p | {"seed": seed, "cpu_seconds": spent, "design": design}))
    atomic_write_bytes(done, buf.getvalue())
    return per_query, spent


def rate(k: int, n: int, level: float) -> dict:
    from sslkit.study.stats import binomial_ci

    return {"false_positives": k, "comparisons": n, "rate": k / n, "ci": list(binomial_ci(k, n, level=level))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schema", type=Path, default=ROOT / "examples/synthetic/schema.yaml")
    ap.add_argument("--out", type=Path, required=True, help="Run directories (reused when present).")
    ap.add_argument("--comparisons", type=int, default=65)
    ap.add_argument("--replicates", type=int, default=3, help="R per side.")
    ap.add_argument("--seeds", type=int, default=1, help="S per replicate (the same seeds on both sides).")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--lr", type=float, nargs=2, default=[0.02, 0.1], help="Range of the replicates' lr picks.")
    ap.add_argument("--tau", type=float, nargs=2, default=[0.04, 0.1], help="Range of their τ picks.")
    ap.add_argument("--metric", default="recall")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0, help="Seed of the replicate picks.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run.")
    ap.add_argument("--shard", type=int, default=0, help="Train only runs k with k %% shards == shard ...")
    ap.add_argument("--shards", type=int, default=1, help="... (several processes; then report with --report-only).")
    ap.add_argument("--first", type=int, default=0, help="Train from this comparison on (another process's share).")
    ap.add_argument("--report-only", action="store_true", help="Train nothing; report on the complete comparisons.")
    ap.add_argument("--set", action="append", default=["train.batch_size=256", "model.hidden=[32]", "model.embedding_dim=16",
                                                       "train.eval_queries=200", "train.device=cpu",
                                                       "train.precision=fp32", "split.validation_fraction=0.1"],
                    help="Config overrides for every run (added to the defaults shown).")
    args = ap.parse_args()
    import torch

    from sslkit.evaluation.metrics import paired_seeds_bootstrap_ci
    from sslkit.study.stats import hierarchical_paired_ci

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    r_, s_ = args.replicates, args.seeds
    t0, cpu, trained, store_cache = time.perf_counter(), 0.0, 0, {}
    plan = [[[[((2 * c + side) * r_ + r, 1000 + c * s_ + s) for s in range(s_)] for r in range(r_)]
             for side in range(2)] for c in range(args.comparisons)]  # (draw, seed) per comparison, side, r, s
    if not args.report_only:
        k = 0
        for c, pair in enumerate(plan):
            if c < args.first:
                k += sum(len(rep) for side in pair for rep in side)
                continue
            for draw, seed in (x for side in pair for rep in side for x in rep):
                if k % args.shards == args.shard:
                    _, spent = run_one(args, draw, seed, store_cache)
                    cpu, trained = cpu + spent, trained + bool(spent)
                k += 1
            print(f"comparison {c + 1}/{args.comparisons} (shard {args.shard}/{args.shards}): {trained} runs "
                  f"trained, {cpu:.0f} CPU-s", file=sys.stderr, flush=True)
        if args.shards > 1:
            return
    done = lambda draw, seed: (args.out / "runs" / f"d{draw}-s{seed}" / "per_query.npy").exists()
    complete = [pair for pair in plan if all(done(*x) for side in pair for rep in side for x in rep)]
    if not complete:
        raise SystemExit("no comparison has all its runs yet")
    sides = [[np.stack([np.stack([np.load(args.out / "runs" / f"d{d}-s{sd}" / "per_query.npy") for d, sd in rep])
                        for rep in side]) for side in pair] for pair in complete]  # (R, S, Q) each
    c_ = len(sides)
    new = raw = old = 0
    deltas, expansions = [], []
    for c, (base, arm) in enumerate(sides):
        h = hierarchical_paired_ci(base, arm, n_boot=args.n_boot, level=args.level, seed=c)
        u = hierarchical_paired_ci(base, arm, n_boot=args.n_boot, level=args.level, seed=c, expand=False)
        o = paired_seeds_bootstrap_ci(base[0], arm[0], n_boot=args.n_boot, level=args.level, seed=c)
        new += bool(h["ci"][0] > 0 or h["ci"][1] < 0)
        raw += bool(u["ci"][0] > 0 or u["ci"][1] < 0)
        old += bool(o["low"] > 0 or o["high"] < 0)
        deltas.append(h["delta"])
        expansions.append(h["expansion"])
    runs = 2 * c_ * r_ * s_
    picks = [pick(d, args.seed, tuple(args.lr), tuple(args.tau)) for pair in complete for side in pair
             for rep in side for d, _ in rep]
    print(json.dumps({
        "benchmark": "calibrate_interval", "schema": str(args.schema), "metric": f"{args.metric}@{args.k}",
        "design": {"comparisons": c_, "comparisons_planned": args.comparisons, "replicates_per_side": r_, "seeds_per_replicate": s_, "runs": runs,
                   "steps": args.steps, "lr_range": args.lr, "tau_range": args.tau, "set": args.set,
                   "queries": int(sides[0][0].shape[2]), "n_boot": args.n_boot, "level": args.level},
        "nominal": round(1 - args.level, 4),
        "new": rate(new, c_, args.level),
        "new_unexpanded": rate(raw, c_, args.level),
        "old_seeds_x_queries_one_replicate": rate(old, c_, args.level),
        "null_deltas": {"median_abs": float(np.median(np.abs(deltas))), "max_abs": float(np.max(np.abs(deltas)))},
        "expansion": {"median": float(np.median(expansions)), "min": float(np.min(expansions)),
                      "max": float(np.max(expansions))},
        "picks": {"lr": [min(p["lr"] for p in picks), max(p["lr"] for p in picks)],
                  "temperature": [min(p["temperature"] for p in picks), max(p["temperature"] for p in picks)]},
        "runs_trained_now": trained, "cpu_seconds_this_call": round(cpu, 1),
        "cpu_seconds_training_and_scoring": round(sum(  # the runs of the comparisons reported
            json.loads((args.out / "runs" / f"d{d}-s{sd}" / "pick.json").read_text())["cpu_seconds"]
            for pair in complete for side in pair for rep in side for d, sd in rep), 1),
        "wall_seconds": round(time.perf_counter() - t0, 1), "threads": args.threads, "cpu": cpu_name(),
    }, indent=2))


if __name__ == "__main__":
    main()
