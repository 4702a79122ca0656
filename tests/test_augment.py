"""Augmentations (paper §3.2): mask structure, dropout rates, determinism, name predicates."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sslkit.model.augment import (AUGMENTATIONS, SSL_AUGMENTATIONS, View, augment_views, cfm_mask_table, cfm_masks,
                            feature_dropout_mask, independent_random_masks, random_complementary_masks, uses_dropout,
                            uses_masking, uses_ssl, value_dropout)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SETS = [[0, 2], [1, 3], [2, 0], [3, 4], [4, 1]]  # seed s → its masking set F_m (5 features)


def test_cfm_mask_table_rows() -> None:
    t = cfm_mask_table(SETS, 5)
    assert t.dtype == torch.bool and t.shape == (5, 5)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    for s, members in enumerate(SETS):
        for m in members:
            expected[s, m] = True
    assert torch.equal(t, expected)
    assert t.sum(1).tolist() == [2, 2, 2, 2, 2]
    assert t.diagonal().all()


def test_cfm_masks_one_seed_row_per_batch_and_complement() -> None:
    t = cfm_mask_table(SETS, 5)
    g = gen(0)
    for _ in range(50):
        m1, m2 = cfm_masks(t, 7, generator=g)
        assert m1.shape == m2.shape == (7, 5) and m1.dtype == torch.bool
        assert (m1 == m1[0]).all()  # same seed row for the whole batch
        assert any(torch.equal(m1[0], t[s]) for s in range(5))
        assert torch.equal(m2, ~m1)  # view 2 = complement
        assert not (m1 & m2).any() and (m1 | m2).all()


def test_cfm_every_seed_is_drawn_uniformly() -> None:
    t = torch.eye(6, dtype=torch.bool)  # row s = {s}: the seed is identifiable from the mask
    g = gen(1)
    seen = [int(cfm_masks(t, 3, generator=g)[0][0].nonzero()) for _ in range(600)]
    counts = torch.bincount(torch.tensor(seen), minlength=6).double()
    assert (counts > 0).all()
    expected = 100.0
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.0  # 5 dof: P(chi2 > 20.5) = 0.001; loose bound


def test_cfm_mask_equals_a_table_row_and_partitions() -> None:
    t = cfm_mask_table(SETS, 5)
    g = gen(12)
    for _ in range(30):
        m1, m2 = cfm_masks(t, 9, generator=g)
        assert (m1 ^ m2).all() and not (m1 & m2).any()
        rows = [s for s in range(5) if torch.equal(m1[0], t[s])]
        assert rows  # the mask is one seed's set (seeds 0 and 2 share the set {0, 2})
        assert torch.equal(m1, t[rows[0]].expand(9, -1))


def test_cfm_mask_table_rejects_bad_sets() -> None:
    with pytest.raises(ValueError, match="one masking set per feature"):
        cfm_mask_table(SETS[:4], 5)
    with pytest.raises(ValueError, match="outside"):
        cfm_mask_table([[0, 5], [1], [2], [3], [4]], 5)


@pytest.mark.parametrize("b,f,size", [(1, 2, 1), (8, 5, 2), (32, 10, 5), (16, 7, 6)])
def test_random_complementary_masks(b: int, f: int, size: int) -> None:
    m1, m2 = random_complementary_masks(b, f, size, generator=gen(2))
    assert m1.shape == (b, f) and m1.dtype == torch.bool
    assert (m1.sum(1) == size).all()
    assert (m2.sum(1) == f - size).all()
    assert torch.equal(m2, ~m1)
    assert (m1 ^ m2).all() and not (m1 & m2).any()


def test_masks_follow_device_argument() -> None:
    cpu = torch.device("cpu")
    for m in (*random_complementary_masks(4, 5, 2, generator=gen(0), device=cpu),
              *independent_random_masks(4, 5, 2, generator=gen(0), device=cpu),
              feature_dropout_mask(4, 5, 0.5, generator=gen(0), device=cpu)):
        assert m.device == cpu and m.dtype == torch.bool and m.shape == (4, 5)


def test_bad_sizes_and_rates_raise() -> None:
    with pytest.raises(ValueError, match="mask_size"):
        random_complementary_masks(4, 5, 6, generator=gen(0))
    with pytest.raises(ValueError, match="mask_size"):
        independent_random_masks(4, 5, -1, generator=gen(0))
    with pytest.raises(ValueError, match="rate"):
        value_dropout(torch.ones(2, 3, dtype=torch.long), 1.5, generator=gen(0))
    with pytest.raises(ValueError, match="rate"):
        feature_dropout_mask(2, 3, -0.1, generator=gen(0))


def test_random_complementary_masks_vary_per_row() -> None:
    m1, _ = random_complementary_masks(200, 8, 4, generator=gen(3))
    assert len({tuple(r.tolist()) for r in m1}) > 20
    # every feature masked about half the time
    freq = m1.float().mean(0)
    assert ((freq > 0.35) & (freq < 0.65)).all()


def test_independent_random_masks_sizes_and_not_complementary() -> None:
    m1, m2 = independent_random_masks(500, 8, 3, generator=gen(4))
    assert (m1.sum(1) == 3).all() and (m2.sum(1) == 3).all()
    assert not torch.equal(m2, ~m1)
    assert (m1 & m2).any(1).float().mean() > 0.3  # overlaps happen often
    assert not torch.equal(m1, m2)


def test_independent_masks_size_half_not_complementary() -> None:
    # size = F/2: complementary would be possible, but independent draws rarely are
    m1, m2 = independent_random_masks(200, 6, 3, generator=gen(5))
    compl = (m2 == ~m1).all(1)
    assert compl.float().mean() < 0.2


def test_value_dropout_rate_and_pad() -> None:
    g = gen(6)
    ids = torch.randint(1, 1000, (1000, 100), generator=g)
    ids[:, 80:] = 0  # padding
    out = value_dropout(ids, 0.3, generator=gen(7))
    assert out.shape == ids.shape and out.dtype == ids.dtype
    assert (out[:, 80:] == 0).all()
    real = ids[:, :80]
    dropped = (out[:, :80] == 0)
    assert abs(dropped.float().mean().item() - 0.3) < 0.02
    kept = ~dropped
    assert torch.equal(out[:, :80][kept], real[kept])  # surviving values unchanged


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_value_dropout_empirical_rate(rate: float) -> None:
    ids = torch.arange(1, 100_001).reshape(1000, 100)
    out = value_dropout(ids, rate, generator=gen(8))
    assert abs((out == 0).float().mean().item() - rate) < 0.02


def test_value_dropout_rate_zero_identity() -> None:
    ids = torch.randint(0, 50, (20, 10), generator=gen(9))
    assert torch.equal(value_dropout(ids, 0.0, generator=gen(0)), ids)
    g = gen(0)
    state = g.get_state()
    assert value_dropout(ids, 0.0, generator=g) is ids
    assert torch.equal(g.get_state(), state)  # rate 0 draws nothing
    assert (value_dropout(ids, 1.0, generator=gen(0)) == 0).all()


def test_value_dropout_does_not_modify_input() -> None:
    ids = torch.randint(1, 50, (20, 10), generator=gen(9))
    before = ids.clone()
    value_dropout(ids, 0.5, generator=gen(0))
    assert torch.equal(ids, before)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.4])
def test_feature_dropout_mask_rate(rate: float) -> None:
    m = feature_dropout_mask(10_000, 10, rate, generator=gen(10))
    assert m.shape == (10_000, 10) and m.dtype == torch.bool
    assert abs(m.float().mean().item() - rate) < 0.02
    if rate == 0.0:
        assert not m.any()


def test_same_seed_same_output_different_seed_differs() -> None:
    t = torch.eye(8, dtype=torch.bool)
    ids = torch.randint(1, 100, (64, 16), generator=gen(0))
    fns = [
        lambda g: cfm_masks(t, 4, generator=g)[0],
        lambda g: random_complementary_masks(64, 8, 4, generator=g)[0],
        lambda g: torch.cat(independent_random_masks(64, 8, 4, generator=g), 1),
        lambda g: value_dropout(ids, 0.5, generator=g),
        lambda g: feature_dropout_mask(64, 8, 0.5, generator=g),
    ]
    for fn in fns:
        assert torch.equal(fn(gen(123)), fn(gen(123)))
    for fn in fns[1:]:
        assert not torch.equal(fn(gen(123)), fn(gen(124)))
    # cfm: one draw of 8 seeds per call; over several seeds, at least two differ
    assert len({int(fns[0](gen(s))[0].nonzero()) for s in range(10)}) > 1


def test_generator_state_advances() -> None:
    g = gen(11)
    a = random_complementary_masks(32, 8, 4, generator=g)[0]
    b = random_complementary_masks(32, 8, 4, generator=g)[0]
    assert not torch.equal(a, b)


EXPECTED = {  # name: (ssl, masking, dropout)
    "none": (False, False, False),
    "fd": (False, False, False),
    "so": (True, False, False),
    "cfm": (True, True, True),
    "rfm": (True, True, True),
    "rfm_no_compl": (True, True, True),
    "cfm_no_dropout": (True, True, False),
    "no_mask": (True, False, True),
}


def test_augmentation_predicates() -> None:
    assert set(AUGMENTATIONS) == set(EXPECTED) and len(AUGMENTATIONS) == 8
    assert SSL_AUGMENTATIONS == tuple(a for a in AUGMENTATIONS if EXPECTED[a][0])
    for name, (ssl, masking, dropout) in EXPECTED.items():
        assert (uses_ssl(name), uses_masking(name), uses_dropout(name)) == (ssl, masking, dropout), name


@pytest.mark.parametrize("fn", [uses_ssl, uses_masking, uses_dropout])
def test_predicates_reject_unknown_names(fn: Callable[[str], bool]) -> None:
    with pytest.raises(ValueError, match="cfm_no_dropout"):
        fn("CFM")


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 20), f=st.integers(1, 12), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_mask_shapes_and_sizes_property(b: int, f: int, data: st.DataObject, seed: int) -> None:
    size = data.draw(st.integers(0, f))
    m1, m2 = random_complementary_masks(b, f, size, generator=gen(seed))
    assert m1.shape == m2.shape == (b, f)
    assert (m1.sum(1) == size).all() and torch.equal(m2, ~m1)
    a1, a2 = independent_random_masks(b, f, size, generator=gen(seed))
    assert a1.shape == a2.shape == (b, f)
    assert (a1.sum(1) == size).all() and (a2.sum(1) == size).all()
    fd = feature_dropout_mask(b, f, 0.5, generator=gen(seed))
    assert fd.shape == (b, f) and fd.dtype == torch.bool
    sets = [[s] + [(s + 1) % f] * (f > 1) for s in range(f)]
    t = cfm_mask_table(sets, f)
    c1, c2 = cfm_masks(t, b, generator=gen(seed))
    assert c1.shape == (b, f) and torch.equal(c2, ~c1)
    assert int(c1[0].sum()) == min(2, f)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 30), length=st.integers(1, 12), rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_value_dropout_property(rows: int, length: int, rate: float, seed: int) -> None:
    ids = torch.randint(0, 5, (rows, length), generator=gen(seed))
    out = value_dropout(ids, rate, generator=gen(seed + 1))
    assert out.shape == ids.shape
    assert ((out == ids) | (out == 0)).all()  # values only ever become pad
    assert (out[ids == 0] == 0).all()


# ---------------------------------------------------------------- augment_views


def batch(b: int = 64, seed: int = 0) -> tuple[list[torch.Tensor], list[bool]]:
    """Sparse single (B, 1), multi (B, 6) with padding, dense (B, 1), multi (B, 4), single (B, 1)."""
    g = gen(seed)
    single = torch.randint(1, 50, (b, 1), generator=g)
    multi = torch.randint(1, 50, (b, 6), generator=g)
    multi[:, 4:] = 0
    multi[0] = 0  # a missing feature
    dense = torch.randn(b, 1, generator=g)
    multi2 = torch.randint(1, 9, (b, 4), generator=g)
    single2 = torch.randint(0, 3, (b, 1), generator=g)
    return [single, multi, dense, multi2, single2], [False, True, False, True, False]


F_SPARSE = 4  # sparse features of `batch()`
TABLE = cfm_mask_table([[0, 1], [1, 3], [2, 0], [3, 2]], F_SPARSE)


def views(aug: str, seed: int = 0, *, dropout: float = 0.5,
          mask_size: int = 2) -> tuple[list[torch.Tensor], tuple[View, View]]:
    feats, multi = batch()
    return feats, augment_views(feats, aug=aug, multi_valued=multi, generator=gen(seed), mask_table=TABLE,
                                mask_size=mask_size, dropout=dropout)


@pytest.mark.parametrize("aug", SSL_AUGMENTATIONS)
def test_augment_views_stages(aug: str) -> None:
    feats, ((f1, m1), (f2, m2)) = views(aug)
    assert len(f1) == len(f2) == len(feats)
    for a, b, x in zip(f1, f2, feats):
        assert a.shape == b.shape == x.shape and a.dtype == b.dtype == x.dtype
    # masking stage
    if uses_masking(aug):
        assert m1 is not None and m2 is not None
        assert m1.shape == m2.shape == (64, F_SPARSE) and m1.dtype == torch.bool
        if aug != "rfm_no_compl":
            assert (m1 ^ m2).all() and not (m1 & m2).any()
    else:
        assert m1 is None and m2 is None
    # dropout stage: only multi-valued sparse features (indices 1 and 3) change
    for k in (0, 2, 4):
        assert f1[k] is feats[k] and f2[k] is feats[k]
    for k in (1, 3):
        if uses_dropout(aug):
            assert not torch.equal(f1[k], feats[k]) and not torch.equal(f2[k], feats[k])
            assert not torch.equal(f1[k], f2[k])  # independent draws per view
            assert ((f1[k] == feats[k]) | (f1[k] == 0)).all()
        else:
            assert f1[k] is feats[k] and f2[k] is feats[k]


def test_so_returns_input_unchanged() -> None:
    feats, ((f1, m1), (f2, m2)) = views("so")
    assert m1 is None and m2 is None
    assert all(a is x and b is x for a, b, x in zip(f1, f2, feats))


def test_cfm_views_use_table_row_and_complement() -> None:
    for seed in range(10):
        _, ((_, m1), (_, m2)) = views("cfm_no_dropout", seed)
        assert (m1 == m1[0]).all()
        assert any(torch.equal(m1[0], TABLE[s]) for s in range(F_SPARSE))
        assert torch.equal(m2, ~m1)


def test_rfm_views_mask_exactly_mask_size() -> None:
    _, ((_, m1), (_, m2)) = views("rfm", mask_size=1)
    assert (m1.sum(1) == 1).all() and (m2.sum(1) == F_SPARSE - 1).all()
    _, ((_, a1), (_, a2)) = views("rfm_no_compl", mask_size=2)
    assert (a1.sum(1) == 2).all() and (a2.sum(1) == 2).all()
    assert not torch.equal(a2, ~a1)


def test_dropout_zero_leaves_ids() -> None:
    feats, ((f1, m1), (f2, _)) = views("cfm", dropout=0.0)
    assert m1 is not None
    assert all(a is x and b is x for a, b, x in zip(f1, f2, feats))


@pytest.mark.parametrize("aug", ["cfm", "rfm", "rfm_no_compl", "no_mask", "cfm_no_dropout"])
def test_augment_views_deterministic_per_seed(aug: str) -> None:
    def flat(v: tuple[View, View]) -> torch.Tensor:
        ((f1, m1), (f2, m2)) = v
        parts = [t.float().flatten() for t in (*f1, *f2)]
        parts += [m.float().flatten() for m in (m1, m2) if m is not None]
        return torch.cat(parts)

    a, b = flat(views(aug, 3)[1]), flat(views(aug, 3)[1])
    assert torch.equal(a, b)
    assert any(not torch.equal(a, flat(views(aug, s)[1])) for s in range(4, 9))


@pytest.mark.parametrize("aug", ["none", "fd", "bogus", "CFM"])
def test_augment_views_rejects_non_ssl(aug: str) -> None:
    feats, multi = batch()
    with pytest.raises(ValueError) as err:
        augment_views(feats, aug=aug, multi_valued=multi, generator=gen(0), mask_table=TABLE, mask_size=2,
                      dropout=0.1)
    for name in SSL_AUGMENTATIONS:
        assert name in str(err.value)


@pytest.mark.parametrize("aug", ["cfm", "cfm_no_dropout"])
def test_augment_views_cfm_needs_table(aug: str) -> None:
    feats, multi = batch()
    with pytest.raises(ValueError, match="mask_table"):
        augment_views(feats, aug=aug, multi_valued=multi, generator=gen(0), mask_table=None, mask_size=2,
                      dropout=0.1)
    with pytest.raises(ValueError, match="mask_table"):
        augment_views(feats, aug=aug, multi_valued=multi, generator=gen(0), mask_table=torch.eye(5, dtype=torch.bool),
                      mask_size=2, dropout=0.1)
    # rfm does not need it
    augment_views(feats, aug="rfm", multi_valued=multi, generator=gen(0), mask_table=None, mask_size=2, dropout=0.1)


def test_augment_views_checks_multi_valued_length() -> None:
    feats, multi = batch()
    with pytest.raises(ValueError, match="multi_valued"):
        augment_views(feats, aug="no_mask", multi_valued=multi[:-1], generator=gen(0), mask_table=None,
                      mask_size=2, dropout=0.1)


def test_augment_views_does_not_modify_inputs() -> None:
    feats, multi = batch()
    before = [t.clone() for t in feats]
    augment_views(feats, aug="cfm", multi_valued=multi, generator=gen(0), mask_table=TABLE, mask_size=2, dropout=0.9)
    assert all(torch.equal(a, b) for a, b in zip(feats, before))


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 16), lengths=st.lists(st.integers(1, 5), min_size=1, max_size=6), data=st.data(),
       aug=st.sampled_from(SSL_AUGMENTATIONS), rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_augment_views_property(b: int, lengths: list[int], data: st.DataObject, aug: str, rate: float,
                                seed: int) -> None:
    f = len(lengths)
    size = data.draw(st.integers(0, f))
    g = gen(seed)
    feats = [torch.randint(0, 4, (b, n), generator=g) for n in lengths] + [torch.randn(b, 1, generator=g)]
    multi = [n > 1 for n in lengths] + [False]
    table = cfm_mask_table([[s, (s + 1) % f] for s in range(f)], f)
    (f1, m1), (f2, m2) = augment_views(feats, aug=aug, multi_valued=multi, generator=g, mask_table=table,
                                       mask_size=size, dropout=rate)
    for a, c, x in zip(f1, f2, feats):
        assert a.shape == c.shape == x.shape
    for view in (f1, f2):
        for k, (a, x) in enumerate(zip(view, feats)):
            if multi[k]:
                assert ((a == x) | (a == 0)).all()
            else:
                assert a is x
    if m1 is None:
        assert m2 is None and not uses_masking(aug)
    else:
        assert m1.shape == m2.shape == (b, f)
        if aug == "rfm":
            assert (m1.sum(1) == size).all() and torch.equal(m2, ~m1)
        elif aug == "rfm_no_compl":
            assert (m1.sum(1) == size).all() and (m2.sum(1) == size).all()
        else:
            assert (m1.sum(1) <= 2).all() and torch.equal(m2, ~m1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("aug", SSL_AUGMENTATIONS)
def test_cpu_generator_with_cuda_inputs(aug: str) -> None:
    feats, multi = batch()
    cuda = [t.cuda() for t in feats]
    (f1, m1), (f2, m2) = augment_views(cuda, aug=aug, multi_valued=multi, generator=gen(0),
                                       mask_table=TABLE.cuda(), mask_size=2, dropout=0.5)
    assert all(t.is_cuda for t in (*f1, *f2))
    assert all(m.is_cuda for m in (m1, m2) if m is not None)
    (c1, n1), _ = augment_views(feats, aug=aug, multi_valued=multi, generator=gen(0), mask_table=TABLE,
                                mask_size=2, dropout=0.5)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(f1, c1))  # same draws as on the CPU
    assert (m1 is None) == (n1 is None)


# --- the fused layout used by training: same draws, same views as augment_views ---------------------

FUSED_LENGTHS = (1, 3, 1, 4)  # two single- and two multi-valued sparse features
FUSED_TABLE = cfm_mask_table([[0, 1], [1, 3], [2, 0], [3, 2]], 4)


def fused_batch(rows: int, lengths: tuple[int, ...], seed: int) -> tuple[list[torch.Tensor], list[int]]:
    """Per-feature ids with padding and missing rows, plus each feature's default id."""
    g = gen(seed)
    feats = []
    for n in lengths:
        ids = torch.randint(1, 50, (rows, n), generator=g)
        ids[:, 1:] *= torch.rand((rows, n - 1), generator=g) < 0.6  # padding inside multi-valued rows
        ids[torch.rand(rows, generator=g) < 0.2] = 0  # missing feature
        feats.append(ids)
    return feats, [1000 + f for f in range(len(lengths))]


def as_fused(feats: list[torch.Tensor], mask: torch.Tensor | None, defaults: list[int]) -> torch.Tensor:
    """Reference fused ids: a feature that is masked or has no value becomes [default, 0, …]."""
    cols = []
    for f, ids in enumerate(feats):
        use_default = ~(ids != 0).any(1)
        if mask is not None:
            use_default |= mask[:, f]
        first = torch.where(use_default, defaults[f], ids[:, 0])
        cols.append(torch.cat([first.unsqueeze(1), ids[:, 1:].masked_fill(use_default.unsqueeze(1), 0)], 1))
    return torch.cat(cols, 1)


@pytest.mark.parametrize("lengths", [FUSED_LENGTHS, (1, 1, 1, 1)])
@pytest.mark.parametrize("aug", SSL_AUGMENTATIONS)
def test_fused_views_equal_augment_views(aug: str, lengths: tuple[int, ...]) -> None:
    from sslkit.model.augment import FusedColumns, fused_views

    feats, defaults = fused_batch(48, lengths, seed=3)
    columns = FusedColumns.build(lengths, defaults)
    stored = as_fused(feats, None, defaults)  # what `model.fuse` writes: missing → [default, 0, …]
    for seed in range(4):
        (f1, m1), (f2, m2) = augment_views(feats, aug=aug, multi_valued=[n > 1 for n in lengths], generator=gen(seed),
                                           mask_table=FUSED_TABLE, mask_size=2, dropout=0.4)
        got = fused_views(stored, columns, aug=aug, generator=gen(seed), mask_table=FUSED_TABLE, mask_size=2,
                          dropout=0.4)
        assert got.shape == (2, 48, sum(lengths))
        assert torch.equal(got[0], as_fused(f1, m1, defaults)) and torch.equal(got[1], as_fused(f2, m2, defaults))


def test_fused_views_drop_all_values_gives_default() -> None:
    from sslkit.model.augment import FusedColumns, fused_views, with_defaults

    feats, defaults = fused_batch(16, FUSED_LENGTHS, seed=5)
    columns = FusedColumns.build(FUSED_LENGTHS, defaults)
    stored = as_fused(feats, None, defaults)
    got = fused_views(stored, columns, aug="no_mask", generator=gen(0), mask_table=None, mask_size=1, dropout=1.0)
    everything = torch.tensor([[False, True, False, True]])  # both multi-valued features fully dropped
    assert torch.equal(got[0], with_defaults(stored, everything, columns)) and torch.equal(got[0], got[1])
    assert set(got[0][:, 1].tolist()) == {defaults[1]} and not got[0][:, 2:4].any()


def test_cfm_seed_per_example_gathers_one_table_row_per_row() -> None:
    t = torch.eye(6, dtype=torch.bool)  # row s = {s}: each row's seed is readable from its mask
    m1, m2 = cfm_masks(t, 600, generator=gen(4), seed_per="example")
    assert m1.shape == (600, 6) and torch.equal(m2, ~m1) and (m1.sum(1) == 1).all()
    counts = torch.bincount(m1.float().argmax(1), minlength=6).double()
    assert float(((counts - 100.0) ** 2 / 100.0).sum()) < 30.0  # every seed, uniformly (5 dof)
    same = cfm_masks(t, 600, generator=gen(4), seed_per="example")[0]
    assert torch.equal(m1, same)
    # the per-batch draw is the first of the per-example draws: one randint from the same generator
    assert torch.equal(cfm_masks(t, 3, generator=gen(4))[0][0], m1[0])
    with pytest.raises(ValueError, match="seed_per must be one of batch, example"):
        cfm_masks(t, 3, generator=gen(0), seed_per="step")


def test_fused_views_cfm_seed_per_example_equals_augment_views() -> None:
    from sslkit.model.augment import FusedColumns, fused_views

    feats, defaults = fused_batch(48, FUSED_LENGTHS, seed=3)
    columns = FusedColumns.build(FUSED_LENGTHS, defaults)
    stored = as_fused(feats, None, defaults)
    (f1, m1), (f2, m2) = augment_views(feats, aug="cfm", multi_valued=[n > 1 for n in FUSED_LENGTHS],
                                       generator=gen(7), mask_table=FUSED_TABLE, mask_size=2, dropout=0.4,
                                       cfm_seed="example")
    assert m1 is not None and len({tuple(r) for r in m1.tolist()}) > 1  # rows really differ
    got = fused_views(stored, columns, aug="cfm", generator=gen(7), mask_table=FUSED_TABLE, mask_size=2,
                      dropout=0.4, cfm_seed="example")
    assert torch.equal(got[0], as_fused(f1, m1, defaults)) and torch.equal(got[1], as_fused(f2, m2, defaults))
