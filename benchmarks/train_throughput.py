"""Training throughput on two shapes; prints one JSON object.

* wikipedia: the paper's Wikipedia shape from the synthetic generator (200k items, item_id + category
  + tags + title, batch 1024, hidden [1024, 128], --aug cfm, alpha 0.3). Target on a 2-core CPU:
  >= 12,000 examples/s (set on an Intel Xeon with AMX; the AVX2-only AMD EPYC of docs/scaling.md
  "Threads" runs 5,286 on 1 thread and 8,611 on 2, fp32).
* ml100k: MovieLens-100K-sized user-to-item (1.7k items, 4 small item + 4 user features, embedding 32,
  hidden [256, 64], batch 512, SSL on). Target >= 90,000 examples/s (AMX machine; the AMD EPYC: 21,610-
  23,595 on 1 thread).
* aai: the paper's AAI shape (2.4M items, batch 4096, hidden [1024, 256], embedding 64, --aug cfm) with
  the Wikipedia-preset features and 10M pairs (`--items`/`--pairs` scale it). Meant for a GPU: target
  >= 2,000,000 examples/s per H100-class GPU, i.e. 1B pairs per epoch in under 10 minutes
  (`epoch_1b_pairs_minutes` in the output).

Also measures this machine's matmul throughput with a probe in the same run and reports the share
of the matmul-bound limit each shape reaches (model FLOPs per example counted analytically).

    python benchmarks/train_throughput.py [--steps 60] [--repeats 3] [--threads auto|N] [--shape wikipedia,ml100k]
        [--wait-policy passive|library] [--no-probe]
        [--precision auto|fp32|bf16] [--system-malloc] [--device cpu|cuda] [--nproc N]
        [--sparse-reduce all_reduce|all_gather|dense] [--items N] [--pairs N] [--work DIR]

    # on one GPU, then data-parallel on every GPU of the machine (one command each):
    python benchmarks/train_throughput.py --shape aai --device cuda --steps 100 --repeats 3
    python benchmarks/train_throughput.py --shape aai --device cuda --steps 100 --repeats 3 --nproc $(nvidia-smi -L | wc -l)

`--nproc N` reruns this script under torchrun on N local processes (`sslkit.training.distributed`: gloo on CPU,
nccl on GPUs; `--threads` is divided between them); the global batch is the shape's batch, split over
the ranks, and examples/s counts global examples. `--sparse-reduce` picks how the ranks sum sparse
embedding-table gradients (default: all_reduce on gloo, all_gather on nccl; `dense` densifies them
first, what DistributedDataParallel would need on nccl), to measure what each costs.

`--threads auto` (the default) chooses threads per shape as `sslkit train` does (`sslkit.runtime.
choose_threads`: one for a small step, else the idle usable CPUs); each shape's `threads` says what
and why. Like the command, the benchmark sets `OMP_WAIT_POLICY=PASSIVE` before torch loads unless it
is set; `--wait-policy library` leaves OpenMP's own default (spin, then sleep) to measure the
difference. `machine` records the CPU model, its bf16 flags and the load average at start and end.

`--precision` is `train.precision`: `auto` (the default, as in `sslkit train`) runs the towers under
bf16 autocast on a CPU with avx512_bf16 or AMX and in fp32 elsewhere; `towers_in` in the output says
which. The matmul probe stays fp32 and runs at each shape's threads (`--no-probe` skips it). Like the `sslkit` command, the benchmark keeps freed memory for reuse
(`sslkit.runtime`); `--system-malloc` measures without. (The probe's large buffers already raise
glibc's own thresholds, so in this process the difference is small; `page_faults_per_step` shows it.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sslkit import runtime  # noqa: E402

_ARGV = " ".join(sys.argv[1:]).replace("=", " ").split()  # read before argparse: torch must not be loaded yet
if not ("--wait-policy" in _ARGV and _ARGV[_ARGV.index("--wait-policy") + 1:][:1] == ["library"]):
    runtime.passive_wait_policy()  # as the `sslkit` command does, before torch loads OpenMP

import torch  # noqa: E402

from synthetic import generator  # noqa: E402
from sslkit.training import distributed  # noqa: E402
from sslkit.config import load_config  # noqa: E402
from sslkit.training.device import apply_threads  # noqa: E402
from sslkit.training.train import build_setup, matmul_flops_per_step, train_step, training_mi  # noqa: E402

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
    "aai": dict(preset="wikipedia", schema="schema.yaml", target=2_000_000, items=2_400_000, pairs=10_000_000,
                sets=["model.hidden=[1024,256]", "model.embedding_dim=64", "train.batch_size=4096",
                      "ssl.aug=cfm", "ssl.alpha=0.3", "train.temperature=0.06"]),
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
    b = min(setup.cfg.train.batch_size, len(setup.train_pairs))
    return matmul_flops_per_step(setup) * setup.world.size / b


def sync(setup) -> None:
    """Wait for the device and (under torchrun) every rank, so the clock reads finished steps."""
    if setup.device.type == "cuda":
        torch.cuda.synchronize()
    setup.world.barrier()


def timed(setup, steps: int) -> tuple[float, float, float, float]:
    """examples/s (global) of `steps` optimizer steps (the training loop's body, without logging), the
    process's minor page faults per step over them, examples per CPU-second summed over the ranks
    (what a loaded, shared machine cannot skew by giving the job more or fewer cores), and the
    milliseconds per step spent reducing gradients over the ranks (0 in one process)."""
    world, reduce_s = setup.world, [0.0]

    def reduce_gradients(model) -> None:
        t = time.perf_counter()
        type(world).reduce_gradients(world, model)
        reduce_s[0] += time.perf_counter() - t

    world.reduce_gradients = reduce_gradients  # this instance only, for the timed steps
    gen = torch.Generator().manual_seed(0)
    b = min(setup.cfg.train.batch_size, len(setup.train_pairs))
    perm = torch.randperm(len(setup.train_pairs), generator=gen)  # on the CPU, as in sslkit.training.train (the pairs are there)
    sync(setup)
    faults, t0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter(), time.process_time()
    for i in range(steps):
        rows = perm[(i * b) % (len(perm) - b):][:b]
        train_step(setup, rows, gen)
    sync(setup)
    rate = steps * b / (time.perf_counter() - t0)
    cpu = setup.world.mean({"cpu_s": torch.tensor(time.process_time() - c0, device=setup.device)})["cpu_s"] * setup.world.size
    del world.reduce_gradients
    return (rate, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps, steps * b / cpu,
            1e3 * reduce_s[0] / steps)


def run_shape(name: str, work: Path, steps: int, repeats: int, threads: int | None, precision: str = "auto",
              device: str = "cpu", sparse: str | None = None, items: int | None = None,
              pairs: int | None = None, no_probe: bool = False) -> dict:
    spec = SHAPES[name]
    out = work / name
    world = distributed.current()
    t0 = time.perf_counter()
    if world.is_main and not (out / spec["schema"]).exists():  # rank 0 writes the data the ranks share
        generator().generate(out, preset=spec["preset"], items=items or spec.get("items"),
                             pairs=pairs or spec.get("pairs"), fmt="parquet" if name == "aai" else "csv")
        if name == "ml100k":
            (out / "ml.yaml").write_text(ML_SCHEMA)
    world.barrier()
    gen_s = time.perf_counter() - t0
    cfg = load_config(out / spec["schema"], [*spec["sets"], f"train.device={device}", f"train.precision={precision}",
                                             f"cache_dir={work / 'cache'}"])
    t0 = time.perf_counter()
    store = distributed.load_store(cfg, lambda _: None)  # built once (rank 0), cached in the work directory
    prep_s = time.perf_counter() - t0
    if sparse:
        world.sparse = sparse
    mi = training_mi(cfg, store, lambda _: None)
    names = [n for n, s in store.items.specs.items() if not s.dense]
    setup = build_setup(cfg, store, [[names.index(f) for f in mi["mask_sets"][n]] for n in names])
    choice = apply_threads(threads, matmul_flops_per_step(setup), setup.device)
    probe = matmul_probe() if device == "cpu" and not no_probe else None  # at the threads the shape runs with
    load_start = runtime.machine()["loadavg"]
    timed(setup, 5)  # warm-up
    runs = [timed(setup, steps) for _ in range(repeats)]
    rates = [r[0] for r in runs]
    rate = statistics.median(rates)
    fpe = flops_per_example(setup)
    bound = {} if probe is None else {
        "matmul_bound_examples_per_s": round(probe * 1e9 / fpe), "fraction_of_matmul_bound": round(rate * fpe / (probe * 1e9), 3)}
    return {"shape": name, "device": str(setup.device), "world_size": world.size, "backend": world.backend,
            "sparse_reduce": world.sparse if world.active else None,
            "items": store.items.rows, "train_pairs": len(store.splits["train"]),
            "item_features": names, "batch_size": cfg.train.batch_size, "hidden": cfg.model.hidden,
            "embedding_dim": cfg.model.embedding_dim, "aug": cfg.ssl.aug, "precision": precision,
            "towers_in": "bf16" if setup.bf16 else "fp32", "threads": choice.to_json(), "steps": steps,
            "loadavg_start": load_start, "loadavg_end": runtime.machine()["loadavg"],
            "examples_per_s_runs": [round(r) for r in rates], "examples_per_s": round(rate),
            "examples_per_cpu_s": round(statistics.median(r[2] for r in runs)),
            "gradient_reduce_ms_per_step": round(statistics.median(r[3] for r in runs), 2),
            "page_faults_per_step": round(statistics.median(r[1] for r in runs), 1),
            "target_examples_per_s": spec["target"], "meets_target": rate >= spec["target"],
            "epoch_1b_pairs_minutes": round(1e9 / rate / 60, 1),
            "matmul_gflop_per_example": round(fpe / 1e9, 5), "matmul_probe_gflops": probe and round(probe, 1), **bound,
            "generate_s": round(gen_s, 2), "preprocess_s": round(prep_s, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="auto", help="per process: a number, or auto (sslkit's default policy)")
    p.add_argument("--wait-policy", choices=["passive", "library"], default="passive",
                   help="OMP_WAIT_POLICY=PASSIVE unless set (sslkit's default), or the OpenMP library's default")
    p.add_argument("--no-probe", action="store_true", help="skip the 2-s matmul probe")
    p.add_argument("--shape", default="wikipedia,ml100k")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--system-malloc", action="store_true", help="leave glibc malloc's defaults (the library case)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (reruns this script under torchrun)")
    p.add_argument("--sparse-reduce", choices=["all_reduce", "all_gather", "dense"], help="sparse gradient sum over ranks")
    p.add_argument("--items", type=int, help="override the shape's item count (aai: scale it down)")
    p.add_argument("--pairs", type=int, help="override the shape's pair count")
    p.add_argument("--work", help="data directory shared by the ranks (default: a temporary one)")
    a = p.parse_args()
    if a.nproc > 1 and not distributed.launched():
        sys.exit(relaunch(a))
    world = distributed.init_from_env(a.device)
    threads = None if a.threads == "auto" else max(1, int(a.threads) // world.size)
    kept = not a.system_malloc and runtime.keep_freed_memory()  # as the `sslkit` command does
    start = runtime.machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        shapes = [run_shape(s, work, a.steps, a.repeats, threads, a.precision, a.device, a.sparse_reduce, a.items,
                            a.pairs, a.no_probe) for s in a.shape.split(",")]
    if world.is_main:
        print(json.dumps({"benchmark": "train_throughput", "device": a.device, "world_size": world.size,
                          "machine": start | {"loadavg_end": runtime.machine()["loadavg"]},
                          "threads_requested": a.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "library default"),
                          "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None,
                          "keep_freed_memory": kept, "shapes": shapes}, indent=1))
    distributed.shutdown()


def relaunch(a: argparse.Namespace) -> int:
    """This script on `--nproc` local processes under torchrun, sharing one data directory."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        argv, skip = [], False  # without --nproc (the ranks run one process each)
        for arg in sys.argv[1:]:
            if not (skip or arg == "--nproc" or arg.startswith("--nproc=")):
                argv.append(arg)
            skip = arg == "--nproc"
        if not a.work:
            argv += ["--work", tmp]
        per_rank = max(1, (len(runtime.usable_cpus()) if a.threads == "auto" else int(a.threads)) // a.nproc)
        env = {**os.environ, "OMP_NUM_THREADS": str(per_rank)}
        return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc-per-node={a.nproc}", __file__, *argv], env=env)


if __name__ == "__main__":
    main()
