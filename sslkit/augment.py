"""Augmentations for the SSL task (paper §3.2) as pure functions with an explicit generator.

Feature masks are bool (B, F): True = replace the feature by its learned default embedding.
Random numbers are drawn on the generator's device (CPU generators → CPU tensors; move after).

| aug            | paper name                                          | SSL loss |
| -------------- | --------------------------------------------------- | -------- |
| none           | baseline two-tower                                  | no       |
| fd             | Feature Dropout in the supervised task              | no       |
| so             | Spread-out (SSL loss on un-augmented items)         | yes      |
| cfm            | Correlated Feature Masking + value dropout (method) | yes      |
| rfm            | random complementary masking + value dropout        | yes      |
| rfm_no_compl   | two independent random masks + value dropout        | yes      |
| cfm_no_dropout | CFM masking only                                    | yes      |
| no_mask        | value dropout only                                  | yes      |
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

AUGMENTATIONS: tuple[str, ...] = ("none", "fd", "so", "cfm", "rfm", "rfm_no_compl", "cfm_no_dropout", "no_mask")


def uses_ssl(aug: str) -> bool:
    return aug not in ("none", "fd")


def uses_masking(aug: str) -> bool:
    return aug in ("cfm", "rfm", "rfm_no_compl", "cfm_no_dropout")


def uses_dropout(aug: str) -> bool:
    return aug in ("cfm", "rfm", "rfm_no_compl", "no_mask")


def cfm_mask_table(mask_sets: Sequence[Sequence[int]], num_features: int) -> Tensor:
    """Bool (F, F): row s is the masking set F_m of seed feature s."""
    table = torch.zeros((num_features, num_features), dtype=torch.bool)
    for seed, members in enumerate(mask_sets):
        table[seed, list(members)] = True
    return table


def cfm_masks(table: Tensor, batch_size: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Correlated Feature Masking: one seed per batch; view 1 masks F_m, view 2 its complement."""
    seed = int(torch.randint(table.shape[0], (1,), generator=generator, device=generator.device))
    m1 = table[seed].unsqueeze(0).expand(batch_size, -1)
    return m1, ~m1


def _random_subsets(batch_size: int, num_features: int, size: int, generator: torch.Generator) -> Tensor:
    noise = torch.rand((batch_size, num_features), generator=generator, device=generator.device)
    return noise.argsort(dim=1).argsort(dim=1) < size  # rank < size: exactly `size` per row


def random_complementary_masks(batch_size: int, num_features: int, mask_size: int, *,
                               generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """RFM: per example a uniformly random set of `mask_size` features, and its complement."""
    m1 = _random_subsets(batch_size, num_features, mask_size, generator)
    return m1, ~m1


def independent_random_masks(batch_size: int, num_features: int, mask_size: int, *,
                             generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """RFM without complement: two independent random sets of `mask_size` features per example."""
    return (_random_subsets(batch_size, num_features, mask_size, generator),
            _random_subsets(batch_size, num_features, mask_size, generator))


def value_dropout(ids: Tensor, rate: float, *, generator: torch.Generator) -> Tensor:
    """Drop each non-pad value of a multi-valued feature with probability `rate`. ids: long (B, L)."""
    if rate <= 0:
        return ids
    drop = torch.rand(ids.shape, generator=generator, device=generator.device).to(ids.device) < rate
    return ids.masked_fill(drop & (ids != 0), 0)


def feature_dropout_mask(batch_size: int, num_features: int, rate: float, *, generator: torch.Generator) -> Tensor:
    """FD: each feature of each example masked independently with probability `rate`. → bool (B, F)."""
    return torch.rand((batch_size, num_features), generator=generator, device=generator.device) < rate
