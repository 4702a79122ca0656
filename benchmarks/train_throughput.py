"""Training throughput on two shapes; prints one JSON object.

* wikipedia: the paper's Wikipedia shape from the synthetic generator (200k items, item_id + category
  + tags + title, batch 1024, hidden [1024, 128], --aug cfm, alpha 0.3). Target on a 2-core CPU:
  >= 12,000 examples/s.
* ml100k: MovieLens-100K-sized user-to-item (1.7k items, 4 small item + 4 user features, embedding 32,
  hidden [256, 64], batch 512, SSL on). Target >= 90,000 examples/s.

Also measures this machine's matmul throughput with a probe in the same run and reports the share
of the matmul-bound limit each shape reaches (model FLOPs per example counted analytically).

    python benchmarks/train_throughput.py [--steps 60] [--repeats 3] [--threads 2] [--shape wikipedia,ml100k]
        [--precision auto|fp32|bf16] [--system-malloc]

`--precision` is `train.precision`: `auto` (the default, as in `sslkit train`) runs the towers under
bf16 autocast on a CPU with AMX and in fp32 elsewhere; `towers_in` in the output says which. The
matmul probe stays fp32. Like the `sslkit` command, the benchmark keeps freed memory for reuse
(`sslkit.runtime`); `--system-malloc` measures without. (The probe's large buffers already raise
glibc's own thresholds, so in this process the difference is small; `page_faults_per_step` shows it.)
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

import torch  # noqa: E402

from synthetic import generator  # noqa: E402
from sslkit import runtime  # noqa: E402
from sslkit.config import load_config  # noqa: E402
from sslkit.store import load_or_build  # noqa: E402
from sslkit.train import build_setup, num_views, train_step, training_mi  # noqa: E402

ML_SCHEMA = """
name: ml100k-shape
interactions: {path: data/user_pairs.csv, query: user_id, item: item_id, time: ts}
queries:
  kind: entity
  path: data/users.csv
  id: user_id
  features: {age: {type: categorical}, gender: {type: categorical}, occupation: {type: categorical}, zip: {type: categorical}}
items:
  path: data/items.csv
  id: item_id
  features: {category: {type: categorical}, subcategory: {type: categorical}, brand: {type: categorical}, year: {type: numeric, buckets: 8}}
"""

SHAPES = {
    "wikipedia": dict(preset="wikipedia", schema="schema.yaml", target=12_000,
                      sets=["model.hidden=[1024,128]", "model.embedding_dim=32", "train.batch_size=1024",
                            "ssl.aug=cfm", "ssl.alpha=0.3"]),
    "ml100k": dict(preset="ml100k", schema="ml.yaml", target=90_000,
                   sets=["model.hidden=[256,64]", "model.embedding_dim=32", "train.batch_size=512",
                         "ssl.aug=cfm", "ssl.alpha=0.3"]),
}


def matmul_probe(seconds: float = 2.0) -> float:
    """Sustained fp32 GFLOP/s of MLP-shaped matmuls (forward + both backward products)."""
    a, w = torch.randn(3072, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ w
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ w
        n += 1
    return 2 * 3072 * 1024 * 1024 * n / (time.perf_counter() - t0) / 1e9


def flops_per_example(setup) -> float:
    """Matmul FLOPs per training example: every tower pass forward + backward (3x forward)."""
    def tower(mlp) -> float:
        return sum(2 * m.in_features * m.out_features for m in mlp if isinstance(m, torch.nn.Linear))
    m, cfg = setup.model, setup.cfg
    b = min(cfg.train.batch_size, len(setup.train_pairs))
    bs = cfg.ssl.batch_size or b
    views = num_views(cfg.ssl.aug)
    d = m.output_dim
    per_batch = 3 * (b * tower(m.query_mlp) + (b + views * bs) * tower(m.item_mlp))
    per_batch += 3 * 2 * b * b * d + (3 * 2 * bs * bs * d if views else 0)  # logits matmuls
    return per_batch / b


def timed(setup, steps: int) -> tuple[float, float]:
    """examples/s of `steps` optimizer steps (the training loop's body, without logging), and the
    process's minor page faults per step over them."""
    gen = torch.Generator().manual_seed(0)
    b = min(setup.cfg.train.batch_size, len(setup.train_pairs))
    perm = torch.randperm(len(setup.train_pairs), generator=gen)
    faults, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for i in range(steps):
        rows = perm[(i * b) % (len(perm) - b):][:b]
        train_step(setup, rows, gen)
    rate = steps * b / (time.perf_counter() - t0)
    return rate, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps


def run_shape(name: str, work: Path, steps: int, repeats: int, probe: float, precision: str = "auto") -> dict:
    spec = SHAPES[name]
    out = work / name
    t0 = time.perf_counter()
    generator().generate(out, preset=spec["preset"])
    gen_s = time.perf_counter() - t0
    if name == "ml100k":
        (out / "ml.yaml").write_text(ML_SCHEMA)
    cfg = load_config(out / spec["schema"], [*spec["sets"], "train.device=cpu", f"train.precision={precision}"])
    t0 = time.perf_counter()
    store = load_or_build(cfg, use_cache=False)
    prep_s = time.perf_counter() - t0
    mi = training_mi(cfg, store, lambda _: None)
    names = [n for n, s in store.items.specs.items() if not s.dense]
    setup = build_setup(cfg, store, [[names.index(f) for f in mi["mask_sets"][n]] for n in names])
    timed(setup, 5)  # warm-up
    runs = [timed(setup, steps) for _ in range(repeats)]
    rates = [r for r, _ in runs]
    rate = statistics.median(rates)
    fpe = flops_per_example(setup)
    return {"shape": name, "items": store.items.rows, "train_pairs": len(store.splits["train"]),
            "item_features": names, "batch_size": cfg.train.batch_size, "hidden": cfg.model.hidden,
            "embedding_dim": cfg.model.embedding_dim, "aug": cfg.ssl.aug, "precision": precision,
            "towers_in": "bf16" if setup.bf16 else "fp32", "steps": steps,
            "examples_per_s_runs": [round(r) for r in rates], "examples_per_s": round(rate),
            "page_faults_per_step": round(statistics.median(f for _, f in runs), 1),
            "target_examples_per_s": spec["target"], "meets_target": rate >= spec["target"],
            "matmul_gflop_per_example": round(fpe / 1e9, 5),
            "matmul_bound_examples_per_s": round(probe * 1e9 / fpe),
            "fraction_of_matmul_bound": round(rate * fpe / (probe * 1e9), 3),
            "generate_s": round(gen_s, 2), "preprocess_s": round(prep_s, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shape", default="wikipedia,ml100k")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--system-malloc", action="store_true", help="leave glibc malloc's defaults (the library case)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    kept = not a.system_malloc and runtime.keep_freed_memory()  # as the `sslkit` command does
    probe = matmul_probe()
    with tempfile.TemporaryDirectory() as tmp:
        shapes = [run_shape(s, Path(tmp), a.steps, a.repeats, probe, a.precision) for s in a.shape.split(",")]
    print(json.dumps({"benchmark": "train_throughput", "device": "cpu", "threads": a.threads,
                      "torch": torch.__version__, "matmul_probe_gflops": round(probe, 1), "keep_freed_memory": kept,
                      "shapes": shapes}, indent=1))


if __name__ == "__main__":
    main()
