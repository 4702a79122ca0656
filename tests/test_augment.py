"""Augmentations (paper §3.2): mask structure, dropout rates, determinism, name predicates."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sslkit.augment import (AUGMENTATIONS, cfm_mask_table, cfm_masks, feature_dropout_mask,
                            independent_random_masks, random_complementary_masks, uses_dropout, uses_masking,
                            uses_ssl, value_dropout)


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


def test_cfm_every_seed_is_drawn() -> None:
    t = torch.eye(6, dtype=torch.bool)  # row s = {s}: the seed is identifiable from the mask
    g = gen(1)
    seen = [int(cfm_masks(t, 3, generator=g)[0][0].nonzero()) for _ in range(300)]
    counts = torch.bincount(torch.tensor(seen), minlength=6)
    assert (counts > 0).all()
    assert counts.min() >= 20  # roughly uniform: expected 50 each


@pytest.mark.parametrize("b,f,size", [(1, 2, 1), (8, 5, 2), (32, 10, 5), (16, 7, 6)])
def test_random_complementary_masks(b: int, f: int, size: int) -> None:
    m1, m2 = random_complementary_masks(b, f, size, generator=gen(2))
    assert m1.shape == (b, f) and m1.dtype == torch.bool
    assert (m1.sum(1) == size).all()
    assert (m2.sum(1) == f - size).all()
    assert torch.equal(m2, ~m1)


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
    assert torch.equal(value_dropout(ids, -1.0, generator=gen(0)), ids)
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
    for name, (ssl, masking, dropout) in EXPECTED.items():
        assert (uses_ssl(name), uses_masking(name), uses_dropout(name)) == (ssl, masking, dropout), name


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
