"""`sslkit train`: one readable loop — batch softmax (eq. 6) + α · SSL InfoNCE (eq. 3, 5).

A step is index gathers on the device-resident fused feature store, one embedding_bag per entity,
one item-tower pass over [positives; view 1; view 2], two losses, sparse + dense optimizer steps.
The loop reports through `on_event(kind, payload)` and never prints; `should_stop()` lets the
caller (the CLI's signal handler) end it cleanly with a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sslkit.model import augment, losses

from sslkit.training import distributed
from sslkit.training.device import apply_threads, precision_record, resolve_device, uses_bf16

from sslkit.data import io
from sslkit.training.checkpoint import load_checkpoint, run_metadata, save_checkpoint
from sslkit.training.early_stopping import EarlyStopping
from sslkit.config import Config, dump_config
from sslkit.errors import CheckpointError, DataChangedError, ResourceError, TrainingError
from sslkit.model.towers import FusedTable, Layout, TwoTower, embed_all, fuse
from sslkit.data.profile import item_counts
from sslkit.data.store import FeatureStore, fingerprint, training_split

Event = Callable[[str, dict[str, Any]], None]


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C / SIGTERM) after saving a checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    examples_per_s: float
    validation: dict[str, float] = field(default_factory=dict)


@dataclass
class Setup:
    """Everything the loop needs, built once."""

    cfg: Config
    device: torch.device
    model: TwoTower
    optimizers: list[torch.optim.Optimizer]
    items: FusedTable
    queries: FusedTable
    train_pairs: torch.Tensor  # int32 (n, 2) on the CPU, sharing the store's (memory-mapped) array; see `batch_pairs`
    log_q: torch.Tensor | None  # float (items,) log sampling frequency
    ssl_cdf: torch.Tensor | None  # popularity sampling CDF (items,), for draws with replacement
    mask_table: torch.Tensor | None  # bool (F, F) CFM masking sets
    mask_size: int
    steps_per_epoch: int
    total_steps: int
    columns: augment.FusedColumns  # item id layout on the device (masking, dropout)
    bf16: bool = False  # towers under bf16 autocast (train.precision)
    ssl_distinct: bool = False  # draw the SSL batch without replacement (ssl.false_negatives=avoid, enough items)
    ssl_log_weights: torch.Tensor | None = None  # float (items,) CPU log popularity, for Gumbel-top-k
    world: distributed.World = field(default_factory=distributed.current)  # ranks sharing each global batch
    data_pin: dict[str, str] = field(default_factory=dict)  # store.fingerprint: saved in every checkpoint
    ssl_batch: int = 0  # items per SSL batch (0: no SSL task); at most the items it draws from (`ssl_batch_size`)
    ssl_capped_from: int | None = None  # the requested SSL batch when it was capped


def build_setup(cfg: Config, store: FeatureStore, mi_sets: list[list[int]] | None) -> Setup:
    """Model, optimizers and device tensors for a config and feature store."""
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # parameter init only; the loop uses explicit generators
    item_layout = Layout.from_specs(store.items.specs)
    query_layout = None if store.item_to_item else Layout.from_specs(store.queries.specs)
    model = TwoTower(item_layout=item_layout, query_layout=query_layout, dim=cfg.model.embedding_dim,
                     hidden=list(cfg.model.hidden), share_embeddings=cfg.model.share_embeddings).to(device)
    items = fuse(store.items, item_layout).to(device)
    queries = items if store.item_to_item else fuse(store.queries, query_layout).to(device)  # type: ignore[arg-type]
    pairs = pairs_tensor(training_split(store)[0])  # validation held out; never copied whole
    counts = torch.from_numpy(item_counts(training_split(store)[0], items.ids.shape[0])).double()
    log_q = torch.log(counts.clamp_min(1) / counts.sum()).float() if cfg.train.logq_correction else None
    popularity = cfg.ssl.item_sampling == "popularity"
    ssl_cdf = torch.cumsum(counts / counts.sum(), 0).float() if popularity else None
    k = item_layout.num_features
    mask_size = cfg.ssl.mask_size or max(1, k // 2)
    if augment.uses_ssl(cfg.ssl.aug) and cfg.ssl.aug != "so" and not 1 <= mask_size < max(k, 2):
        raise TrainingError(f"ssl.mask_size={mask_size} must be between 1 and {k - 1} for {k} item features")
    table = augment.cfm_mask_table(mi_sets, k).to(device) if mi_sets else None
    batch = min(cfg.train.batch_size, len(pairs))
    support = int((counts > 0).sum()) if popularity else items.ids.shape[0]  # items the SSL batch can hold
    world = distributed.current()
    ssl_batch, capped_from = ssl_batch_size(cfg.ssl.batch_size or batch, support, world.size)
    distinct = cfg.ssl.false_negatives == "avoid" and support >= ssl_batch
    steps_per_epoch = max(1, len(pairs) // batch)
    total = cfg.train.steps or steps_per_epoch * cfg.train.epochs
    if cfg.train.optimizer == "adagrad":
        _dense_gradients_for_small_tables(model, cfg, batch, ssl_batch)  # by the global batch: the same tables at any world size
    world.check_divisible(**{"train.batch_size": batch}, **({"ssl.batch_size": ssl_batch}
                                                            if num_views(cfg.ssl.aug) else {}))
    world.broadcast_parameters(model)
    return Setup(cfg=cfg, device=device, model=model, optimizers=make_optimizers(model, cfg), items=items,
                 queries=queries, train_pairs=pairs, log_q=log_q, ssl_cdf=ssl_cdf,
                 mask_table=table, mask_size=mask_size,
                 steps_per_epoch=steps_per_epoch, total_steps=total, columns=item_layout.columns(device),
                 bf16=uses_bf16(cfg.train.precision, device), ssl_distinct=distinct,
                 ssl_batch=ssl_batch if num_views(cfg.ssl.aug) else 0,
                 ssl_capped_from=capped_from if num_views(cfg.ssl.aug) else None,
                 ssl_log_weights=counts.log().float().cpu() if popularity and distinct else None)


def pairs_tensor(pairs: np.ndarray) -> torch.Tensor:
    """int32 (n, 2) CPU tensor over the same memory as `pairs` (a memory map stays one: no copy)."""
    with warnings.catch_warnings():  # read-only memory map: the tensor is only ever read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(pairs, dtype=np.int32))


def batch_pairs(s: Setup, rows: torch.Tensor) -> torch.Tensor:
    """The batch's (query_row, item_row) pairs as long (B, 2) on the device: one vectorized gather from
    the (memory-mapped) int32 pairs by the epoch permutation's rows; only these B rows reach the device."""
    return s.train_pairs.index_select(0, rows.cpu()).to(s.device, non_blocking=True).long()


def ssl_batch_size(requested: int, support: int, world_size: int = 1) -> tuple[int, int | None]:
    """The SSL batch: `requested`, capped at the `support` items it is drawn from (the catalog; the
    items with training pairs under popularity sampling), rounded down to a multiple of the world size.

    A batch larger than the items it draws from holds every item several times: in-batch top-1 reaches
    1.0 among the few distinct items, and the task teaches nothing. Returns (size, the requested size
    when it was capped, else None).
    """
    if requested <= support or support < 2:
        return requested, None
    return max(world_size, support - support % world_size), requested


def _dense_gradients_for_small_tables(model: TwoTower, cfg: Config, batch: int, ssl_batch: int) -> None:
    """Give a table a dense gradient when it has no more rows than a step looks up ids in it.

    Adagrad leaves rows with a zero gradient unchanged, so a dense update is the same update; it
    just costs O(rows) instead of sorting and merging the step's (more numerous) sparse entries.
    """
    item_rows = batch + num_views(cfg.ssl.aug) * ssl_batch
    lookups = {id(model.item_embedding): item_rows * model.item_embedding.layout.width}
    q = model.query_embedding
    lookups[id(q)] = lookups.get(id(q), 0) + batch * q.layout.width
    for emb in model.embeddings():
        emb.table.sparse = emb.table.num_embeddings > lookups[id(emb)]


def make_optimizers(model: TwoTower, cfg: Config) -> list[torch.optim.Optimizer]:
    """Tables with sparse gradients and everything else get their own optimizer (sparse gradients need it).

    With Adagrad, tables switched to dense gradients join the dense weights' fused optimizer: one
    kernel and one optimizer call per step for all of them (the same update, see `SparseAdagrad`).
    """
    lr = cfg.train.lr
    if cfg.train.optimizer == "adagrad":  # TF's default initial accumulator, as the paper's setup
        from sslkit.model.optim import SparseAdagrad

        fused = next(model.parameters()).device.type == "cpu"  # the same update in one kernel (CPU only)
        sparse = model.sparse_parameters()
        return ([SparseAdagrad(sparse, lr=lr, initial_accumulator_value=0.1)] if sparse else []) + [
            torch.optim.Adagrad(model.dense_parameters(), lr=lr, initial_accumulator_value=0.1, fused=fused)]
    from sslkit.model.optim import LeanSparseAdam  # torch's SparseAdam, bit for bit, on index ops

    return [LeanSparseAdam(model.sparse_parameters(), lr=lr),
            torch.optim.Adam(model.dense_parameters(), lr=lr)]


def step_loss(s: Setup, rows: torch.Tensor, gen: torch.Generator, *,
              stats: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Joint loss for one batch of training pairs (rows: long (B,) into train_pairs).

    The item tower runs once over [positives; view 1; view 2] (or [positives; SSL items] for `so`),
    gathered from the fused store in one index_select; masks and dropout rewrite the gathered ids.
    Under ``ssl.false_negatives: avoid`` the SSL batch holds distinct items where the catalog allows
    (`_sample_items`) and the SSL loss masks accidental hits otherwise (`losses.info_nce_loss`).
    With `stats` (the logged steps), the parts also hold the SSL task's diagnostics as tensors:
    ``ssl_top1`` (`losses.in_batch_top1`, hits ignored) and ``ssl_dup_rate`` (`losses.duplicate_share`).
    """
    cfg, aug, dev = s.cfg, s.cfg.ssl.aug, s.device
    pairs = batch_pairs(s, rows)
    b, n_views = len(rows), num_views(aug)
    bs = s.ssl_batch if n_views else 0  # SSL batch
    q_ids, q_dense = s.queries.gather(pairs[:, 0])
    item_rows, ssl_ids = pairs[:, 1], None
    if n_views:
        ssl_ids = _sample_items(s, bs, gen)  # (Bs,) catalog rows = item identities
        item_rows = torch.cat([item_rows, *[ssl_ids] * n_views])
    ids, dense = s.items.gather(item_rows)  # (B + views·Bs, S): fresh tensors, rewritten in place below
    if aug == "fd":
        mask = augment.feature_dropout_mask(b, len(s.columns.lengths), cfg.ssl.dropout, generator=gen).to(dev)
        ids[:b] = augment.with_defaults(ids[:b], mask, s.columns)
    elif n_views == 2:
        ids[b:] = _views(s, ids[b:b + bs], gen).flatten(0, 1)
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=s.bf16):
        # under torchrun each rank runs the towers on its rows; the outputs come back global, with gradient
        q = s.world.tower(s.model.query_vectors, q_ids, q_dense)
        v_all = s.world.tower(s.model.item_vectors, ids, dense, [b] + [bs] * n_views)
    v, *views = v_all.split([b] + [bs] * n_views)  # a split, not slices: its backward is one cat
    log_q = s.log_q.index_select(0, pairs[:, 1]) if s.log_q is not None else None
    main = losses.batch_softmax_loss(q, v, temperature=cfg.train.temperature, item_ids=pairs[:, 1], log_q=log_q,
                                     rows=s.world.rows(b))
    parts = {"main": main}
    ssl = None
    # accidental hits are masked under `avoid`; distinct draws (ssl_distinct) have none, so skip the (Bs, Bs) mask
    hit_ids = ssl_ids if cfg.ssl.false_negatives == "avoid" and not s.ssl_distinct else None
    if n_views == 1:
        ssl = losses.spread_out_loss(views[0], temperature=cfg.ssl.temperature, item_ids=hit_ids, rows=s.world.rows(bs))
    elif n_views == 2:
        ssl = losses.info_nce_loss(*views, temperature=cfg.ssl.temperature, item_ids=hit_ids, rows=s.world.rows(bs))
    if ssl is not None and ssl_ids is not None:
        parts["ssl"] = ssl
        if stats:
            parts["ssl_top1"] = losses.in_batch_top1(views[0], views[-1], item_ids=ssl_ids)
            parts["ssl_dup_rate"] = losses.duplicate_share(ssl_ids)
    return losses.joint_loss(main, ssl, alpha=cfg.ssl.alpha), parts


def train_step(s: Setup, rows: torch.Tensor, gen: torch.Generator, *,
               stats: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step on a batch of training pairs; returns the loss and its parts (`step_loss`)."""
    loss, parts = step_loss(s, rows, gen, stats=stats)
    for p in s.model.parameters():  # zero_grad(set_to_none=True) without the optimizers' per-call overhead
        p.grad = None
    loss.backward()
    s.world.reduce_gradients(s.model)  # under torchrun: the gradient of the global batch's mean loss
    for opt in s.optimizers:
        opt.step()
    return loss, parts


def _sample_items(s: Setup, n: int, gen: torch.Generator) -> torch.Tensor:
    """SSL item batch: uniform over the catalog (the paper's choice) or by training popularity.

    With `Setup.ssl_distinct` the n items are distinct: the n largest of per-item random keys, drawn
    on the CPU generator (O(catalog) per step, no host sync). Uniform keys give a uniformly random
    n-subset; popularity uses Gumbel-top-k (keys log p + Gumbel noise), i.e. n successive draws ∝
    popularity without replacement, the distribution of ``torch.multinomial(p, n, replacement=False)``.
    Otherwise the n items are i.i.d. draws with replacement.
    """
    n_items = s.items.ids.shape[0]
    if s.ssl_distinct:
        u = torch.rand(n_items, generator=gen)
        keys = u if s.ssl_log_weights is None else s.ssl_log_weights - u.log().neg_().log_()
        return keys.topk(n, sorted=False).indices.to(s.device)
    if s.ssl_cdf is None:
        return torch.randint(n_items, (n,), generator=gen).to(s.device)
    u = torch.rand(n, generator=gen).to(s.device)
    return torch.searchsorted(s.ssl_cdf, u).clamp_max(n_items - 1)


def matmul_flops_per_step(s: Setup) -> float:
    """Matmul FLOPs of one training step (one rank's share): every tower layer and logits matrix,
    forward and backward (3x forward). What `runtime.choose_threads` sizes the thread count by."""
    def tower(mlp: torch.nn.Module) -> float:
        return sum(2 * m.in_features * m.out_features for m in mlp if isinstance(m, torch.nn.Linear))
    m, cfg = s.model, s.cfg
    b = min(cfg.train.batch_size, len(s.train_pairs))
    views = num_views(cfg.ssl.aug)
    bs = (cfg.ssl.batch_size or b) if views else 0
    per_batch = 3 * (b * tower(m.query_mlp) + (b + views * bs) * tower(m.item_mlp))
    per_batch += 3 * 2 * b * b * m.output_dim + 3 * 2 * bs * bs * m.output_dim  # logits matmuls
    return per_batch / s.world.size


def num_views(aug: str) -> int:
    """Item-tower passes of the SSL task per SSL item: 0 (no SSL), 1 (`so`), 2 (two views)."""
    return 0 if not augment.uses_ssl(aug) else 1 if aug == "so" else 2


def _views(s: Setup, ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Two augmented views of fused SSL item ids (B, S) → (2, B, S): masking per `aug`, then value dropout."""
    aug = s.cfg.ssl.aug
    if aug in ("cfm", "cfm_no_dropout") and s.mask_table is None:
        raise TrainingError("CFM needs mutual information; none was computed")
    return augment.fused_views(ids, s.columns, aug=aug, generator=gen, mask_table=s.mask_table,
                               mask_size=s.mask_size, dropout=s.cfg.ssl.dropout, cfm_seed=s.cfg.ssl.cfm_seed)


def train(cfg: Config, store: FeatureStore, *, run_dir: Path, mi: dict[str, Any] | None = None,
          resume: bool = False, argv: list[str] | None = None, on_event: Event = lambda k, p: None,
          should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
    """Train a two-tower model; write config, metrics, checkpoints and a summary into `run_dir`.

    Raises:
        Interrupted: `should_stop()` turned true; a resumable checkpoint was saved first.
        TrainingError: non-finite loss (the last good checkpoint is kept), bad settings.
        CheckpointError: `resume` with a missing or incompatible checkpoint.
    """
    names = [n for n, sp in store.items.specs.items() if not sp.dense]
    mi_sets = [[names.index(f) for f in mi["mask_sets"][n]] for n in names] if mi else None
    s = build_setup(cfg, store, mi_sets)
    s.data_pin = fingerprint(store)
    if not s.world.is_main:  # under torchrun rank 0 alone logs, validates and writes the run directory
        on_event = lambda k, p: None  # noqa: E731
    order_gen, step_gen = torch.Generator().manual_seed(cfg.train.seed), torch.Generator().manual_seed(cfg.train.seed + 1)
    epoch, step_in_epoch, step = 0, 0, 0
    order_state = order_gen.get_state()
    es = EarlyStopping(cfg) if cfg.train.early_stopping.on else None
    if resume:
        progress = load_checkpoint(run_dir, s.model, s.optimizers, cfg)
        epoch, step_in_epoch, step = progress["epoch"], progress["step_in_epoch"], progress["step"]
        order_state = progress["order_rng"]
        step_gen.set_state(progress["step_rng"])
        if es is not None and "early_stopping" in progress:
            es.load(progress["early_stopping"])
            _check_can_continue(es, step, s.total_steps, run_dir)
        if s.world.is_main:
            _truncate_metrics(run_dir / "metrics.jsonl", step)
    elif s.world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    precision = "bf16" if s.bf16 else "fp32"  # what train.precision resolved to here
    threads = apply_threads(cfg.train.threads, matmul_flops_per_step(s), s.device)
    if s.world.is_main:
        io.write_json(run_dir / "config.json", dump_config(cfg))
        io.write_json(run_dir / "run.json", run_metadata(store, argv, s.device, precision)
                      | {"world_size": s.world.size, "precision_choice": precision_record(s.bf16, s.device),
                         "threads": threads.to_json()})
        io.write_json(run_dir / "vocabs.json", {e: {f: v.to_json() for f, v in vs.items()} for e, vs in store.vocabs.items()})
        if mi:
            io.write_json(run_dir / "mi.json", mi)
    val = validation_set(store, cfg)
    on_event("start", {"total_steps": s.total_steps, "steps_per_epoch": s.steps_per_epoch, "device": str(s.device),
                       "precision": precision, "cpu_bf16_flags": precision_record(s.bf16, s.device)["cpu_bf16_flags"],
                       "threads": threads.threads, "threads_reason": threads.reason,
                       "step": step, "parameters": sum(p.numel() for p in s.model.parameters()),
                       **({"ssl_batch": s.ssl_batch} if num_views(cfg.ssl.aug) == 2 else {})})
    if s.ssl_capped_from is not None:
        on_event("warning", {"message": f"ssl.batch_size {s.ssl_capped_from} is larger than the {s.ssl_batch} items "
                                        "the SSL batch is drawn from: capped at " f"{s.ssl_batch} (set ssl.batch_size "
                                        f"≤ {s.ssl_batch}, e.g. --set ssl.batch_size={max(2, s.ssl_batch // 4)}, to choose it)"})
    ssl_top1: list[float] = []  # the SSL task's in-batch top-1 at the logged steps (`ssl_task_warning`)
    batch = min(cfg.train.batch_size, len(s.train_pairs))
    validation: dict[str, float] = {}
    validated_at = -1
    stop = es is not None and es.stopped_step is not None  # resumed a run that stopped early: it is finished
    t0, done_at_start, window = time.perf_counter(), step, (time.perf_counter(), step)
    nonfinite = torch.zeros((), device=s.device)  # non-finite losses so far, counted on the device (no sync)
    with io.named_errors(run_dir / "metrics.jsonl"), \
            (run_dir / "metrics.jsonl").open("a") if s.world.is_main else open(os.devnull, "w") as log:
        while step < s.total_steps and not stop:
            order_gen.set_state(order_state)
            perm = torch.randperm(len(s.train_pairs), generator=order_gen)  # on the CPU, where the pairs are
            next_order_state = order_gen.get_state()
            while step_in_epoch < s.steps_per_epoch and step < s.total_steps:
                if s.world.any(should_stop()):  # every rank stops at the same step
                    _check_finite(s, {"nonfinite": nonfinite}, step, run_dir)
                    _save(run_dir, s, cfg, epoch, step_in_epoch, step, order_state, step_gen, es)
                    s.world.barrier()  # the checkpoint is written before any rank exits
                    raise Interrupted(f"stopped at step {step}; checkpoint saved — continue with --resume")
                rows = perm[step_in_epoch * batch:(step_in_epoch + 1) * batch]
                logged = (step + 1) % cfg.train.log_every == 0 or step + 1 == s.total_steps
                loss, parts = train_step(s, rows, step_gen, stats=logged)
                step, step_in_epoch = step + 1, step_in_epoch + 1
                nonfinite += ~torch.isfinite(loss.detach())
                # checked every step on CPU; elsewhere at logged steps and before each checkpoint (epoch ends)
                if (step % cfg.train.log_every == 0 or step == s.total_steps or _check_every_step(s.device)
                        or step_in_epoch == s.steps_per_epoch):
                    means = _check_finite(s, {"loss": loss, **parts, "nonfinite": nonfinite}, step, run_dir)
                if step % cfg.train.log_every == 0 or step == s.total_steps:
                    now = time.perf_counter()
                    rate = (step - window[1]) * batch / max(now - window[0], 1e-9)
                    window = (now, step)
                    rec = {"step": step, "epoch": epoch + step_in_epoch / s.steps_per_epoch, "loss": means["loss"],
                           **{k: means[k] for k in parts}, "examples_per_s": rate}  # global means over ranks
                    log.write(json.dumps(rec) + "\n"); log.flush()
                    on_event("step", rec)
                    if "ssl_top1" in rec:
                        ssl_top1.append(rec["ssl_top1"])
                if cfg.train.eval_every and step % cfg.train.eval_every == 0:
                    (validation, stop), validated_at = _round(s, val, step, log, on_event, es), step
                    if stop:
                        break
            if step_in_epoch >= s.steps_per_epoch:
                epoch, step_in_epoch, order_state = epoch + 1, 0, next_order_state
                if not cfg.train.eval_every and not stop:
                    (validation, stop), validated_at = _round(s, val, step, log, on_event, es), step
            if step == s.total_steps and validated_at != step:  # the summary reports the final model
                (validation, _), validated_at = _round(s, val, step, log, on_event, es), step
            if es is not None and (stop or step == s.total_steps):
                validation = _end_early_stopping(s, es, step, stop, log, on_event) or validation
            _save(run_dir, s, cfg, epoch, step_in_epoch, step, order_state, step_gen, es)
            on_event("checkpoint", {"step": step, "epoch": epoch})
    elapsed = time.perf_counter() - t0
    rate = (step - done_at_start) * batch / max(elapsed, 1e-9)
    if validated_at != step:  # resumed a finished run: nothing trained, validate what is there
        validation = _validate(s, val, step, None, on_event)
    summary = {"steps": step, "epochs": epoch + step_in_epoch / s.steps_per_epoch, "examples_per_s": rate,
               "train_seconds": elapsed, "validation": validation, "device": str(s.device)}
    if es is not None:
        summary |= es.summary(step)
    if (warning := below_toppop(validation, cfg, cold_share=val.cold_share)) is not None:
        summary["warning"] = warning
        on_event("warning", {"message": warning})
    if (ssl_note := ssl_task_warning(ssl_top1, cfg, ssl_batch=s.ssl_batch, catalog=s.items.ids.shape[0],
                                     mi=mi, capped=s.ssl_capped_from is not None)) is not None:
        summary["ssl_warning"] = ssl_note
        on_event("warning", {"message": ssl_note})
    if s.world.is_main:
        io.write_json(run_dir / "summary.json", summary)
    s.world.barrier()  # no rank leaves before rank 0 has written the run
    on_event("done", summary)
    return TrainResult(run_dir=run_dir, steps=step, epochs_done=epoch, examples_per_s=rate, validation=validation)


def _check_every_step(device: torch.device) -> bool:
    """On CPU reading the loss costs nothing; on an accelerator it would stall the queue every step."""
    return device.type == "cpu"


def _check_finite(s: Setup, values: dict[str, torch.Tensor], step: int, run_dir: Path) -> dict[str, float]:
    """`values` averaged over the ranks; raise on every rank if any rank saw a non-finite loss."""
    means = s.world.mean(values)
    if means["nonfinite"] or not math.isfinite(means.get("loss", 0.0)):
        what = f"loss became {means['loss']} at step" if not math.isfinite(means.get("loss", 0.0)) else "a loss became non-finite by step"
        kept = (f"the last good checkpoint is kept in {run_dir}" if (run_dir / "checkpoint.pt").exists()
                else "no checkpoint was written yet")
        raise TrainingError(f"{what} {step}; {kept}",
                            hint="lower --lr or raise the temperatures")
    return means


def _save(run_dir: Path, s: Setup, cfg: Config, epoch: int, step_in_epoch: int, step: int,
          order_state: torch.Tensor, step_gen: torch.Generator, es: EarlyStopping | None = None) -> None:
    if not s.world.is_main:  # one writer
        return
    save_checkpoint(run_dir, s.model, s.optimizers, cfg, {
        "epoch": epoch, "step_in_epoch": step_in_epoch, "step": step,
        "order_rng": order_state, "step_rng": step_gen.get_state(),
        **({"early_stopping": es.state()} if es is not None else {})}, data=s.data_pin)


def _round(s: Setup, val: "ValidationSet", step: int, log: Any, on_event: Event,
           es: EarlyStopping | None) -> tuple[dict[str, float], bool]:
    """One validation round: the validation metrics and whether early stopping ends training here (the same
    answer on every rank: rank 0 validates and decides, `World.any` shares it)."""
    validation = _validate(s, val, step, log, on_event)
    return validation, es is not None and s.world.any(es.observe(validation, step, s.model))


def _end_early_stopping(s: Setup, es: EarlyStopping, step: int, stopped: bool, log: Any,
                        on_event: Event) -> dict[str, float]:
    """Training ends (patience ran out, or the last step): the best round's weights go into the model that is
    saved and evaluated, and metrics.jsonl gets the event. Returns the best round's validation ({} off rank 0)."""
    if stopped:
        es.stopped_step = step
    es.ended_at = step
    es.restore(s.model)
    es.best_weights = None  # the model holds them now; the checkpoint need not carry them twice
    rec = {"step": step, "event": "early_stopping", **es.summary(step)}
    if s.world.is_main:
        log.write(json.dumps(rec) + "\n"); log.flush()
        on_event("early_stop", rec)
    return es.best_validation


def _check_can_continue(es: EarlyStopping, step: int, total: int, run_dir: Path) -> None:
    """A run that ended with an earlier step's weights restored cannot be trained further: its optimizer
    state and batch order belong to the step it ended at, its weights to another."""
    if es.ended_at is not None and es.stopped_step is None and total > step and es.best_step != step:
        raise CheckpointError(f"{run_dir}: ended at step {step} with step {es.best_step}'s weights restored "
                              "(train.early_stopping), so it cannot be continued to more steps",
                              hint="train a new run with the larger --steps/--epochs into another --out")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (and any torn last line)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step", 0) <= step:
            keep.append(line)
    io.atomic_write_text(path, "".join(f"{line}\n" for line in keep))


@dataclass
class ValidationSet:
    queries: np.ndarray  # int64 (Q,) query rows
    indptr: np.ndarray  # int64 (Q+1,)
    items: np.ndarray  # int64 (nnz,)
    seen: tuple[np.ndarray, np.ndarray] | None = None  # CSR of each query's training positives (eval.exclude_seen)
    toppop: dict[str, float] = field(default_factory=dict)  # TopPopular on this sample, the same options
    cold_share: float = 0.0  # share of the sample's pairs whose query has no training pairs


def validation_set(store: FeatureStore, cfg: Config) -> ValidationSet:
    """A fixed sample (`train.eval_queries`, seeded by `train.seed`) of the validation split's queries
    with their relevant items, scored as `sslkit eval --split validation` scores them: the query item
    excluded in item-to-item mode, the training positives too under `eval.exclude_seen`. Test pairs
    are never read."""
    from sslkit.evaluation.metrics import compute_metrics, summarize
    from sslkit.data.profile import csr_take, group_pairs, item_counts, seen_items, toppop_topk

    train, validation = training_split(store)
    q, indptr, items = group_pairs(validation)
    n = min(cfg.train.eval_queries, len(q))
    pick = np.sort(np.random.default_rng(cfg.train.seed).choice(len(q), size=n, replace=False))
    sub_ptr, sub_items = csr_take(indptr, items, pick)
    val = ValidationSet(queries=q[pick], indptr=sub_ptr, items=sub_items,
                        seen=seen_items(train, q[pick]) if cfg.eval.exclude_seen else None)
    if n:
        warm = np.isin(val.queries, train[:, 0])
        val.cold_share = float(np.diff(sub_ptr)[~warm].sum() / max(len(sub_items), 1))
    ks = [k for k in sorted(cfg.eval.k) if k <= store.items.rows - int(store.item_to_item)]  # as `_validate`
    if n and ks:
        top = toppop_topk(item_counts(train, store.items.rows), val.queries, max(ks), store.item_to_item, exclude=val.seen)
        val.toppop = {f"val_toppop_{m}": v for m, v in summarize(compute_metrics(top, sub_ptr, sub_items, ks)).items()
                      if m.startswith("recall")}
    return val


def _validate(s: Setup, val: ValidationSet, step: int, log: Any, on_event: Event) -> dict[str, float]:
    """Recall@K on the validation sample, scored as `sslkit eval --split validation` scores it (exact
    retrieval over the whole catalog, the same exclusions), with TopPopular on that sample beside it."""
    from sslkit.evaluation.evaluate import retrieve
    from sslkit.evaluation.metrics import compute_metrics, summarize

    ks = [k for k in sorted(s.cfg.eval.k) if k <= s.items.ids.shape[0] - int(s.queries is s.items)]
    if not len(val.queries) or not ks or not s.world.is_main:  # under torchrun rank 0 validates
        return {}
    s.model.eval()
    items = embed_all(s.model, s.items)
    q_ids, q_dense = s.queries.gather(torch.from_numpy(val.queries).to(s.device))
    with torch.inference_mode():
        qv = s.model.query_vectors(q_ids, q_dense)
    s.model.train()
    top = retrieve(items, qv, max(ks), index="exact", exclude_self=val.queries if s.queries is s.items else None,
                   exclude=val.seen, batch_size=s.cfg.eval.batch_size)
    per_query = compute_metrics(top, val.indptr, val.items, ks)
    result = {f"val_{key}": v for key, v in summarize(per_query).items() if key.startswith("recall")}
    result |= val.toppop
    rec = {"step": step, **result}
    if log is not None:
        log.write(json.dumps(rec) + "\n"); log.flush()
    on_event("eval", rec)
    return result


def ssl_task_warning(top1: list[float], cfg: Config, *, ssl_batch: int, catalog: int,
                     mi: dict[str, Any] | None, capped: bool = False) -> str | None:
    """One line when the SSL task's in-batch top-1 (the share of view-1 items whose nearest view-2 item
    is themselves) stayed at chance (the task learned nothing) or at 1.0 (it is trivial) over the last
    third of the logged steps, naming the likely causes; None otherwise (and for `so`, which has one view).
    "At chance": at most max(5/B, 0.01) for an SSL batch of B (chance is 1/B), judged from 6 logged steps on;
    "trivial": at least 0.99."""
    if cfg.ssl.aug in ("none", "fd", "so") or not top1 or not ssl_batch:
        return None
    late = top1[len(top1) - max(1, len(top1) // 3):]
    level = sum(late) / len(late)
    if level < 0.99 and len(top1) < 6:  # too few logged steps to call it learning nothing (train.log_every)
        return None
    ids = list((mi or {}).get("id_features") or [])
    sets = (mi or {}).get("mask_sets") or {}
    in_every = [f for f in ids if sets and all(f in m for m in sets.values())]
    if level <= max(5 / ssl_batch, 0.01):
        causes = [f"ssl.alpha {cfg.ssl.alpha:g} may be too small for the SSL gradient to shape the item tower",
                  f"ssl.temperature {cfg.ssl.temperature:g} (try 0.1–0.5)"]
        if in_every:
            causes.insert(0, f"every CFM masking set holds the id feature {in_every[0]!r}, so one view never sees "
                             "the id and the other always does (try --set ssl.cfm_id=exclude)")
        return (f"the SSL task learned nothing: its in-batch top-1 stayed at {level:.4f} (chance {1 / ssl_batch:.4f} "
                f"for an SSL batch of {ssl_batch}) over the last {len(late)} logged steps; likely causes: "
                + "; ".join(causes))
    if level >= 0.99:
        causes = []
        if capped or ssl_batch >= catalog:
            causes.append(f"the SSL batch ({ssl_batch}) holds the whole catalog ({catalog} items), so its negatives "
                          "are few: set a smaller ssl.batch_size")
        if ids and cfg.ssl.aug in ("no_mask", "rfm_no_compl"):
            causes.append(f"the id feature {ids[0]!r} reaches both views (--aug {cfg.ssl.aug} does not split the "
                          "features between the views): they match on the id alone")
        causes.append("a feature unique to each item kept in both views (mask more, or raise ssl.dropout)")
        return (f"the SSL task is trivial: its in-batch top-1 stayed at {level:.3f} over the last {len(late)} "
                "logged steps; likely causes: " + "; ".join(causes))
    return None


def below_toppop(validation: dict[str, float], cfg: Config, *, cold_share: float = 0.0) -> str | None:
    """One line when the model's validation Recall@K (largest K) is below TopPopular's on the same
    sample, naming the settings most likely to help (and, when most validation pairs come from
    queries without training pairs, that cause); None otherwise."""
    ks = [k for k in sorted(cfg.eval.k) if f"val_recall@{k}" in validation and f"val_toppop_recall@{k}" in validation]
    if not ks or validation[f"val_recall@{ks[-1]}"] >= validation[f"val_toppop_recall@{ks[-1]}"]:
        return None
    k, t = ks[-1], cfg.train
    tips = ([] if t.logq_correction else ["--set train.logq_correction=true"]) + [
        f"another --lr (now {t.lr:g})", f"another --set train.temperature=0.05..0.2 (now {t.temperature:g})", "more --epochs"]
    return (f"validation Recall@{k} {validation[f'val_recall@{k}']:.4f} is below TopPopular's "
            f"{validation[f'val_toppop_recall@{k}']:.4f} on the same queries; most likely to help: " + ", ".join(tips)
            + ("" if cold_share < 0.5 else
               f"; {cold_share:.0%} of the validation pairs come from queries with no training pairs (cold queries: "
               "their id embeddings are untrained), where TopPopular is hard to beat — split.method: leave_last_out "
               "holds out each query's latest pairs instead"))


def run_training(cfg: Config, *, run_dir: Path, resume: bool = False, overwrite: bool = False,
                 argv: list[str] | None = None, log: Callable[[str], None] = lambda _: None,
                 on_event: Event = lambda k, p: None, stop_on_signals: bool = False) -> TrainResult:
    """Everything `sslkit train` does: run-directory checks and lock, resume checks, feature store,
    MI for CFM, signals.

    Raises:
        LockedError: another process is writing `run_dir`.
        CheckpointError: `resume` with other settings or data (DataChangedError) than the checkpoint's.
    """
    from sslkit.errors import ConfigError

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other", hint="pick one")
    check_out_dir(run_dir)
    has_run = (run_dir / "checkpoint.pt").exists()
    if resume and not has_run:
        raise TrainingError(f"{run_dir}: nothing to resume (no checkpoint.pt)", hint="drop --resume to start a new run")
    if has_run and not (resume or overwrite):
        raise TrainingError(f"{run_dir}: already holds a trained run",
                            hint="use --resume to continue it, --overwrite to replace it, or another --out")
    lock = io.dir_lock(run_dir) if distributed.current().is_main else contextlib.nullcontext()
    with lock:  # one writer per run directory, from the first check to the last write
        saved = resume_state(run_dir, cfg) if resume else None
        store = distributed.load_store(cfg, log)  # under torchrun: built once, the same on every rank (checked)
        if saved is not None:
            check_same_data(run_dir, saved, store)
        check_model_size(cfg, store)
        return _train_with_signals(cfg, store, run_dir=run_dir, resume=resume, argv=argv, log=log,
                                   on_event=on_event, stop_on_signals=stop_on_signals)


def check_out_dir(run_dir: Path) -> None:
    """--out must be a directory or not exist yet, and not lie under a file (checked before any work)."""
    for p in [run_dir, *run_dir.parents]:
        if p.exists():
            if not p.is_dir():
                raise TrainingError(f"{run_dir}: {'is' if p == run_dir else f'lies under {p}, which is'} a file, "
                                    "not a directory", hint="choose another --out")
            return


# settings a resumed run may change: how long it runs, how it logs and validates, where files live
RESUMABLE = ("train.steps", "train.epochs", "train.log_every", "train.eval_every", "train.eval_queries",
             "train.device", "train.threads", "eval.", "cache_dir", "base_dir", "name", "ssl.mi_path")


def resume_state(run_dir: Path, cfg: Config) -> dict[str, Any]:
    """The checkpoint to resume, refused (before anything is written) when a setting that changes the
    run's trajectory differs from the one it was trained with."""
    from sslkit.training.checkpoint import read_checkpoint

    state = read_checkpoint(run_dir)
    saved, now = _flat(state["config"]), _flat(dump_config(cfg))
    # keys the checkpoint lacks are settings added to sslkit since: their defaults keep the old behaviour
    # (a feature of the schema's own is never such a key)
    keys = sorted(set(saved) | {k for k in now if ".features." in k})
    diffs = [f"{k} {_short(saved.get(k))} → {_short(now.get(k))}" for k in keys
             if saved.get(k) != now.get(k) and not k.startswith(RESUMABLE)]
    if diffs:
        raise CheckpointError(f"{run_dir}: cannot resume with different settings: {'; '.join(diffs[:6])}"
                              + (f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else ""),
                              hint="resume with the run's settings (only --steps/--epochs may change), "
                                   "or train into a new --out")
    return state


def check_same_data(run_dir: Path, state: dict[str, Any], store: FeatureStore) -> None:
    """Refuse to resume on data other than the data the checkpoint was trained on."""
    from sslkit.data.store import describe_change

    pinned = state.get("data") or {}
    now = fingerprint(store)
    if pinned and pinned != now:
        raise DataChangedError(f"{run_dir}: cannot resume: the data changed since this run started "
                               f"({describe_change(pinned, now)} differ)",
                               hint="restore the original data, or train into a new --out")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
    return out


def _short(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 40 else text[:39] + "…"


def check_model_size(cfg: Config, store: FeatureStore) -> None:
    """Refuse a model whose weights, gradients and optimizer state cannot fit this machine's memory
    (`--set model.hidden=[4000000000]`), before allocating it."""
    d = cfg.model.embedding_dim
    params = 0
    for specs in [store.items.specs] + ([] if store.item_to_item else [store.queries.specs]):
        width = sum(1 if sp.dense else d for sp in specs.values())
        params += sum(sp.num_embeddings * d for sp in specs.values())
        for out in cfg.model.hidden:
            params += 2 * (width * out + out)  # query and item towers
            width = out
    need = params * 4 * 3  # fp32 weights, gradients, optimizer state
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise ResourceError(f"model.hidden={list(cfg.model.hidden)}, model.embedding_dim={d}: the model would need "
                            f"about {need / 2**30:,.1f} GiB (weights, gradients, optimizer state); "
                            f"this machine has {have / 2**30:,.1f} GiB",
                            hint="use smaller model.hidden / model.embedding_dim")


def _train_with_signals(cfg: Config, store: FeatureStore, *, run_dir: Path, resume: bool, argv: list[str] | None,
                        log: Callable[[str], None], on_event: Event, stop_on_signals: bool) -> TrainResult:
    import signal

    mi = training_mi(cfg, store, log) if cfg.ssl.aug in ("cfm", "cfm_no_dropout") else None
    if resume and mi and (run_dir / "mi.json").exists():
        try:
            before = io.read_json(run_dir / "mi.json").get("mask_sets")
        except (OSError, ValueError, AttributeError):
            before = None
        if before != mi["mask_sets"]:
            raise CheckpointError(f"{run_dir}: cannot resume: the CFM masking sets differ from the run's mi.json",
                                  hint=f"resume with --mi {run_dir / 'mi.json'}, or train into a new --out")
    stop = {"flag": False}
    previous: dict[int, Any] = {}
    if stop_on_signals:
        def _handler(signum: int, frame: Any) -> None:
            stop["flag"] = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handler)
    try:
        return train(cfg, store, run_dir=run_dir, mi=mi, resume=resume, argv=argv, on_event=on_event,
                     should_stop=lambda: stop["flag"])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def training_mi(cfg: Config, store: FeatureStore, log: Callable[[str], None]) -> dict[str, Any]:
    """CFM's masking sets: from `ssl.mi_path` when given (checked against the schema), else computed."""
    from sslkit.errors import ConfigError
    from sslkit.data.mi import catalog_mi

    names = [n for n, sp in store.items.specs.items() if not sp.dense]
    if cfg.ssl.mi_path:
        path = cfg.resolve(cfg.ssl.mi_path) or cfg.ssl.mi_path
        try:
            obj = io.read_json(path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"ssl.mi_path {path}: cannot read MI JSON ({e})", hint="write it with `sslkit mi SCHEMA --out FILE`")
        sets = obj.get("mask_sets") if isinstance(obj, dict) else None
        if not isinstance(sets, dict) or not all(isinstance(v, list) and v for v in sets.values()):
            raise ConfigError(f"ssl.mi_path {path}: not an MI file (expected an object with 'mask_sets': feature → list of features)",
                              hint="write it with `sslkit mi SCHEMA --out FILE`")
        unknown = sorted({str(f) for v in sets.values() for f in v} - set(names))
        if sorted(sets) != sorted(names) or unknown:
            extra = f" (unknown: {', '.join(unknown[:5])})" if unknown else ""
            raise ConfigError(f"ssl.mi_path {path}: its features do not match this schema's item features{extra}",
                              hint="recompute it with `sslkit mi SCHEMA --out FILE`")
        return _place_id(obj, cfg, store, log)
    _, obj = catalog_mi(store, mask_size=cfg.ssl.mask_size, normalized=cfg.ssl.mi == "nmi")
    log("computed mutual information for CFM: " + "; ".join(f"{k}→{','.join(v[1:])}" for k, v in obj["mask_sets"].items()))
    return _place_id(obj, cfg, store, log)


def _place_id(obj: dict[str, Any], cfg: Config, store: FeatureStore, log: Callable[[str], None]) -> dict[str, Any]:
    """The masking sets with the id feature placed as `ssl.cfm_id` says (`mi.cfm_id_sets`); the id
    features are recorded in the MI object (`id_features`) for the SSL task's diagnostics."""
    from sslkit.errors import ConfigError
    from sslkit.data.mi import cfm_id_sets, id_features

    if "entropy" not in obj:  # an MI file without matrices: its sets are used as given
        return obj
    single = [i for i, f in enumerate(obj["features"]) if f in store.items.specs and not store.items.specs[f].multi_valued]
    ids = id_features([obj["features"][i] for i in single], [obj["entropy"][i] for i in single], store.items.rows)
    obj = {**obj, "id_features": ids, "cfm_id": cfg.ssl.cfm_id}
    if cfg.ssl.cfm_id == "paper" or not ids:
        return obj
    if "mi" not in obj or "nmi" not in obj:
        raise ConfigError(f"ssl.cfm_id={cfg.ssl.cfm_id} needs the MI matrices, which ssl.mi_path lacks",
                          hint="write the MI file with `sslkit mi SCHEMA --out FILE`")
    matrix = obj["nmi"] if obj.get("measure") == "nmi" else obj["mi"]
    obj["mask_sets"] = cfm_id_sets(np.asarray(matrix), obj["features"], obj.get("mask_size"), ids, cfg.ssl.cfm_id)
    log(f"CFM masking sets with ssl.cfm_id={cfg.ssl.cfm_id} (id: {', '.join(ids)}): "
        + "; ".join(f"{k}→{','.join(v[1:]) or '(alone)'}" for k, v in obj["mask_sets"].items()))
    return obj
