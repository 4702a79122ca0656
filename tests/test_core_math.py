"""Reference checks of the maths: losses vs naive loops, MI vs a naive count, metrics by hand, masks."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from sslkit.model import augment, losses
from sslkit.retrieval.index import exact_topk
from sslkit.evaluation.metrics import compute_metrics
from sslkit.data.mi import mask_sets, mutual_information


def unit(b: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)


def naive_softmax(q, v, tau, ids=None):
    total = 0.0
    for i in range(len(q)):
        logits = [float(q[i] @ v[j]) / tau for j in range(len(v)) if ids is None or j == i or ids[j] != ids[i]]
        pos = float(q[i] @ v[i]) / tau
        total += -pos + math.log(sum(math.exp(x) for x in logits))
    return total / len(q)


@pytest.mark.parametrize("b,d,tau", [(2, 3, 1.0), (5, 4, 0.07), (8, 16, 0.5)])
def test_losses_match_naive_loops(b: int, d: int, tau: float) -> None:
    q, v = unit(b, d, 0), unit(b, d, 1)
    assert losses.batch_softmax_loss(q, v, temperature=tau).item() == pytest.approx(naive_softmax(q, v, tau), rel=1e-5)
    assert losses.info_nce_loss(q, v, temperature=tau).item() == pytest.approx(naive_softmax(q, v, tau), rel=1e-5)
    assert losses.spread_out_loss(q, temperature=tau).item() == pytest.approx(naive_softmax(q, q, tau), rel=1e-5)
    ids = torch.tensor([i % 3 for i in range(b)])  # repeated items → accidental hits removed
    got = losses.batch_softmax_loss(q, v, temperature=tau, item_ids=ids).item()
    assert got == pytest.approx(naive_softmax(q, v, tau, ids.tolist()), rel=1e-5)


def test_logq_correction_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    log_q = torch.log(torch.tensor([0.5, 0.25]))
    # row 0: logits [1 - ln .5, 0.6 - ln .25]; row 1: [0 - ln .5, 0.8 - ln .25]
    r0 = -(1 - math.log(0.5)) + math.log(math.exp(1 - math.log(0.5)) + math.exp(0.6 - math.log(0.25)))
    r1 = -(0.8 - math.log(0.25)) + math.log(math.exp(-math.log(0.5)) + math.exp(0.8 - math.log(0.25)))
    got = losses.batch_softmax_loss(q, v, temperature=1.0, log_q=log_q).item()
    assert got == pytest.approx((r0 + r1) / 2, rel=1e-6)
    assert losses.joint_loss(torch.tensor(2.0), torch.tensor(3.0), alpha=0.5).item() == 3.5


def naive_mi(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    joint, pa, pb = defaultdict(float), defaultdict(float), defaultdict(float)
    n = len(a)
    for ra, rb in zip(a, b):
        va = [x for x in ra if x != 0] or [0]
        vb = [x for x in rb if x != 0] or [0]
        for x in va:
            pa[x] += 1 / len(va) / n
            for y in vb:
                joint[(x, y)] += 1 / (len(va) * len(vb)) / n
        for y in vb:
            pb[y] += 1 / len(vb) / n
    mi = sum(p * math.log(p / (pa[x] * pb[y])) for (x, y), p in joint.items() if p > 0)
    ha = -sum(p * math.log(p) for p in pa.values())
    hb = -sum(p * math.log(p) for p in pb.values())
    return mi, ha, hb


def test_mi_matches_naive_reference_with_bags_and_missing_rows() -> None:
    rng = np.random.default_rng(0)
    n = 400
    cat = rng.integers(2, 8, (n, 1)).astype(np.int32)
    bag = np.where(rng.random((n, 4)) < 0.5, rng.integers(2, 12, (n, 4)), 0).astype(np.int32)  # some empty rows
    bag[:, 0] = np.where(rng.random(n) < 0.5, (cat[:, 0] + 3), bag[:, 0])  # correlated with cat
    ident = np.arange(2, n + 2, dtype=np.int32)[:, None]
    const = np.full((n, 1), 2, np.int32)
    feats = {"cat": cat, "bag": bag, "id": ident, "const": const}
    r = mutual_information(feats)
    names = list(feats)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i < j:
                mi, ha, hb = naive_mi(feats[a], feats[b])
                assert r.mi[i, j] == pytest.approx(mi, abs=1e-9) and r.mi[j, i] == r.mi[i, j]
                assert r.entropy[i] == pytest.approx(ha, abs=1e-9) and r.entropy[j] == pytest.approx(hb, abs=1e-9)
                denom = math.sqrt(ha * hb)
                assert r.nmi[i, j] == pytest.approx(mi / denom if denom > 1e-6 else 0.0, abs=1e-9)
    assert r.mi[names.index("const")].max() == pytest.approx(0.0, abs=1e-12)


def test_mask_sets_seed_first_then_most_correlated() -> None:
    m = np.array([[9, 3, 1, 3], [3, 9, 2, 0], [1, 2, 9, 5], [3, 0, 5, 9]], float)
    sets = mask_sets(m, ["a", "b", "c", "d"], 3)
    assert sets == {"a": ["a", "b", "d"], "b": ["b", "a", "c"], "c": ["c", "d", "b"], "d": ["d", "c", "a"]}
    assert mask_sets(m, ["a", "b", "c", "d"])["a"] == ["a", "b"]  # default floor(k/2)


def test_metrics_by_hand() -> None:
    # query 0: top [3, 1, 7], relevant {1, 7, 9}: hits at ranks 2 and 3
    # recall@3 = 2/3; AP@3 = (1/2 + 2/3) / min(3, 3); query 1: top [5, 4, 2], relevant {5}: AP = 1
    top = np.array([[3, 1, 7], [5, 4, 2]])
    m = compute_metrics(top, np.array([0, 3, 4]), np.array([1, 7, 9, 5]), [1, 3])
    assert m["recall@3"].tolist() == pytest.approx([2 / 3, 1.0])
    assert m["map@3"].tolist() == pytest.approx([(1 / 2 + 2 / 3) / 3, 1.0])
    assert m["recall@1"].tolist() == [0.0, 1.0] and m["map@1"].tolist() == [0.0, 1.0]
    # |rel| = 3 > K = 1 → AP@1 divides by min(3, 1) = 1
    m = compute_metrics(np.array([[1, 3, 7]]), np.array([0, 3]), np.array([1, 7, 9]), [1])
    assert m["map@1"].tolist() == [1.0] and m["mrr@1"].tolist() == [1.0]


def test_exact_topk_independent_of_blocks_and_excludes_self() -> None:
    items = unit(50, 8, 3).float()
    queries = items[:7]
    ref_s, ref_i = exact_topk(queries, items, 5, exclude_self=torch.arange(7))
    assert not (ref_i == torch.arange(7)[:, None]).any()
    brute = (queries @ items.T).fill_diagonal_(float("-inf")).topk(5).indices
    assert torch.equal(ref_i, brute)
    for qb, ib in ((1, 3), (2, 50), (7, 4)):
        s, i = exact_topk(queries, items, 5, exclude_self=torch.arange(7), query_block=qb, item_block=ib)
        assert torch.equal(i, ref_i) and torch.allclose(s, ref_s, atol=1e-6)


def test_masks_partition_and_dropout_rate() -> None:
    g = torch.Generator().manual_seed(0)
    table = augment.cfm_mask_table([[0, 2], [1, 0], [2, 3], [3, 1]], 4)
    m1, m2 = augment.cfm_masks(table, 6, generator=g)
    assert (m1 ^ m2).all() and not (m1 & m2).any() and (m1 == m1[0]).all() and m1[0].sum() == 2
    r1, r2 = augment.random_complementary_masks(100, 6, 2, generator=g)
    assert (r1.sum(1) == 2).all() and (r1 ^ r2).all()
    i1, i2 = augment.independent_random_masks(100, 6, 3, generator=g)
    assert (i1.sum(1) == 3).all() and (i2.sum(1) == 3).all() and not (i1 ^ i2).all()
    ids = torch.randint(1, 50, (1000, 100), generator=g)
    ids[:, 90:] = 0
    dropped = augment.value_dropout(ids, 0.3, generator=g)
    rate = ((dropped == 0) & (ids != 0)).sum() / (ids != 0).sum()
    assert abs(rate.item() - 0.3) < 0.01 and (dropped[:, 90:] == 0).all()
    a = augment.value_dropout(ids, 0.3, generator=torch.Generator().manual_seed(5))
    b = augment.value_dropout(ids, 0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_csr_take_and_seen_positives() -> None:
    from sslkit.data.profile import csr_take, seen_items as _seen

    indptr, items = np.array([0, 2, 2, 5]), np.array([7, 8, 1, 2, 3])
    ptr, got = csr_take(indptr, items, np.array([2, 1, 0]))
    assert ptr.tolist() == [0, 3, 3, 5] and got.tolist() == [1, 2, 3, 7, 8]
    train = np.array([[4, 9], [4, 3], [1, 5], [4, 9]])  # query 4 saw {3, 9}, query 1 saw {5}
    ptr, seen = _seen(train, np.array([4, 2, 1]))  # query 2 has no training pairs
    assert ptr.tolist() == [0, 2, 2, 3] and seen.tolist() == [3, 9, 5]


def test_rows_of_finds_ids_and_marks_unknown() -> None:
    from sslkit.retrieval.recommend import rows_of

    ids = np.array(["b", "a", "c"])
    assert rows_of(ids, ["c", "zz", "b", "a"]).tolist() == [2, -1, 0, 1]
    assert rows_of(ids, []).tolist() == []


# --- model: fused embedding with default rows; optimizer ---------------------------------------------

def entity(lengths: tuple[int, ...], rows: int, seed: int):
    """An EntityTable with padding and missing rows, and its fused layout."""
    from sslkit.model.towers import Layout
    from sslkit.data.schema import FeatureSpec
    from sslkit.data.store import EntityTable

    g = np.random.default_rng(seed)
    specs, feats = {}, {}
    for f, n in enumerate(lengths):
        vocab = 5 + 3 * f
        ids = g.integers(1, vocab, size=(rows, n)).astype(np.int32)
        ids[:, 1:] *= g.random((rows, n - 1)) < 0.6
        ids[g.random(rows) < 0.25] = 0
        specs[f"f{f}"] = FeatureSpec(name=f"f{f}", type="categorical", num_embeddings=vocab, max_len=n)
        feats[f"f{f}"] = ids
    table = EntityTable(ids=np.arange(rows).astype(str), features=feats, lengths={}, specs=specs)
    return table, Layout.from_specs(specs)


def naive_embedding(emb, table, mask: torch.Tensor) -> torch.Tensor:
    """Per row and feature: mean of the value rows, or the default when masked or missing."""
    out = []
    for r in range(table.rows):
        parts = []
        for f, (name, offset) in enumerate(zip(emb.layout.names, emb.layout.table_offsets)):
            values = [int(v) for v in table.features[name][r] if v != 0]
            if mask[r, f] or not values:
                parts.append(emb.default[f])
            else:
                parts.append(torch.stack([emb.table.weight[offset + v - 1] for v in values]).mean(0))
        out.append(torch.cat(parts))
    return torch.stack(out)


@pytest.mark.parametrize("lengths", [(1, 3, 1, 4), (1, 1, 1)])
@pytest.mark.parametrize("sparse", [True, False])
def test_feature_embedding_matches_naive_means_and_defaults(lengths: tuple[int, ...], sparse: bool) -> None:
    from sslkit.model.towers import FeatureEmbedding, fuse

    table, layout = entity(lengths, rows=40, seed=0)
    torch.manual_seed(0)
    emb = FeatureEmbedding(layout, 8, sparse=sparse)
    fused = fuse(table, layout)
    mask = torch.rand(40, len(lengths), generator=torch.Generator().manual_seed(1)) < 0.3
    for m in (torch.zeros_like(mask), mask):
        got = emb(fused.ids, m)
        assert torch.allclose(got, naive_embedding(emb, table, m), atol=1e-6)
    emb(fused.ids, mask).square().sum().backward()
    grad = emb.table.weight.grad
    assert grad.is_sparse == sparse and not grad.to_dense()[0].any()  # the padding row never learns
    assert grad.to_dense()[layout.table_rows:].abs().sum(1).gt(0).all()  # every default row is used


def test_state_dict_keeps_values_and_defaults_apart() -> None:
    from sslkit.model.towers import TwoTower, fuse

    table, layout = entity((1, 3, 2), rows=20, seed=2)
    torch.manual_seed(0)
    a = TwoTower(item_layout=layout, query_layout=None, dim=8, hidden=[16, 4])
    state = a.state_dict()
    for prefix in ("item_embedding.", "query_embedding."):
        assert state[prefix + "table.weight"].shape == (layout.table_rows, 8)
        assert torch.equal(state[prefix + "default"], a.item_embedding.default)
    torch.manual_seed(1)
    b = TwoTower(item_layout=layout, query_layout=None, dim=8, hidden=[16, 4])
    b.load_state_dict(state)
    fused = fuse(table, layout)
    assert torch.equal(a.item_vectors(fused.ids, fused.dense), b.item_vectors(fused.ids, fused.dense))


def test_sparse_adagrad_equals_torch_adagrad() -> None:
    from sslkit.model.optim import SparseAdagrad

    g = torch.Generator().manual_seed(0)
    start = torch.randn(30, 4, generator=g)
    ours, ref = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt = SparseAdagrad([ours], lr=0.1, initial_accumulator_value=0.1)
    ref_opt = torch.optim.Adagrad([ref], lr=0.1, initial_accumulator_value=0.1)
    for step in range(6):
        idx = torch.randint(0, 30, (12,), generator=g)  # repeated rows: gradients add up
        values = torch.randn(12, 4, generator=g)
        grad = torch.sparse_coo_tensor(idx.unsqueeze(0), values, (30, 4), check_invariants=True)
        ours.grad = grad if step % 2 else grad.to_dense()  # both gradient layouts
        ref.grad = grad.to_dense()
        opt.step()
        ref_opt.step()
        assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(opt.state[ours]["sum"], ref_opt.state[ref]["sum"], atol=1e-6)


def test_lean_sparse_adam_is_torch_sparse_adam_bit_for_bit() -> None:
    """The Adam path's embedding optimizer: the same numbers and state dict as torch.optim.SparseAdam."""
    from sslkit.model.optim import LeanSparseAdam

    g = torch.Generator().manual_seed(0)
    start = torch.randn(30, 4, generator=g)
    ours, ref = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt, ref_opt = LeanSparseAdam([ours], lr=0.01), torch.optim.SparseAdam([ref], lr=0.01)
    for _ in range(8):
        idx = torch.randint(0, 30, (12,), generator=g)  # repeated rows: gradients add up
        values = torch.randn(12, 4, generator=g)
        for p in (ours, ref):
            p.grad = torch.sparse_coo_tensor(idx.unsqueeze(0), values, (30, 4), check_invariants=True)
        opt.step()
        ref_opt.step()
        assert torch.equal(ours, ref)
    mine, theirs = opt.state_dict(), ref_opt.state_dict()
    assert mine["state"][0]["step"] == theirs["state"][0]["step"] == 8
    assert all(torch.equal(mine["state"][0][k], theirs["state"][0][k]) for k in ("exp_avg", "exp_avg_sq"))
    again = LeanSparseAdam([torch.nn.Parameter(start.clone())], lr=0.01)
    again.load_state_dict(theirs)  # checkpoints written with torch's SparseAdam still resume
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], theirs["state"][0]["exp_avg"])
    ours.grad = torch.zeros(30, 4)
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_l2_normalize_matches_f_normalize_values_and_gradients() -> None:
    from sslkit.model.towers import l2_normalize

    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    x[2] = 0.0  # a zero row: clamped norm, as F.normalize
    up = torch.randn(7, 5, generator=g, dtype=torch.float64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = l2_normalize(a)
    ref = torch.nn.functional.normalize(b, dim=1)
    torch.testing.assert_close(y, ref)
    (y * up).sum().backward()
    (ref * up).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.autograd.gradcheck(l2_normalize, (x[[0, 1, 3]].clone().requires_grad_(),))
    low = l2_normalize(x.bfloat16().requires_grad_())
    assert low.dtype == torch.float32  # computed and returned in float32 for low-precision inputs
