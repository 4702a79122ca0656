"""Losses of the method (Yao et al., CIKM 2021, eq. 3, 5, 6) as pure functions.

Every input embedding is expected to be L2-normalized already, so a dot product is the cosine
similarity ``s(., .)`` of the paper. Logits are always computed in float32 (inputs are upcast and
autocast is disabled locally), so bf16/fp16 embeddings from a mixed-precision tower give the same
loss as their float32 copies.

| function             | paper                                                      |
| -------------------- | ---------------------------------------------------------- |
| `batch_softmax_loss` | eq. 6, in-batch softmax of the main (query → item) task     |
| `info_nce_loss`      | eq. 3, SSL contrastive loss between two augmented views     |
| `spread_out_loss`    | §3.1 "connection with spread-out": eq. 3 with h = g = id    |
| `joint_loss`         | eq. 5, L = L_main + alpha · L_self                          |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["batch_softmax_loss", "info_nce_loss", "spread_out_loss", "joint_loss"]


def masked_logit_value(dtype: torch.dtype) -> float:
    """A large negative but finite logit for masked entries, representable in `dtype`.

    ``-inf`` would be exact too, but a finite value keeps every gradient finite even if a whole row
    were masked. The value is -1e9, or half the most negative finite number of low-range dtypes
    (float16: -32752), so it never overflows to ``-inf`` in the logits' dtype.

    Args:
        dtype: floating dtype of the logits.

    Returns:
        The fill value (python float).
    """
    return -min(1e9, torch.finfo(dtype).max / 2)


def similarity_logits(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Temperature-scaled cosine logits ``a @ b.T / temperature`` in float32.

    Args:
        a: (B, d) L2-normalized rows (any floating dtype).
        b: (N, d) L2-normalized rows (any floating dtype).
        temperature: tau > 0.

    Returns:
        (B, N) float32 logits, ``[i, j] = <a_i, b_j> / tau``.

    Raises:
        ValueError: non-positive temperature or mismatched embedding widths.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (B, d) and (N, d) embeddings, got {tuple(a.shape)} and {tuple(b.shape)}")
    with torch.autocast(device_type=a.device.type, enabled=False):
        return (a.float() @ b.float().T) / temperature


def diagonal_cross_entropy(logits: Tensor) -> Tensor:
    """Mean over rows of ``-log softmax(logits[i])[i]``: row i's positive is column i.

    Args:
        logits: (B, B) logits (cast to float32 if needed).

    Returns:
        () float32 mean cross-entropy.
    """
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits.float(), target)


def accidental_hits(item_ids: Tensor) -> Tensor:
    """Off-diagonal pairs of rows that hold the same item ("accidental hits").

    Args:
        item_ids: (B,) integer item identities of the in-batch items.

    Returns:
        (B, B) bool, True at ``[i, j]`` when ``j != i`` and ``item_ids[j] == item_ids[i]``.
    """
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    eye = torch.eye(len(item_ids), dtype=torch.bool, device=item_ids.device)
    return same & ~eye


def batch_softmax_loss(query: Tensor, item: Tensor, *, temperature: float, item_ids: Tensor | None = None,
                       log_q: Tensor | None = None) -> Tensor:
    """In-batch softmax of the main task (eq. 6): row i's positive is item i, the rest are negatives.

    ``logits = query @ item.T / tau``; with `log_q` the sampling-bias (logQ) correction of Yi et
    al. (RecSys'19) subtracts ``log_q[j]`` from every entry of column j; with `item_ids` the
    off-diagonal copies of row i's own item are then masked out of row i (they are not negatives).
    The diagonal is never masked.

    Args:
        query: (B, d) L2-normalized query embeddings (any floating dtype).
        item: (B, d) L2-normalized embeddings of the positive items, aligned with `query`.
        temperature: tau > 0.
        item_ids: optional (B,) integer item identities, for accidental-hit removal.
        log_q: optional (B,) log sampling probability of each in-batch item.

    Returns:
        () float32 mean cross-entropy over the B rows.

    Raises:
        ValueError: mismatched shapes or a non-positive temperature.
    """
    if query.shape != item.shape:
        raise ValueError(f"query and item must have the same (B, d) shape, got {tuple(query.shape)} "
                         f"and {tuple(item.shape)}")
    n = query.shape[0]
    for name, t in (("item_ids", item_ids), ("log_q", log_q)):
        if t is not None and tuple(t.shape) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    logits = similarity_logits(query, item, temperature)
    if log_q is not None:
        logits = logits - log_q.to(device=logits.device, dtype=logits.dtype).unsqueeze(0)
    if item_ids is not None:
        hits = accidental_hits(item_ids.to(logits.device))
        logits = logits.masked_fill(hits, masked_logit_value(logits.dtype))
    return diagonal_cross_entropy(logits)


def info_nce_loss(z1: Tensor, z2: Tensor, *, temperature: float) -> Tensor:
    """SSL contrastive loss (eq. 3), one direction exactly as in the paper.

    ``-1/N Σ_i log( exp(s(z1_i, z2_i)/tau) / Σ_j exp(s(z1_i, z2_j)/tau) )``: view 1 of item i
    must pick view 2 of item i among the batch's view-2 embeddings.

    Args:
        z1: (B, d) L2-normalized embeddings of view 1 (any floating dtype).
        z2: (B, d) L2-normalized embeddings of view 2, aligned with `z1`.
        temperature: tau > 0.

    Returns:
        () float32 mean over i.

    Raises:
        ValueError: mismatched shapes or a non-positive temperature.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same (B, d) shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    return diagonal_cross_entropy(similarity_logits(z1, z2, temperature))


def spread_out_loss(z: Tensor, *, temperature: float) -> Tensor:
    """The `so` variant: eq. 3 with identity augmentations, i.e. ``info_nce_loss(z, z)``.

    The positive logit is ``1/tau`` for every row, so the loss only pushes different items apart
    (the softmax form of spread-out regularization, paper §3.1).

    Args:
        z: (B, d) L2-normalized item embeddings.
        temperature: tau > 0.

    Returns:
        () float32 mean over rows.
    """
    return info_nce_loss(z, z, temperature=temperature)


def joint_loss(main: Tensor, ssl: Tensor | None, *, alpha: float) -> Tensor:
    """Multi-task objective (eq. 5): ``L = L_main + alpha · L_self``.

    Args:
        main: () main-task loss.
        ssl: () SSL loss, or None when the augmentation has no SSL task (then `main` is returned).
        alpha: SSL loss multiplier.

    Returns:
        () the joint loss.
    """
    return main if ssl is None else main + alpha * ssl
