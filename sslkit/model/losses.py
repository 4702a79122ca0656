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

The paper's eq. 3 counts every other row of the batch as a negative. When the same item sits in two
rows of an SSL batch (small catalogs, items drawn with replacement), the second copy's view is
nearly the positive: `info_nce_loss` and `spread_out_loss` take the rows' `item_ids` and mask those
accidental hits, as `batch_softmax_loss` does for the main task. `in_batch_top1` and
`duplicate_share` are the SSL task's logged diagnostics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["batch_softmax_loss", "info_nce_loss", "spread_out_loss", "joint_loss", "accidental_hits",
           "in_batch_top1", "duplicate_share"]


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


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _start(rows: slice | None) -> int:
    return (rows.start or 0) if rows is not None else 0


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (B, d) and (N, d) embeddings, got {tuple(a.shape)} and {tuple(b.shape)}")


class _DiagonalSoftmaxCE(torch.autograd.Function):
    """``mean_i −log softmax(a @ b.T / tau − log_q)[i, i]`` with masked entries, and its gradient.

    The same value as autograd's ``cross_entropy((a @ b.T / tau − log_q).masked_fill(mask, −1e9),
    arange(B))`` (the tests hold them equal, gradients included), in fewer and cheaper kernels, which is what decides a small model's step time: 1/tau rides in the matmul's
    ``alpha`` and −log_q in its bias (one ``addmm``), and the mask is filled in place. The backward
    is the softmax's closed form, ``dL/dlogits = (softmax − I) / B``, from the saved log-softmax in
    one ``exp``: masked entries get exactly 0, so no mask pass, and the scale ``g / (B·tau)`` is
    applied to the (B, d) products, not the (B, N) matrix.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, scale: float, bias: Tensor | None,  # type: ignore[override]
                mask: Tensor | None, offset: int = 0) -> Tensor:
        dtype = torch.promote_types(a.dtype, torch.float32)
        a32, b32 = a.to(dtype), b.to(dtype)
        if bias is None:
            logits = torch.mm(a32, b32.T).mul_(scale)
        else:
            logits = torch.addmm(bias.to(dtype), a32, b32.T, alpha=scale)
        if mask is not None:
            logits.masked_fill_(mask, masked_logit_value(dtype))
        log_p = torch.log_softmax(logits, 1)
        ctx.save_for_backward(a32, b32, log_p)
        ctx.scale, ctx.dtypes, ctx.offset = scale, (a.dtype, b.dtype), offset
        return -log_p.diagonal(offset).mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        a32, b32, log_p = ctx.saved_tensors
        p = log_p.exp()  # softmax; masked entries are exactly 0
        p.diagonal(ctx.offset).sub_(1)
        c = grad * (ctx.scale / p.shape[0])
        grad_a = torch.mm(p, b32).mul_(c).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        grad_b = torch.mm(p.T, a32).mul_(c).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None, None, None


def diagonal_softmax_ce(a: Tensor, b: Tensor, *, temperature: float, log_q: Tensor | None = None,
                        mask: Tensor | None = None, offset: int = 0) -> Tensor:
    """Mean over rows i of ``−log softmax(a @ b.T / tau − log_q)[i, offset + i]``; row i's positive is
    column ``offset + i`` (``offset`` > 0: `a` holds one rank's rows of a global batch, `b` all of it).

    Computed in float32 whatever the inputs' dtype (float64 stays float64) and outside autocast.

    Args:
        a: (b, d) L2-normalized rows.
        b: (B, d) L2-normalized rows; row i of `a` is aligned with row ``offset + i`` (b + offset <= B).
        temperature: tau > 0.
        log_q: optional (B,) value subtracted from every entry of column j.
        mask: optional (b, B) bool; True entries are removed from their row's softmax (the
            positives ``[i, offset + i]`` must stay False).
        offset: column of row 0's positive.

    Returns:
        () mean cross-entropy.
    """
    _check_temperature(temperature)
    _check_pair(a, b)
    bias = None if log_q is None else -log_q.to(a.device).unsqueeze(0)
    with torch.autocast(device_type=a.device.type, enabled=False):
        return _DiagonalSoftmaxCE.apply(a, b, 1.0 / temperature, bias, mask, offset)


def accidental_hits(item_ids: Tensor, rows: slice | None = None) -> Tensor:
    """Off-diagonal pairs of rows that hold the same item ("accidental hits").

    Args:
        item_ids: (B,) integer item identities of the in-batch items.
        rows: only these rows (a rank's share of a global batch); default all.

    Returns:
        (b, B) bool, True at ``[i, j]`` when ``j != r + i`` and ``item_ids[j] == item_ids[r + i]``,
        r = ``rows.start`` (b = B and r = 0 without `rows`).
    """
    rows = rows or slice(0, len(item_ids))
    same = item_ids[rows].unsqueeze(1) == item_ids.unsqueeze(0)
    same.diagonal(rows.start or 0).fill_(False)
    return same


def batch_softmax_loss(query: Tensor, item: Tensor, *, temperature: float, item_ids: Tensor | None = None,
                       log_q: Tensor | None = None, rows: slice | None = None) -> Tensor:
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
        rows: the loss over these rows only (one rank's share of a global batch, whose rows all
            stay negatives); default all B.

    Returns:
        () float32 mean cross-entropy over the B rows (or `rows`).

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
    hits = accidental_hits(item_ids.to(query.device), rows) if item_ids is not None else None
    return diagonal_softmax_ce(query[rows or slice(None)], item, temperature=temperature, log_q=log_q, mask=hits,
                               offset=_start(rows))


def _hits(item_ids: Tensor | None, n: int, device: torch.device, rows: slice | None = None) -> Tensor | None:
    """`accidental_hits` of `item_ids` on `device`, after checking their (n,) shape; None passes through."""
    if item_ids is None:
        return None
    if tuple(item_ids.shape) != (n,):
        raise ValueError(f"item_ids must have shape ({n},), got {tuple(item_ids.shape)}")
    return accidental_hits(item_ids.to(device), rows)


def info_nce_loss(z1: Tensor, z2: Tensor, *, temperature: float, item_ids: Tensor | None = None,
                  rows: slice | None = None) -> Tensor:
    """SSL contrastive loss (eq. 3), one direction exactly as in the paper.

    ``-1/N Σ_i log( exp(s(z1_i, z2_i)/tau) / Σ_j exp(s(z1_i, z2_j)/tau) )``: view 1 of item i
    must pick view 2 of item i among the batch's view-2 embeddings. With `item_ids`, column j is
    dropped from row i's sum when ``j != i`` holds the same item (an accidental hit: not a negative);
    the diagonal is never masked.

    Args:
        z1: (B, d) L2-normalized embeddings of view 1 (any floating dtype).
        z2: (B, d) L2-normalized embeddings of view 2, aligned with `z1`.
        temperature: tau > 0.
        item_ids: optional (B,) integer item identities of the rows, for accidental-hit removal.
        rows: the loss over these rows of `z1` only (one rank's share of a global batch); default all.

    Returns:
        () float32 mean over i.

    Raises:
        ValueError: mismatched shapes or a non-positive temperature.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same (B, d) shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    return diagonal_softmax_ce(z1[rows or slice(None)], z2, temperature=temperature,
                               mask=_hits(item_ids, z1.shape[0], z1.device, rows), offset=_start(rows))


def spread_out_loss(z: Tensor, *, temperature: float, item_ids: Tensor | None = None,
                    rows: slice | None = None) -> Tensor:
    """The `so` variant: eq. 3 with identity augmentations, i.e. ``info_nce_loss(z, z)``.

    The positive logit is ``1/tau`` for every row, so the loss only pushes different items apart
    (the softmax form of spread-out regularization, paper §3.1). With `item_ids`, another row
    holding the same item (whose logit is also ``1/tau``) is masked rather than pushed away.

    Args:
        z: (B, d) L2-normalized item embeddings.
        temperature: tau > 0.
        item_ids: optional (B,) integer item identities, for accidental-hit removal.
        rows: the loss over these rows only (one rank's share of a global batch); default all.

    Returns:
        () float32 mean over rows.
    """
    return info_nce_loss(z, z, temperature=temperature, item_ids=item_ids, rows=rows)


@torch.no_grad()
def in_batch_top1(z1: Tensor, z2: Tensor, *, item_ids: Tensor | None = None) -> Tensor:
    """Share of rows whose own view 2 is the most similar view-2 column (the SSL task's top-1 accuracy).

    Row i counts when ``s(z1_i, z2_i) >= s(z1_i, z2_j)`` for every column j that is not an accidental
    hit of row i (ties count as correct; chance level is about 1/B). Temperature does not change the
    argmax, so none is needed. No host synchronization: the result stays a tensor.

    Args:
        z1: (B, d) embeddings of view 1.
        z2: (B, d) embeddings of view 2, aligned with `z1`.
        item_ids: optional (B,) integer item identities; columns holding row i's item are ignored.

    Returns:
        () float32 in [0, 1].
    """
    _check_pair(z1, z2)
    sim = torch.mm(z1.float(), z2.float().T)  # (B, B)
    hits = _hits(item_ids, sim.shape[0], sim.device)
    if hits is not None:
        sim.masked_fill_(hits, float("-inf"))
    return (sim.diagonal() >= sim.amax(1)).float().mean()


def duplicate_share(item_ids: Tensor) -> Tensor:
    """Share of rows whose item also occurs in another row of the batch (O(B log B), no host sync).

    Args:
        item_ids: (B,) integer item identities.

    Returns:
        () float32 in [0, 1]; 0 for an empty batch.
    """
    if item_ids.numel() == 0:
        return torch.zeros((), device=item_ids.device)
    ids = item_ids.flatten().sort().values
    same = ids[1:] == ids[:-1]  # (B-1,) equal neighbours in sorted order
    dup = torch.zeros_like(ids, dtype=torch.bool)
    dup[1:] |= same
    dup[:-1] |= same
    return dup.float().mean()


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
