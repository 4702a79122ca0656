"""One rank of tests/test_distributed.py, started by torchrun: `distributed_worker.py SCHEMA OUT STEPS`.

For each way of summing sparse gradients it runs one step (loss, parts and reduced gradients) and
`STEPS` training steps on fixed global batches, and saves what it got to OUT/rank{R}-{mode}.pt; then it
checks the errors ranks give when they disagree, into OUT/rank{R}-errors.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from sslkit.training import distributed
from sslkit.config import load_config
from sslkit.errors import SslkitError
from sslkit.training.train import build_setup, step_loss, train_step, training_mi

SETS = ["ssl.aug=cfm", "train.batch_size=64", "ssl.batch_size=32", "train.device=cpu", "model.hidden=[32,16]",
        "model.embedding_dim=8", "train.logq_correction=true"]


def run_steps(schema: Path, steps: int) -> dict:
    """Loss, parts and gradients of one step, then the weights after `steps` more (fixed batches)."""
    cfg = load_config(schema, SETS)
    store = distributed.load_store(cfg, lambda _: None)
    mi = training_mi(cfg, store, lambda _: None)
    names = [n for n, sp in store.items.specs.items() if not sp.dense]
    s = build_setup(cfg, store, [[names.index(f) for f in mi["mask_sets"][n]] for n in names])
    gen = torch.Generator().manual_seed(5)
    order = torch.randperm(len(s.train_pairs), generator=torch.Generator().manual_seed(3))
    loss, parts = step_loss(s, order[:64], gen, stats=True)
    loss.backward()
    s.world.reduce_gradients(s.model)
    out = {"means": s.world.mean({"loss": loss, **parts}),
           "grads": {n: p.grad.to_dense() for n, p in s.model.named_parameters()}}
    for i in range(steps):
        train_step(s, order[64 * (i + 1):64 * (i + 2)], gen)
    out["weights"] = {n: p.detach().clone() for n, p in s.model.named_parameters()}
    return out


def main() -> None:
    schema, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    world = distributed.init_from_env("cpu")
    for mode in ("all_reduce", "all_gather", "dense"):
        world.sparse = mode  # type: ignore[assignment]
        torch.save(run_steps(schema, steps), out / f"rank{world.rank}-{mode}.pt")
    errors = {}
    store = distributed.load_store(load_config(schema, SETS), lambda _: None)
    for name, sets in {"data": [f"split.seed={world.rank}"], "config": [f"ssl.alpha={world.rank}"],
                       "batch": ["train.batch_size=63"]}.items():
        try:
            cfg = load_config(schema, SETS + sets)
            build_setup(cfg, store, None) if name == "batch" else distributed.load_store(cfg, lambda _: None)
        except SslkitError as e:
            errors[name] = [type(e).__name__, e.line()]
    (out / f"rank{world.rank}-errors.json").write_text(json.dumps(errors))
    distributed.shutdown()


if __name__ == "__main__":
    main()
