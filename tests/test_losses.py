"""Losses (paper eq. 3, 5, 6) against naive Python loops over (i, j)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.model.losses import (accidental_hits, batch_softmax_loss, info_nce_loss, joint_loss, masked_logit_value,
                           spread_out_loss)


def unit(b: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1).float()


def naive_softmax_ce(a: torch.Tensor, b: torch.Tensor, tau: float, ids: list[int] | None = None,
                     log_q: list[float] | None = None) -> float:
    """mean_i −log softmax_i(i); column j dropped from row i when ids[j] == ids[i], j != i."""
    a_, b_ = a.double().tolist(), b.double().tolist()
    n = len(a_)
    total = 0.0
    for i in range(n):
        logits = []
        for j in range(n):
            if ids is not None and j != i and ids[j] == ids[i]:
                continue
            s = sum(x * y for x, y in zip(a_[i], b_[j])) / tau
            if log_q is not None:
                s -= log_q[j]
            logits.append((j, s))
        m = max(s for _, s in logits)
        lse = m + math.log(sum(math.exp(s - m) for _, s in logits))
        pos = next(s for j, s in logits if j == i)
        total += lse - pos
    return total / n


GRID = [(b, d, tau) for b in (1, 2, 5, 16) for d in (3, 8) for tau in (0.05, 0.2, 1.0)]


@pytest.mark.parametrize("b,d,tau", GRID)
def test_batch_softmax_matches_naive(b: int, d: int, tau: float) -> None:
    q, it = unit(b, d, 1), unit(b, d, 2)
    got = batch_softmax_loss(q, it, temperature=tau)
    assert got.shape == () and got.dtype == torch.float32
    assert got.item() == pytest.approx(naive_softmax_ce(q, it, tau), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("b,d,tau", GRID)
def test_info_nce_and_spread_out_match_naive(b: int, d: int, tau: float) -> None:
    z1, z2 = unit(b, d, 3), unit(b, d, 4)
    assert info_nce_loss(z1, z2, temperature=tau).item() == pytest.approx(
        naive_softmax_ce(z1, z2, tau), rel=1e-5, abs=1e-5)
    assert spread_out_loss(z1, temperature=tau).item() == pytest.approx(
        naive_softmax_ce(z1, z1, tau), rel=1e-5, abs=1e-5)


def test_info_nce_is_one_directional() -> None:
    z1, z2 = unit(6, 4, 5), unit(6, 4, 6)
    a = info_nce_loss(z1, z2, temperature=0.1).item()
    b = info_nce_loss(z2, z1, temperature=0.1).item()
    assert a == pytest.approx(naive_softmax_ce(z1, z2, 0.1), rel=1e-5)
    assert b == pytest.approx(naive_softmax_ce(z2, z1, 0.1), rel=1e-5)
    assert abs(a - b) > 1e-4  # the two directions really differ on random data


def test_batch_size_one_is_zero() -> None:
    z = unit(1, 4, 0)
    assert batch_softmax_loss(z, unit(1, 4, 9), temperature=0.1).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_accidental_hit_equals_removed_column(tau: float) -> None:
    q, it = unit(5, 6, 7), unit(5, 6, 8)
    ids = torch.tensor([10, 11, 10, 12, 11])  # rows 0/2 and 1/4 share an item id
    got = batch_softmax_loss(q, it, temperature=tau, item_ids=ids).item()
    # by hand: per-row CE over the kept columns only
    logits = (q.double() @ it.double().T) / tau
    keep = {0: [0, 1, 3, 4], 1: [0, 1, 2, 3], 2: [1, 2, 3, 4], 3: [0, 1, 2, 3, 4], 4: [0, 2, 3, 4]}
    by_hand = 0.0
    for i, cols in keep.items():
        row = logits[i, cols]
        by_hand += (torch.logsumexp(row, 0) - logits[i, i]).item()
    by_hand /= 5
    assert got == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
    assert got == pytest.approx(naive_softmax_ce(q, it, tau, ids=ids.tolist()), rel=1e-5, abs=1e-6)
    # and it differs from the unmasked loss
    assert abs(got - batch_softmax_loss(q, it, temperature=tau).item()) > 1e-4


def test_distinct_ids_mask_nothing() -> None:
    q, it = unit(7, 5, 1), unit(7, 5, 2)
    a = batch_softmax_loss(q, it, temperature=0.1, item_ids=torch.arange(7)).item()
    assert a == pytest.approx(batch_softmax_loss(q, it, temperature=0.1).item(), rel=1e-6)


def test_all_same_id_only_positive_left() -> None:
    q, it = unit(4, 5, 1), unit(4, 5, 2)
    loss = batch_softmax_loss(q, it, temperature=0.1, item_ids=torch.zeros(4, dtype=torch.long))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_logq_hand_computed_2x2() -> None:
    # q = [[1,0],[0,1]], items = [[1,0],[0,1]], tau = 1 → cos = identity
    # log_q = [log 0.5, log 0.25] → logits = [[1 − ln .5, −ln .25], [−ln .5, 1 − ln .25]]
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    log_q = torch.tensor([math.log(0.5), math.log(0.25)])
    got = batch_softmax_loss(q, q.clone(), temperature=1.0, log_q=log_q).item()
    l00, l01 = 1 - math.log(0.5), -math.log(0.25)
    l10, l11 = -math.log(0.5), 1 - math.log(0.25)
    row0 = math.log(math.exp(l00) + math.exp(l01)) - l00
    row1 = math.log(math.exp(l10) + math.exp(l11)) - l11
    assert got == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # = mean of log(1 + e^(−1) · 2) and log(1 + e^(−1) / 2)
    assert got == pytest.approx((math.log(1 + 2 / math.e) + math.log(1 + 0.5 / math.e)) / 2, rel=1e-6)
    # without correction: log(1 + e^−1)
    assert batch_softmax_loss(q, q.clone(), temperature=1.0).item() == pytest.approx(math.log(1 + 1 / math.e), rel=1e-6)


def test_logq_matches_naive_random() -> None:
    q, it = unit(6, 4, 11), unit(6, 4, 12)
    log_q = torch.log(torch.tensor([0.1, 0.2, 0.05, 0.3, 0.15, 0.2]))
    ids = torch.tensor([0, 1, 0, 2, 3, 4])
    got = batch_softmax_loss(q, it, temperature=0.2, item_ids=ids, log_q=log_q).item()
    assert got == pytest.approx(naive_softmax_ce(q, it, 0.2, ids=ids.tolist(), log_q=log_q.tolist()), rel=1e-5)


def test_finite_gradients_with_masking() -> None:
    q, it = unit(6, 8, 1).requires_grad_(), unit(6, 8, 2).requires_grad_()
    ids = torch.tensor([1, 1, 1, 2, 2, 3])
    loss = batch_softmax_loss(q, it, temperature=0.05, item_ids=ids, log_q=torch.full((6,), -3.0))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(q.grad).all() and torch.isfinite(it.grad).all()
    assert q.grad.abs().sum() > 0
    # masked columns get no gradient from the row that masks them: row 0 vs item 1 (same id)
    q2 = unit(6, 8, 1)
    it2 = unit(6, 8, 2).requires_grad_()
    batch_softmax_loss(q2[:1].expand(6, -1).contiguous(), it2, temperature=0.05,
                       item_ids=torch.tensor([7, 7, 7, 7, 7, 7])).backward()
    assert torch.isfinite(it2.grad).all()
    assert it2.grad.abs().max().item() == pytest.approx(0.0, abs=1e-6)  # all negatives masked: loss ≡ 0


def test_bf16_inputs_computed_in_float32() -> None:
    q, it = unit(8, 16, 1), unit(8, 16, 2)
    got = batch_softmax_loss(q.bfloat16(), it.bfloat16(), temperature=0.1)
    assert got.dtype == torch.float32
    ref = naive_softmax_ce(q.bfloat16().float(), it.bfloat16().float(), 0.1)
    assert got.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("b,d,tau", [(4, 3, 0.1), (9, 8, 0.5), (16, 5, 1.0)])
def test_accidental_hits_match_naive_loop_grid(b: int, d: int, tau: float) -> None:
    q, it = unit(b, d, 21), unit(b, d, 22)
    ids = torch.tensor([i % 3 for i in range(b)])
    got = batch_softmax_loss(q, it, temperature=tau, item_ids=ids).item()
    assert got == pytest.approx(naive_softmax_ce(q, it, tau, ids=ids.tolist()), rel=1e-5, abs=1e-5)


def test_duplicate_column_equals_removing_it() -> None:
    # 4 distinct items plus a 5th pair whose item repeats item 1: for rows 1 and 4 the other copy is
    # an accidental hit, so each row's loss must equal the loss on the batch without that column.
    q, it = unit(5, 6, 31), unit(5, 6, 32)
    it[4] = it[1]
    ids = torch.tensor([0, 1, 2, 3, 1])
    removed = {0: [], 1: [4], 2: [], 3: [], 4: [1]}  # the duplicate column(s) of each row
    per_row = []
    for i, drop in removed.items():
        cols = [j for j in range(5) if j not in drop]
        logits = (q[i].double() @ it[cols].double().T) / 0.2  # (len(cols),)
        per_row.append(F.cross_entropy(logits[None], torch.tensor([cols.index(i)])).item())
    got = batch_softmax_loss(q, it, temperature=0.2, item_ids=ids).item()
    assert got == pytest.approx(sum(per_row) / 5, rel=1e-5)
    # row 1 of the masked 5-batch == row 1 of the plain 4-item batch without the duplicate
    four = batch_softmax_loss(q[:4], it[:4], temperature=0.2).item() * 4
    rows_0_2_3 = per_row[0] + per_row[2] + per_row[3]
    logits4 = (q[:4].double() @ it[:4].double().T) / 0.2
    rows_0_2_3_in_four = sum((torch.logsumexp(logits4[i], 0) - logits4[i, i]).item() for i in (0, 2, 3))
    assert per_row[1] == pytest.approx(four - rows_0_2_3_in_four, rel=1e-4)
    assert rows_0_2_3 != pytest.approx(rows_0_2_3_in_four)  # they still see column 4 as a negative


def test_accidental_hits_never_mask_the_diagonal() -> None:
    ids = torch.tensor([3, 3, 5, 3, 5])
    hits = accidental_hits(ids)
    assert hits.shape == (5, 5) and hits.dtype == torch.bool
    assert not hits.diagonal().any()
    assert hits.tolist() == [[j != i and ids[j] == ids[i] for j in range(5)] for i in range(5)]
    assert torch.equal(hits, hits.T)


def test_info_nce_symmetric_inputs() -> None:
    z = unit(8, 6, 41)
    # identical views: both directions equal, and equal the spread-out loss
    assert info_nce_loss(z, z, temperature=0.3).item() == pytest.approx(spread_out_loss(z, temperature=0.3).item())
    # z2 = z1 rotated by an orthogonal map: s(z1_i, z2_j) = s(z1_j, z2_i) only if the map is symmetric;
    # a reflection (symmetric orthogonal) makes the similarity matrix symmetric → directions agree.
    v = F.normalize(torch.randn(6, generator=torch.Generator().manual_seed(0)), dim=0)
    householder = torch.eye(6) - 2 * torch.outer(v, v)
    z2 = z @ householder
    a = info_nce_loss(z, z2, temperature=0.2).item()
    b = info_nce_loss(z2, z, temperature=0.2).item()
    assert a == pytest.approx(b, rel=1e-5)
    assert a == pytest.approx(naive_softmax_ce(z, z2, 0.2), rel=1e-5)


@pytest.mark.parametrize("b,tau", [(1, 0.1), (4, 0.05), (12, 0.5)])
def test_spread_out_equals_info_nce_self(b: int, tau: float) -> None:
    z = unit(b, 7, 51)
    assert spread_out_loss(z, temperature=tau).item() == info_nce_loss(z, z, temperature=tau).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_finite_gradients_with_masking_low_precision(dtype: torch.dtype) -> None:
    q = unit(8, 16, 61).to(dtype).requires_grad_()
    it = unit(8, 16, 62).to(dtype).requires_grad_()
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    log_q = torch.log(torch.tensor([0.3, 0.3, 0.3, 0.1, 0.1, 0.05, 0.05, 0.05])).to(dtype)
    loss = batch_softmax_loss(q, it, temperature=0.05, item_ids=ids, log_q=log_q)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert q.grad is not None and it.grad is not None
    assert q.grad.dtype == dtype and torch.isfinite(q.grad).all() and torch.isfinite(it.grad).all()
    ref = naive_softmax_ce(q.detach().float(), it.detach().float(), 0.05, ids=ids.tolist(),
                           log_q=log_q.float().tolist())
    assert loss.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_masked_logit_value_finite_in_dtype(dtype: torch.dtype) -> None:
    v = masked_logit_value(dtype)
    assert v < -1e4
    t = torch.tensor([v], dtype=dtype)
    assert torch.isfinite(t).all() and torch.isfinite(t - 100).all()


def test_float32_under_autocast() -> None:
    q, it = unit(8, 16, 71), unit(8, 16, 72)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = batch_softmax_loss(q, it, temperature=0.1)
        ssl = info_nce_loss(q, it, temperature=0.1)
    assert got.dtype == ssl.dtype == torch.float32
    assert got.item() == pytest.approx(naive_softmax_ce(q, it, 0.1), rel=1e-5)
    assert ssl.item() == pytest.approx(naive_softmax_ce(q, it, 0.1), rel=1e-5)


def test_bad_arguments_raise() -> None:
    q, it = unit(4, 3, 1), unit(4, 3, 2)
    with pytest.raises(ValueError, match="temperature"):
        batch_softmax_loss(q, it, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(q, it, temperature=-1.0)
    with pytest.raises(ValueError, match="shape"):
        batch_softmax_loss(q, unit(5, 3, 2), temperature=0.1)
    with pytest.raises(ValueError, match="shape"):
        info_nce_loss(q, unit(4, 5, 2), temperature=0.1)
    with pytest.raises(ValueError, match="item_ids"):
        batch_softmax_loss(q, it, temperature=0.1, item_ids=torch.arange(3))
    with pytest.raises(ValueError, match="log_q"):
        batch_softmax_loss(q, it, temperature=0.1, log_q=torch.zeros(4, 1))


def test_joint_loss_arithmetic() -> None:
    main, ssl = torch.tensor(1.5), torch.tensor(0.25)
    assert joint_loss(main, ssl, alpha=0.0).item() == pytest.approx(1.5)
    assert joint_loss(main, ssl, alpha=2.0).item() == pytest.approx(2.0)
    assert joint_loss(main, ssl, alpha=0.3).item() == pytest.approx(1.575)
    assert joint_loss(main, None, alpha=5.0) is main
    m = torch.tensor(1.0, requires_grad=True)
    s = torch.tensor(2.0, requires_grad=True)
    joint_loss(m, s, alpha=0.5).backward()
    assert m.grad.item() == 1.0 and s.grad.item() == 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_matches_cpu() -> None:
    q, it = unit(32, 16, 81), unit(32, 16, 82)
    ids = torch.tensor([i % 5 for i in range(32)])
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        got = batch_softmax_loss(q.cuda(), it.cuda(), temperature=0.05, item_ids=ids.cuda())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(batch_softmax_loss(q, it, temperature=0.05, item_ids=ids).item(), rel=1e-4)


def autograd_reference(a: torch.Tensor, b: torch.Tensor, tau: float, log_q: torch.Tensor | None = None,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """The loss written with plain autograd ops in float64: the closed-form backward's reference."""
    logits = a.double() @ b.double().T / tau
    if log_q is not None:
        logits = logits - log_q.double().unsqueeze(0)
    if mask is not None:
        logits = logits.masked_fill(mask, -1e9)
    return F.cross_entropy(logits, torch.arange(len(a)))


@pytest.mark.parametrize("case", ["plain", "log_q", "hits", "both"])
def test_closed_form_gradient_matches_autograd(case: str) -> None:
    b = 12
    q, it = unit(b, 5, 81).requires_grad_(), unit(b, 5, 82).requires_grad_()
    ids = torch.tensor([0, 1, 0, 2, 3, 3, 4, 5, 0, 6, 7, 8]) if case in ("hits", "both") else None
    log_q = torch.linspace(-4, -1, b) if case in ("log_q", "both") else None
    got = batch_softmax_loss(q, it, temperature=0.1, item_ids=ids, log_q=log_q)
    (got * 2.5).backward()  # a non-unit upstream gradient (alpha of eq. 5) must scale both inputs' gradients
    q_ref, it_ref = q.detach().double().requires_grad_(), it.detach().double().requires_grad_()
    mask = accidental_hits(ids) if ids is not None else None
    ref = autograd_reference(q_ref, it_ref, 0.1, log_q, mask)
    (ref * 2.5).backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(q.grad, q_ref.grad.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(it.grad, it_ref.grad.float(), rtol=1e-4, atol=1e-5)


def test_gradcheck_float64_and_shared_input() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 1, 1, 2, 3, 1])
    log_q = torch.randn(6, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x, y: batch_softmax_loss(x, y, temperature=0.3, item_ids=ids, log_q=log_q), (a, b))
    # spread-out passes one tensor as both sides: the two gradient contributions must add up
    assert torch.autograd.gradcheck(lambda x: spread_out_loss(x, temperature=0.3), (a,))
