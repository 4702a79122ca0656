"""Losses of the method (paper eq. 3, 5, 6). Pure functions on L2-normalized embeddings.

All logits are computed in float32 even under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_MASKED = -1e9  # finite, so masked logits give zero probability without NaN gradients


def batch_softmax_loss(query: Tensor, item: Tensor, *, temperature: float, item_ids: Tensor | None = None,
                       log_q: Tensor | None = None) -> Tensor:
    """In-batch softmax (eq. 6): row i's positive is item i, the other in-batch items are negatives.

    Args:
        query: (B, d) query embeddings. item: (B, d) item embeddings.
        temperature: logits = cos / temperature.
        item_ids: (B,) item identities; off-diagonal copies of row i's own item ("accidental hits")
            are removed from row i's negatives.
        log_q: (B,) log sampling probability of each in-batch item (logQ correction), subtracted
            from its column.
    Returns:
        () mean cross-entropy.
    """
    logits = (query.float() @ item.float().T) / temperature  # (B, B)
    if log_q is not None:
        logits = logits - log_q.float().unsqueeze(0)
    if item_ids is not None:
        same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, _MASKED)
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, target)


def info_nce_loss(z1: Tensor, z2: Tensor, *, temperature: float) -> Tensor:
    """SSL contrastive loss (eq. 3): view 1 of item i must pick view 2 of item i among the batch.

    Args: z1, z2: (B, d) the two views' embeddings. Returns: () mean over i (one direction, as eq. 3).
    """
    logits = (z1.float() @ z2.float().T) / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def spread_out_loss(z: Tensor, *, temperature: float) -> Tensor:
    """The `so` variant: the SSL loss with identity augmentations, pushing items apart. z: (B, d)."""
    return info_nce_loss(z, z, temperature=temperature)


def joint_loss(main: Tensor, ssl: Tensor | None, *, alpha: float) -> Tensor:
    """Eq. 5: L = L_main + alpha * L_ssl (just L_main without an SSL term)."""
    return main if ssl is None else main + alpha * ssl
