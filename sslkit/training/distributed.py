"""Data-parallel training on `torch.distributed`, launched by `torchrun` (DESIGN §7).

One model is replicated on every rank (process); a step's global batch of B pairs is split into W
equal slices, one per rank. Every rank runs the same integer work on the whole global batch (pair
rows, the SSL item sample, masks and dropout, all drawn from generators seeded identically on every
rank), then its towers run on its slice only. The tower outputs are all-gathered *with gradient*
(`torch.distributed.nn.functional.all_gather`), so the batch softmax (eq. 6) and InfoNCE (eq. 3)
see all B rows as negatives, exactly as in one process; each rank's loss covers its own rows
(`losses.*(rows=...)`). Item ids (accidental hits) and logQ need no gather: every rank holds the
global batch's rows already. The all-gather's backward sums every rank's gradient into each slice, and
averaging the parameter gradients over ranks then gives the gradient of the global mean loss: the
single-process step, up to float summation order (tests/test_distributed.py).

Gradients are reduced once per step after the backward pass (the model is small next to its
activations, so there is nothing to overlap): the dense ones (MLPs, small tables) in one flattened
`all_reduce`, each sparse embedding-table gradient by `sparse` below. `DistributedDataParallel`
is not used because it cannot reduce sparse gradients on NCCL, and giving the tables dense
gradients would move the whole table (2.4M × 64 floats = 614 MB at the paper's AAI shape) per step.

Because every rank draws the same random numbers as a single process would, a run's trajectory does
not depend on the number of ranks: `--resume` works across world sizes (and from or to one process)
whenever the batch sizes divide by the new world size.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Literal

import torch
from torch import Tensor

SparseReduce = Literal["all_reduce", "all_gather", "dense"]


@dataclass
class World:
    """This process's place in a data-parallel job; `World()` is the single-process case.

    `sparse` is how sparse table gradients are summed over ranks: ``all_reduce`` (torch's sparse
    all-reduce, gloo only), ``all_gather`` (every rank's coalesced rows and values gathered and summed
    locally: the same algorithm, on any backend) or ``dense`` (densify the table gradient first: the
    volume of the whole table, for comparison).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    sparse: SparseReduce = "all_reduce"
    control: Any = None  # gloo group for CPU-side agreement (stop flags, store keys); None = default group

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """The rank that logs, validates and writes the run directory."""
        return self.rank == 0

    def rows(self, n: int) -> slice | None:
        """This rank's rows of a global batch of `n` rows (None in one process: all of them)."""
        if not self.active:
            return None
        share = n // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def tower(self, fn: Callable[[Tensor, Tensor], Tensor], ids: Tensor, dense: Tensor,
              segments: list[int] | None = None) -> Tensor:
        """`fn(ids, dense)` for a global batch, each rank running it on its rows only.

        `ids` (N, S) and `dense` (N, n_dense) hold the global rows as consecutive segments (e.g.
        [positives; view 1; view 2], N = sum(segments)); this rank takes its slice of each, runs `fn`
        once over them, and the outputs of all ranks are all-gathered with gradient back into global
        order: (N, d), identical on every rank.
        """
        if not self.active:
            return fn(ids, dense)
        from torch.distributed.nn.functional import all_gather

        segments = segments or [ids.shape[0]]
        starts = [sum(segments[:i]) for i in range(len(segments))]
        local = [n // self.size for n in segments]
        take = torch.cat([torch.arange(st + self.rank * k, st + (self.rank + 1) * k, device=ids.device)
                          for st, k in zip(starts, local)])
        out = fn(ids.index_select(0, take), dense.index_select(0, take))  # (N / W, d)
        per_rank = [o.split(local) for o in all_gather(out)]  # W × segments pieces, with gradient
        return torch.cat([per_rank[r][i] for i in range(len(segments)) for r in range(self.size)])

    def reduce_gradients(self, model: torch.nn.Module) -> None:
        """Average every parameter's gradient over the ranks (in place; sparse ones stay sparse)."""
        if not self.active:
            return
        import torch.distributed as dist

        dense = [p.grad for p in model.parameters() if p.grad is not None and not p.grad.is_sparse]
        if dense:
            flat = torch.cat([g.reshape(-1) for g in dense])
            dist.all_reduce(flat)
            flat.div_(self.size)
            for g, f in zip(dense, flat.split([g.numel() for g in dense])):
                g.copy_(f.view_as(g))
        for p in model.parameters():
            if p.grad is not None and p.grad.is_sparse:
                p.grad = self._sparse_sum(p.grad).div_(self.size)

    def _sparse_sum(self, grad: Tensor) -> Tensor:
        """The sum over ranks of a sparse (rows, D) gradient, coalesced."""
        import torch.distributed as dist

        g = grad.coalesce()
        if self.sparse == "dense":
            full = g.to_dense()
            dist.all_reduce(full)
            return full.to_sparse(1)  # the rows some rank touched (a row summing to exactly 0 is dropped: no update either way)
        if self.sparse == "all_reduce":  # gloo's sparse all-reduce (in place)
            dist.all_reduce(g)
            return g.coalesce()
        idx, val = g.indices()[0], g.values()  # (n,), (n, D)
        sizes = [torch.zeros(1, dtype=torch.long, device=idx.device) for _ in range(self.size)]
        dist.all_gather(sizes, torch.tensor([idx.numel()], device=idx.device))
        counts = [int(s) for s in torch.cat(sizes).tolist()]
        m = max(counts)
        idx_p = torch.zeros(m, dtype=idx.dtype, device=idx.device)
        idx_p[:len(idx)] = idx
        val_p = val.new_zeros((m, val.shape[1]))
        val_p[:len(idx)] = val
        all_idx = [torch.empty_like(idx_p) for _ in range(self.size)]
        all_val = [torch.empty_like(val_p) for _ in range(self.size)]
        dist.all_gather(all_idx, idx_p)
        dist.all_gather(all_val, val_p)
        rows = torch.cat([i[:c] for i, c in zip(all_idx, counts)])
        vals = torch.cat([v[:c] for v, c in zip(all_val, counts)])
        return torch.sparse_coo_tensor(rows.unsqueeze(0), vals, g.shape).coalesce()

    def mean(self, values: dict[str, Tensor]) -> dict[str, float]:
        """Scalar tensors averaged over the ranks, as floats (one collective; a host sync)."""
        t = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(t)
            t = t / self.size
        return dict(zip(values, t.tolist()))

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any (e.g. a stop signal that reached only some)."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier(group=self.control)

    def broadcast_parameters(self, model: torch.nn.Module) -> None:
        """Rank 0's parameters on every rank (they already agree when seeds do; this makes it certain)."""
        if self.active:
            import torch.distributed as dist

            with torch.no_grad():
                for p in model.parameters():
                    dist.broadcast(p.data, 0)

    def check_same(self, what: str, value: Any, hint: str) -> None:
        """Raise the same one-line TrainingError on every rank when the ranks' `value`s differ."""
        if not self.active:
            return
        import torch.distributed as dist

        from sslkit.errors import TrainingError

        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value, group=self.control)
        for r, v in enumerate(values):
            if v != values[0]:
                raise TrainingError(f"ranks disagree on {what}: rank 0 has {values[0]}, rank {r} has {v}", hint=hint)

    def check_divisible(self, **sizes: int) -> None:
        """Batch sizes must split evenly over the ranks (the all-gather needs equal slices)."""
        from sslkit.errors import ConfigError

        for key, n in sizes.items():
            if n % self.size:
                raise ConfigError(f"{key}={n} does not split over {self.size} ranks",
                                  hint=f"use a multiple of {self.size} (a global batch is divided evenly between ranks)")


_current = World()


def current() -> World:
    """The world this process trains in (`World()` unless `init_from_env` joined a job)."""
    return _current


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE) with more than one process?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto", *, timeout_s: float = 1800) -> World:
    """Join the job torchrun started (env:// rendezvous): NCCL when training on CUDA, else gloo.

    Each rank trains on `cuda:LOCAL_RANK`. A no-op returning `World()` outside such a job.

    Raises:
        TrainingError: train.device=cuda without CUDA.
    """
    global _current
    if not launched():
        return _current
    import torch.distributed as dist

    from sslkit.training.device import resolve_device

    cuda = resolve_device(device).type == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    # the documented autograd all-gather; its suggested replacement lives in a private module
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                            category=FutureWarning)
    backend = str(dist.get_backend())
    _current = World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, backend=backend,
                     sparse="all_reduce" if backend == "gloo" else "all_gather",
                     control=dist.new_group(backend="gloo") if backend != "gloo" else None)
    return _current


def shutdown() -> None:
    """Leave the job (the end of `sslkit train` under torchrun)."""
    global _current
    if _current.active:
        import torch.distributed as dist

        dist.destroy_process_group()
    _current = World()


def load_store(cfg: Any, log: Callable[[str], None]) -> Any:
    """The feature store on every rank: rank 0 builds and caches it, then each node's first rank,
    then the rest load that cache; all ranks must end with the same store key (the same data)."""
    from sslkit.errors import ConfigError
    from sslkit.data.store import load_or_build, reads_stdin

    w = current()
    if not w.active:
        return load_or_build(cfg, log=log)
    if reads_stdin(cfg):
        raise ConfigError("several ranks cannot share standard input", hint="write the data to a file and name it in the schema")
    store = None
    for turn in (w.rank == 0, w.rank != 0 and w.local_rank == 0, w.rank != 0 and w.local_rank != 0):
        if turn:
            store = load_or_build(cfg, log=log if w.is_main else lambda _: None)
        w.barrier()
    hint = "start every rank with the same schema, flags, --set overrides and data files"
    w.check_same("the feature store (schema sections + data files)", getattr(store, "key", None), hint=hint)
    w.check_same("the training config", _digest(cfg), hint=hint)
    return store


def _digest(cfg: Any) -> str:
    import hashlib
    import json

    from sslkit.config import dump_config

    return hashlib.sha256(json.dumps(dump_config(cfg), sort_keys=True).encode()).hexdigest()[:12]


@contextlib.contextmanager
def joined(device: str) -> Iterator[World]:
    """`with joined(device) as world:` — join torchrun's job for the block (no-op in one process), leave after."""
    try:
        yield init_from_env(device)
    finally:
        shutdown()


def launch(nproc: int, argv: list[str]) -> int:
    """`sslkit train --nproc N`: run this same command line under torchrun on N local processes.

    `argv` is the command line after the program name; `--nproc` is dropped from it. Each process
    gets ``OMP_NUM_THREADS = cores // N`` unless set. Returns the exit code of the first rank that
    failed (130 when the ranks stopped on a signal after saving), 0 on success.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    rest, skip = [], False
    for arg in argv:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        rest.append(arg)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "sslkit", *rest]))
    except ChildFailedError as e:
        code = e.get_first_failure()[1].exitcode
        return 130 if code in (130, -2, -15) else code if code > 0 else 1
    except SignalException:  # the launcher itself was interrupted; the ranks saved and stopped
        return 130
    return 0
