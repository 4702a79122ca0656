"""sslkit against LibRecommender's TwoTower on identical MovieLens-100K rows; prints one JSON object.

Both systems train on the same 80,000 user → movie rows (a seeded 80/20 split of all 100,000
ratings, every rating a positive), with the same features (user: id, age, gender, occupation, zip;
movie: id, year, decade, first genre, content rating), embedding size 32, towers [256, 64],
batch 512, one thread each, and are scored by the same code: Recall@50 over the whole catalog for
every test user, the user's training movies excluded. Variants: `none` (the two-tower baseline)
and `cfm` (correlated feature masking, alpha 0.3; LibRecommender's `ssl_pattern="cfm"`). Each
system keeps its own optimizer defaults (sslkit: Adagrad lr 0.05, τ 0.05, logQ; LibRecommender:
Adam lr 0.001, τ 0.05, sampling-bias correction, accidental hits removed, no batch norm).

Speed is examples per CPU-second of the training call (process CPU time, which other jobs on a
shared machine cannot inflate), beside examples per wall-second; the machine (CPU, bf16 flags,
load) is recorded. sslkit runs at its default precision (`train.precision: auto`).

LibRecommender needs TensorFlow < 2.16 and numpy < 2, so it lives in its own environment, driven
here as a subprocess (`--lr-python`). Not part of CI. Setup (PyPI):

    python3 -m venv /tmp/lrvenv
    /tmp/lrvenv/bin/pip install "LibRecommender==1.5.2" "tensorflow-cpu<2.16" "numpy<2"
    python examples/movielens/prepare.py
    python benchmarks/vs_librecommender.py --lr-python /tmp/lrvenv/bin/python [--epochs 10] [--seeds 0,1,2]

Without `--lr-python` only sslkit's side runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslkit import runtime  # noqa: E402

runtime.passive_wait_policy()  # as the `sslkit` command does, before torch loads OpenMP

USER_FEATURES = ["age", "gender", "occupation", "zip"]
ITEM_FEATURES = ["year", "decade", "genre", "crating"]
EMBED, HIDDEN, BATCH, ALPHA, TAU, K = 32, [256, 64], 512, 0.3, 0.05, 50

SCHEMA = """
name: ml100k-vs-lr
interactions: {{path: rows.csv, query: user_id, item: item_id}}
queries:
  kind: entity
  path: users.csv
  id: user_id
  features: {{user_id: {{type: categorical}}, {user}}}
items:
  path: items.csv
  id: item_id
  features: {{item_id: {{type: categorical}}, {item}}}
split: {{method: column, column: split, validation_fraction: 0}}
eval: {{k: [{k}], exclude_seen: true}}
"""

# Runs under LibRecommender's Python: argv = work dir, variant, seed, epochs; prints one JSON line.
LR_DRIVER = r'''
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, pandas as pd
work, variant, seed, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from libreco.data import DatasetFeat
from libreco.algorithms import TwoTower
import tensorflow as tf
rows = pd.read_csv(os.path.join(work, "rows.csv"), dtype=str)
users = pd.read_csv(os.path.join(work, "users.csv"), dtype=str)
items = pd.read_csv(os.path.join(work, "items.csv"), dtype=str)
df = rows.merge(users, on="user_id").merge(items, on="item_id").rename(columns={"user_id": "user", "item_id": "item"})
df["label"] = 1.0
train, test = df[df.split == "train"].drop(columns="split"), df[df.split == "test"]
USER, ITEM = %(user)r, %(item)r
train_data, info = DatasetFeat.build_trainset(train, user_col=USER, item_col=ITEM, sparse_col=USER + ITEM,
                                              dense_col=[], shuffle=False)
tf.compat.v1.reset_default_graph()
model = TwoTower("ranking", info, loss_type="softmax", embed_size=%(embed)d, norm_embed=True, n_epochs=epochs,
                 lr=0.001, batch_size=%(batch)d, use_bn=False, hidden_units=%(hidden)r, use_correction=True,
                 temperature=%(tau)r, remove_accidental_hits=True, ssl_pattern=None if variant == "none" else variant,
                 alpha=%(alpha)r, seed=seed,
                 tf_sess_config={"intra_op_parallelism_threads": 1, "inter_op_parallelism_threads": 1})
c0, t0 = time.process_time(), time.perf_counter()
model.fit(train_data, neg_sampling=True, verbose=0, shuffle=True)
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
u_emb, i_emb = model.user_embeds_np[:, :%(dim)d], model.item_embeds_np[:, :%(dim)d]
uid, iid = info.user2id, info.item2id
n_items = len(iid)
seen = {}
for u, i in zip(train.user, train.item):
    seen.setdefault(uid[u], set()).add(iid[i])
rel = {}
for u, i in zip(test.user, test.item):
    if u in uid and i in iid:
        rel.setdefault(uid[u], set()).add(iid[i])
qs = sorted(rel)
scores = u_emb[qs] @ i_emb.T
for r, q in enumerate(qs):
    scores[r, list(seen.get(q, ()))] = -np.inf
top = np.argpartition(-scores, %(k)d, axis=1)[:, :%(k)d]
recall = float(np.mean([len(rel[q] & set(top[r].tolist())) / len(rel[q]) for r, q in enumerate(qs)]))
print(json.dumps({"examples": len(train) * epochs, "cpu_s": cpu, "wall_s": wall, "recall@%(k)d": recall,
                  "test_users": len(qs), "catalog": n_items}))
'''


def prepare(data: Path, work: Path, seed: int = 0) -> dict:
    """The shared rows: all ratings as user → movie positives, a seeded 80/20 split, single-valued features."""
    import numpy as np
    import polars as pl

    ratings = pl.read_parquet(data / "ratings.parquet").select("user_id", "item_id")
    test = np.zeros(len(ratings), dtype=bool)
    test[np.random.default_rng(seed).permutation(len(ratings))[: len(ratings) // 5]] = True
    ratings.with_columns(split=pl.Series(np.where(test, "test", "train"))).write_csv(work / "rows.csv")
    pl.read_parquet(data / "users.parquet").select("user_id", *USER_FEATURES).write_csv(work / "users.csv")
    items = pl.read_parquet(data / "items.parquet")
    items.select("item_id", year=pl.col("year").cast(pl.Utf8).fill_null("none"), decade=pl.col("decade").fill_null("none"),
                 genre=pl.col("genres").list.first().fill_null("none"),
                 crating=pl.col("rating").list.first().fill_null("none")).write_csv(work / "items.csv")
    (work / "schema.yaml").write_text(SCHEMA.format(user=", ".join(f"{f}: {{type: categorical}}" for f in USER_FEATURES),
                                                    item=", ".join(f"{f}: {{type: categorical}}" for f in ITEM_FEATURES),
                                                    k=K))
    return {"train_rows": int((~test).sum()), "test_rows": int(test.sum())}


def run_sslkit(work: Path, variant: str, seed: int, epochs: int, sets: list[str] | None = None) -> dict:
    """Train in this process on one thread (CPU time of the training call), then the test Recall@50."""
    import torch

    from sslkit.config import load_config
    from sslkit.data.store import load_or_build
    from sslkit.evaluation.evaluate import evaluate_run
    from sslkit.training.train import train, training_mi

    import sslkit.data.profile  # noqa: F401  modules train() imports on first use: loaded before the clock
    import sslkit.evaluation.metrics  # noqa: F401  starts, as LibRecommender's are before its `fit`
    import sslkit.retrieval.index  # noqa: F401

    torch.set_num_threads(1)
    cfg = load_config(work / "schema.yaml", [f"ssl.aug={variant}", f"ssl.alpha={ALPHA}", f"train.seed={seed}",
                                             f"train.epochs={epochs}", f"train.batch_size={BATCH}", "train.threads=1",
                                             f"model.embedding_dim={EMBED}", f"model.hidden={json.dumps(HIDDEN)}",
                                             f"train.temperature={TAU}", "train.device=cpu", f"cache_dir={work / 'cache'}",
                                             *(sets or [])])
    store = load_or_build(cfg, log=lambda _: None)
    mi = training_mi(cfg, store, lambda _: None) if variant == "cfm" else None
    run = work / f"sslkit-{variant}-s{seed}"
    if run.exists():  # a rerun in the same --work
        import shutil

        shutil.rmtree(run)
    c0, t0 = time.process_time(), time.perf_counter()
    result = train(cfg, store, run_dir=run, mi=mi)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    ev = evaluate_run(run, ks=[K], index="exact", exclude_seen=True, batch_size=None, ann_queries=None,
                      log=lambda _: None, split="test", allow_data_change=False).to_json()
    metrics = ev.get("metrics", ev)
    return {"examples": result.steps * BATCH, "cpu_s": cpu, "wall_s": wall, f"recall@{K}": metrics[f"recall@{K}"],
            "precision": json.loads((run / "run.json").read_text())["precision"]}


def run_lr(python: str, work: Path, variant: str, seed: int, epochs: int) -> dict:
    code = LR_DRIVER % {"user": USER_FEATURES, "item": ITEM_FEATURES, "embed": EMBED, "batch": BATCH,
                        "hidden": tuple(HIDDEN), "tau": TAU, "alpha": ALPHA, "k": K, "dim": HIDDEN[-1]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    p = subprocess.run([python, "-c", code, str(work), variant, str(seed), str(epochs)], capture_output=True, text=True,
                       env=env)
    if p.returncode:
        raise SystemExit(f"LibRecommender run failed ({variant}, seed {seed}): {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr-python", help="python of an environment with LibRecommender 1.5 (TensorFlow < 2.16, numpy < 2)")
    p.add_argument("--data", default=str(ROOT / "examples/movielens/data"), help="examples/movielens/prepare.py output")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="none,cfm")
    p.add_argument("--work", help="working directory (default: a temporary one)")
    p.add_argument("--sslkit-set", action="append", default=[], help="extra sslkit setting, e.g. train.lr=0.1 (repeatable)")
    a = p.parse_args()
    data = Path(a.data)
    if not (data / "ratings.parquet").exists():
        raise SystemExit(f"{data}: no MovieLens-100K data — run python examples/movielens/prepare.py first")
    start = runtime.machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = prepare(data, work)
        runs = []
        for variant in a.variants.split(","):
            for seed in (int(s) for s in a.seeds.split(",")):  # interleaved: each seed runs both systems back to back
                for system in ("sslkit", "librecommender") if a.lr_python else ("sslkit",):
                    load = runtime.machine()["loadavg"]
                    r = run_sslkit(work, variant, seed, a.epochs, a.sslkit_set) if system == "sslkit" else \
                        run_lr(a.lr_python, work, variant, seed, a.epochs)
                    r |= {"system": system, "variant": variant, "seed": seed, "loadavg_start": load,
                          "examples_per_cpu_s": round(r["examples"] / r["cpu_s"]),
                          "examples_per_s": round(r["examples"] / r["wall_s"])}
                    runs.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
    summary = {}
    for variant in a.variants.split(","):
        row = {}
        for system in ("sslkit", "librecommender"):
            mine = [r for r in runs if r["system"] == system and r["variant"] == variant]
            if mine:
                row[system] = {"examples_per_cpu_s": round(statistics.median(r["examples_per_cpu_s"] for r in mine)),
                               "examples_per_s": round(statistics.median(r["examples_per_s"] for r in mine)),
                               f"recall@{K}": round(statistics.mean(r[f"recall@{K}"] for r in mine), 4),
                               f"recall@{K}_runs": [round(r[f"recall@{K}"], 4) for r in mine]}
        if len(row) == 2:
            row["ratio_examples_per_cpu_s"] = round(row["sslkit"]["examples_per_cpu_s"]
                                                    / row["librecommender"]["examples_per_cpu_s"], 2)
        summary[variant] = row
    print(json.dumps({"benchmark": "vs_librecommender", "machine": start | {"loadavg_end": runtime.machine()["loadavg"]},
                      "rows": rows, "epochs": a.epochs, "sslkit_sets": a.sslkit_set, "threads": 1, "embedding_dim": EMBED, "hidden": HIDDEN,
                      "batch_size": BATCH, "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
