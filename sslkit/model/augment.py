"""Augmentations of the SSL task (Yao et al., CIKM 2021, §3.2 and Table 5) as pure functions.

The paper's two-stage augmentation: (1) *masking* — a set of features is replaced by their learned
default embeddings, with complementary sets for the two views; (2) *dropout* — each value of a
multi-valued feature is dropped independently with rate ``dr``.

| aug              | paper name (Table 4 / 5)                                     | SSL loss | masking | dropout |
| ---------------- | ------------------------------------------------------------ | -------- | ------- | ------- |
| `none`           | Baseline: two-tower with the main loss only                  | no       | -       | -       |
| `fd`             | FD: feature dropout on the item tower of the supervised task | no       | -       | -       |
| `so`             | SO: spread-out, the SSL loss on un-augmented items           | yes      | -       | -       |
| `cfm`            | CFM: correlated feature masking + dropout (the method)       | yes      | CFM     | yes     |
| `rfm`            | RFM: random complementary feature masking + dropout          | yes      | random  | yes     |
| `rfm_no_compl`   | RFM_no_compl: two independent random masks + dropout         | yes      | random  | yes     |
| `cfm_no_dropout` | CFM_no_dropout: CFM masking only                              | yes      | CFM     | no      |
| `no_mask`        | No_Mask: value dropout only                                  | yes      | -       | yes     |

(`fd` masks features of the supervised item batch with `feature_dropout_mask`; it has no views.)

Conventions:

* A feature mask is ``BoolTensor (B, F)``; True = replace the feature by its default embedding.
  F counts the *sparse* (integer) features of a batch, in order; dense features cannot be masked.
* An item batch is a sequence of per-feature tensors: ``LongTensor (B, L_f)`` for sparse features
  (0 = padding, a row of zeros = missing feature) and ``FloatTensor (B, 1)`` for dense ones.
* Randomness comes only from the explicit ``torch.Generator``. Random numbers are drawn on the
  generator's device (a CPU generator draws on the CPU) and the results are moved to the device of
  the inputs (or `device`). So a CPU generator works with CUDA inputs, at the price of a small
  host-to-device copy; a CUDA generator avoids it. The same generator state gives the same views.
* The training loop uses the *fused* layout of `sslkit.model.towers` instead: one ``LongTensor (B, S)`` with
  the features' id columns side by side, where a feature replaced by its default embedding is
  written ``[default_id, 0, …, 0]`` (`FusedColumns`, `with_defaults`). `fused_views` is
  `augment_views` on that layout: the same random draws in the same order, the same views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "AUGMENTATIONS", "SSL_AUGMENTATIONS", "CFM_SEEDS", "uses_ssl", "uses_masking", "uses_dropout", "cfm_mask_table",
    "cfm_masks", "random_complementary_masks", "independent_random_masks", "value_dropout",
    "feature_dropout_mask", "augment_views", "FusedColumns", "with_defaults", "fused_views",
]

AUGMENTATIONS: tuple[str, ...] = ("none", "fd", "so", "cfm", "rfm", "rfm_no_compl", "cfm_no_dropout", "no_mask")
"""Every augmentation variant; see the module docstring for the paper's names."""

SSL_AUGMENTATIONS: tuple[str, ...] = ("so", "cfm", "rfm", "rfm_no_compl", "cfm_no_dropout", "no_mask")
"""The variants with an SSL task, i.e. those `augment_views` accepts."""

_MASKING: tuple[str, ...] = ("cfm", "rfm", "rfm_no_compl", "cfm_no_dropout")
_DROPOUT: tuple[str, ...] = ("cfm", "rfm", "rfm_no_compl", "no_mask")

View = tuple[list[Tensor], Tensor | None]
"""One SSL view: (per-feature tensors, mask bool (B, F) or None)."""


def _check_aug(aug: str) -> str:
    if aug not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {aug!r}; allowed values: {', '.join(AUGMENTATIONS)}")
    return aug


def uses_ssl(aug: str) -> bool:
    """Whether `aug` adds the SSL loss (eq. 3) to the main loss. Raises ValueError if unknown."""
    return _check_aug(aug) in SSL_AUGMENTATIONS


def uses_masking(aug: str) -> bool:
    """Whether `aug` masks features in its SSL views (stage 1). Raises ValueError if unknown."""
    return _check_aug(aug) in _MASKING


def uses_dropout(aug: str) -> bool:
    """Whether `aug` applies value dropout in its SSL views (stage 2). Raises ValueError if unknown."""
    return _check_aug(aug) in _DROPOUT


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {rate}")


def _check_size(mask_size: int, num_features: int) -> None:
    if not 0 <= mask_size <= num_features:
        raise ValueError(f"mask_size must be in [0, {num_features}] for {num_features} features, got {mask_size}")


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | None) -> Tensor:
    """Uniform [0, 1) noise drawn on the generator's device, then moved to `device` (if given)."""
    noise = torch.rand(shape, generator=generator, device=generator.device)
    return noise if device is None else noise.to(device)


def cfm_mask_table(mask_sets: Sequence[Sequence[int]], num_features: int) -> Tensor:
    """Masking sets of Correlated Feature Masking as a lookup table.

    Args:
        mask_sets: for every seed feature s (in order), the indices of its masking set F_m (the seed
            and its most correlated features, from the mutual-information module).
        num_features: F, the number of sparse features.

    Returns:
        (F, F) bool CPU tensor; row s is True exactly on the features of F_m for seed s.

    Raises:
        ValueError: not one set per feature, or an index outside [0, F).
    """
    if len(mask_sets) != num_features:
        raise ValueError(f"expected one masking set per feature ({num_features}), got {len(mask_sets)}")
    table = torch.zeros((num_features, num_features), dtype=torch.bool)
    for seed, members in enumerate(mask_sets):
        bad = [m for m in members if not 0 <= m < num_features]
        if bad:
            raise ValueError(f"masking set of feature {seed} has indices outside [0, {num_features}): {bad}")
        table[seed, list(members)] = True
    return table


CFM_SEEDS: tuple[str, ...] = ("batch", "example")
"""How often CFM draws its seed feature: once per batch (the paper's §3.2 wording) or per example."""


def cfm_masks(table: Tensor, batch_size: int, *, generator: torch.Generator,
              seed_per: str = "batch") -> tuple[Tensor, Tensor]:
    """Correlated Feature Masking: a uniform seed feature selects F_m; view 1 masks F_m, view 2 the rest.

    ``seed_per="batch"``: one seed for the whole batch (the paper: "we change the seed feature per
    batch"); every row then shares one masking pattern. ``seed_per="example"``: one seed per row,
    a gather of B rows of the same table. No host synchronization: the seeds stay tensors.

    Args:
        table: (F, F) bool masking table from `cfm_mask_table`.
        batch_size: B.
        generator: source of the seed draw (one ``randint`` of 1 or B values).
        seed_per: "batch" or "example".

    Returns:
        ``(m1, m2)``, each (B, F) bool on `table`'s device with ``m2 == ~m1``. Per batch, both are
        expanded views of a single row (read-only; copy before writing in place).

    Raises:
        ValueError: unknown `seed_per`.
    """
    if seed_per not in CFM_SEEDS:
        raise ValueError(f"seed_per must be one of {', '.join(CFM_SEEDS)}, got {seed_per!r}")
    n = 1 if seed_per == "batch" else batch_size
    seed = torch.randint(table.shape[0], (n,), generator=generator, device=generator.device)
    rows = table.index_select(0, seed.to(table.device))  # (1 or B, F)
    return rows.expand(batch_size, -1), (~rows).expand(batch_size, -1)


def random_subsets(batch_size: int, num_features: int, size: int, *, generator: torch.Generator,
                   device: torch.device | None = None) -> Tensor:
    """Per row, a uniformly random subset of exactly `size` of the F features.

    The rows of a random permutation (argsort of uniform noise) pick their first `size` entries.

    Args:
        batch_size: B.
        num_features: F.
        size: number of True entries per row, in [0, F].
        generator: source of the noise.
        device: where the result goes (default: the generator's device).

    Returns:
        (B, F) bool with exactly `size` True per row.
    """
    _check_size(size, num_features)
    noise = _uniform((batch_size, num_features), generator, device)
    chosen = noise.argsort(dim=1)[:, :size]
    return torch.zeros_like(noise, dtype=torch.bool).scatter_(1, chosen, True)


def random_complementary_masks(batch_size: int, num_features: int, mask_size: int, *,
                               generator: torch.Generator, device: torch.device | None = None,
                               ) -> tuple[Tensor, Tensor]:
    """RFM: per example a uniformly random set of `mask_size` features (view 1) and its complement.

    Args:
        batch_size: B.
        num_features: F.
        mask_size: features masked in view 1, in [0, F]; view 2 masks the other F - mask_size.
        generator: source of the noise.
        device: where the masks go (default: the generator's device).

    Returns:
        ``(m1, m2)``, each (B, F) bool, ``m2 == ~m1``.
    """
    m1 = random_subsets(batch_size, num_features, mask_size, generator=generator, device=device)
    return m1, ~m1


def independent_random_masks(batch_size: int, num_features: int, mask_size: int, *,
                             generator: torch.Generator, device: torch.device | None = None,
                             ) -> tuple[Tensor, Tensor]:
    """RFM_no_compl: two independent random sets of exactly `mask_size` features per example.

    Args:
        batch_size: B.
        num_features: F.
        mask_size: features masked in each view, in [0, F].
        generator: source of the noise.
        device: where the masks go (default: the generator's device).

    Returns:
        ``(m1, m2)``, each (B, F) bool with `mask_size` True per row, drawn independently.
    """
    return (random_subsets(batch_size, num_features, mask_size, generator=generator, device=device),
            random_subsets(batch_size, num_features, mask_size, generator=generator, device=device))


def value_dropout(ids: Tensor, rate: float, *, generator: torch.Generator) -> Tensor:
    """Drop each value of a multi-valued feature independently with probability `rate`.

    A dropped value becomes 0 (padding); padding stays padding. A row whose values were all dropped
    is all-zero, i.e. a missing feature, which the model represents by its default embedding.
    ``rate == 0`` returns `ids` itself without drawing random numbers.

    Args:
        ids: (B, L) integer ids, 0 = padding.
        rate: drop probability in [0, 1].
        generator: source of the noise (one ``torch.rand`` call).

    Returns:
        (B, L) tensor like `ids` (a new tensor unless ``rate == 0``; the input is never modified).

    Raises:
        ValueError: `rate` outside [0, 1].
    """
    _check_rate(rate)
    if rate == 0.0:
        return ids
    drop = _uniform(tuple(ids.shape), generator, None) < rate
    return ids.masked_fill(drop.to(ids.device), 0)


def feature_dropout_mask(batch_size: int, num_features: int, rate: float, *, generator: torch.Generator,
                         device: torch.device | None = None) -> Tensor:
    """FD: each feature of each example masked independently with probability `rate`.

    Args:
        batch_size: B.
        num_features: F.
        rate: masking probability in [0, 1].
        generator: source of the noise.
        device: where the mask goes (default: the generator's device).

    Returns:
        (B, F) bool, True = replace the feature by its default embedding.
    """
    _check_rate(rate)
    return _uniform((batch_size, num_features), generator, None).lt(rate).to(device or generator.device)


def _view_masks(aug: str, batch_size: int, num_features: int, *, generator: torch.Generator,
                mask_table: Tensor | None, mask_size: int, device: torch.device, cfm_seed: str = "batch",
                ) -> tuple[Tensor | None, Tensor | None]:
    """Stage 1 (masking) of `augment_views` for one batch: two (B, F) masks or (None, None)."""
    if aug in ("cfm", "cfm_no_dropout"):
        if mask_table is None:
            raise ValueError(f"aug={aug!r} needs mask_table (the CFM masking sets from mutual information)")
        if tuple(mask_table.shape) != (num_features, num_features):
            raise ValueError(f"mask_table must be ({num_features}, {num_features}) for {num_features} sparse "
                             f"features, got {tuple(mask_table.shape)}")
        m1, m2 = cfm_masks(mask_table, batch_size, generator=generator, seed_per=cfm_seed)
        return m1.to(device), m2.to(device)
    if aug == "rfm":
        return random_complementary_masks(batch_size, num_features, mask_size, generator=generator, device=device)
    if aug == "rfm_no_compl":
        return independent_random_masks(batch_size, num_features, mask_size, generator=generator, device=device)
    return None, None


def _dropout_view(features: Sequence[Tensor], droppable: Sequence[bool], rate: float, *,
                  generator: torch.Generator) -> list[Tensor]:
    """Stage 2 (value dropout) of one view; features not droppable are passed through as is."""
    return [value_dropout(t, rate, generator=generator) if d else t for t, d in zip(features, droppable)]


def _check_views_aug(aug: str, caller: str) -> None:
    if aug not in SSL_AUGMENTATIONS:
        kind = "has no SSL views" if aug in AUGMENTATIONS else "is unknown"
        raise ValueError(f"augmentation {aug!r} {kind}; {caller} accepts: {', '.join(SSL_AUGMENTATIONS)} "
                         f"(all augmentations: {', '.join(AUGMENTATIONS)})")


def augment_views(features: Sequence[Tensor], *, aug: str, multi_valued: Sequence[bool],
                  generator: torch.Generator, mask_table: Tensor | None, mask_size: int,
                  dropout: float, cfm_seed: str = "batch") -> tuple[View, View]:
    """The two SSL views of one item batch (paper §3.2): masking per `aug`, then value dropout.

    * masking: ``cfm``/``cfm_no_dropout`` → `cfm_masks` (view 2 = complement), ``rfm`` →
      `random_complementary_masks`, ``rfm_no_compl`` → `independent_random_masks`; ``so`` and
      ``no_mask`` → no mask (None).
    * dropout: ``cfm``, ``rfm``, ``rfm_no_compl``, ``no_mask`` drop values of the multi-valued
      sparse features with rate `dropout`, independently per view; single-valued and dense features
      are never touched. ``cfm_no_dropout`` and ``so`` skip it.
    * ``so`` returns the input unchanged as both views.

    Random draws happen in this order: masks, then view 1's dropout, then view 2's (one draw per
    multi-valued feature). Inputs are never modified; untouched features are returned as the same
    tensor objects.

    Args:
        features: per-feature tensors of the item batch, all on one device: ``LongTensor (B, L_f)``
            for sparse features, floating ``(B, 1)`` for dense ones.
        aug: one of `SSL_AUGMENTATIONS`.
        multi_valued: per entry of `features`, whether it is a multi-valued sparse feature (the
            targets of value dropout). Ignored for dense features.
        generator: the only source of randomness.
        mask_table: (F, F) bool CFM table from `cfm_mask_table`; required by cfm / cfm_no_dropout.
        mask_size: features masked per example by rfm / rfm_no_compl, in [0, F].
        dropout: value dropout rate in [0, 1].
        cfm_seed: CFM's seed granularity, "batch" or "example" (`cfm_masks`).

    Returns:
        ``((features_1, mask_1), (features_2, mask_2))``: the views' per-feature tensors (same
        shapes as the input) and their (B, F) bool masks over the F sparse features (None when
        `aug` does not mask), on the features' device.

    Raises:
        ValueError: `aug` without SSL views (none, fd) or unknown; a missing or misshaped
            `mask_table` for CFM; `multi_valued` of the wrong length; a bad `mask_size` / `dropout`.
    """
    _check_views_aug(aug, "augment_views")
    if not features:
        raise ValueError("features must hold at least one tensor")
    if len(multi_valued) != len(features):
        raise ValueError(f"multi_valued has {len(multi_valued)} entries for {len(features)} features")
    _check_rate(dropout)
    if aug == "so":
        return (list(features), None), (list(features), None)
    sparse = [not torch.is_floating_point(t) for t in features]
    batch_size, device = features[0].shape[0], features[0].device
    m1, m2 = _view_masks(aug, batch_size, sum(sparse), generator=generator, mask_table=mask_table,
                         mask_size=mask_size, device=device, cfm_seed=cfm_seed)
    if not uses_dropout(aug):
        return (list(features), m1), (list(features), m2)
    droppable = [s and bool(m) for s, m in zip(sparse, multi_valued)]
    view1 = _dropout_view(features, droppable, dropout, generator=generator)
    view2 = _dropout_view(features, droppable, dropout, generator=generator)
    return (view1, m1), (view2, m2)


@dataclass(frozen=True)
class FusedColumns:
    """Where F sparse features sit in a fused id batch ``(B, S)`` (built by `sslkit.model.towers.Layout`)."""

    lengths: tuple[int, ...]  # columns per feature (its max_len), in order
    feature: Tensor  # long (S,): the feature of each column
    default_ids: Tensor  # long (S,): each feature's default id in its first column, 0 elsewhere
    multi: Tensor  # long (S_m,): the columns of multi-valued features (targets of value dropout)
    multi_onehot: Tensor  # float (S_m, F): multi-valued column → its feature
    is_multi: Tensor  # bool (F,)

    @classmethod
    def build(cls, lengths: Sequence[int], default_ids: Sequence[int],
              device: torch.device | None = None) -> "FusedColumns":
        """Column maps for features of the given lengths whose default embeddings have `default_ids`."""
        feature = torch.tensor([f for f, n in enumerate(lengths) for _ in range(n)], dtype=torch.long)
        first = torch.tensor([c == 0 for n in lengths for c in range(n)], dtype=torch.bool)
        defaults = torch.where(first, torch.tensor(list(default_ids), dtype=torch.long)[feature], 0)
        is_multi = torch.tensor([n > 1 for n in lengths], dtype=torch.bool)
        multi = is_multi[feature].nonzero().flatten()
        onehot = torch.zeros((len(multi), len(lengths)))
        onehot[torch.arange(len(multi)), feature[multi]] = 1.0
        return cls(lengths=tuple(lengths), feature=feature.to(device), default_ids=defaults.to(device),
                   multi=multi.to(device), multi_onehot=onehot.to(device), is_multi=is_multi.to(device))


def with_defaults(ids: Tensor, use_default: Tensor, columns: FusedColumns) -> Tensor:
    """Write features as ``[default_id, 0, …]`` where `use_default` is True.

    Args:
        ids: (..., S) fused ids.
        use_default: (..., F) bool, broadcastable against `ids`' leading dimensions.
        columns: the layout of `ids`.

    Returns:
        A new (..., S) tensor.
    """
    return torch.where(use_default.index_select(-1, columns.feature), columns.default_ids, ids)


def fused_views(ids: Tensor, columns: FusedColumns, *, aug: str, generator: torch.Generator,
                mask_table: Tensor | None, mask_size: int, dropout: float, cfm_seed: str = "batch") -> Tensor:
    """`augment_views` on a fused batch: the same draws in the same order give the same two views.

    Masking (stage 1) uses the same mask functions; value dropout (stage 2) draws one ``(B, L_f)``
    noise tensor per multi-valued feature and view, like `value_dropout`. A feature that is masked,
    or whose values were all dropped, becomes ``[default_id, 0, …]``.

    Args:
        ids: (B, S) fused ids whose missing features are already ``[default_id, 0, …]`` (as
            `sslkit.model.towers.fuse` writes them).
        columns: the layout of `ids`.
        aug: one of `SSL_AUGMENTATIONS`.
        generator: the only source of randomness.
        mask_table: (F, F) bool CFM table; required by cfm / cfm_no_dropout.
        mask_size: features masked per example by rfm / rfm_no_compl.
        dropout: value dropout rate in [0, 1].
        cfm_seed: CFM's seed granularity, "batch" or "example" (`cfm_masks`).

    Returns:
        (2, B, S) long: view 1, view 2 (may be an expanded view of `ids` when nothing changes).

    Raises:
        ValueError: as `augment_views`.
    """
    _check_views_aug(aug, "fused_views")
    _check_rate(dropout)
    views = ids.unsqueeze(0).expand(2, -1, -1)
    if aug == "so":
        return views
    b, device = ids.shape[0], ids.device
    m1, m2 = _view_masks(aug, b, len(columns.lengths), generator=generator, mask_table=mask_table,
                         mask_size=mask_size, device=device, cfm_seed=cfm_seed)
    use_default = None if m1 is None or m2 is None else torch.stack([m1, m2])  # (2, B, F)
    if uses_dropout(aug) and dropout > 0 and len(columns.multi):
        lengths = [n for n in columns.lengths if n > 1]
        noise = torch.stack([torch.cat([_uniform((b, n), generator, None) for n in lengths], 1) for _ in range(2)])
        kept = views.index_select(2, columns.multi).masked_fill(noise.to(device) < dropout, 0)  # (2, B, S_m)
        views = views.index_copy(2, columns.multi, kept)
        emptied = ((kept != 0).to(columns.multi_onehot.dtype) @ columns.multi_onehot == 0) & columns.is_multi
        use_default = emptied if use_default is None else use_default | emptied
    return views if use_default is None else with_defaults(views, use_default, columns)
