"""Retrieval metrics: hand-computed cases, a naive reference, invariants, paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslkit.evaluation.metrics import (average_precision_at_k, compute_metrics, hits_matrix, mean_std, ndcg_at_k,
                            paired_bootstrap_ci, recall_at_k, reciprocal_rank_at_k, relevant_counts, summarize)

L2, L3 = math.log2(3), math.log2(4)  # NDCG discounts of ranks 2 and 3: 1/log2(3), 1/log2(4) = 1/2


def csr(sets: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr [Q+1], items [nnz]) of a list of relevant sets."""
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    items = np.array([i for s in sets for i in s], dtype=np.int64)
    return indptr, items


def test_hand_computed_cases() -> None:
    topk = np.array([
        [3, 1, 7],    # q0: rel {1, 7, 9}: hits at ranks 2, 3
        [5, 2, -1],   # q1: rel {2, 5, 8, 9}: |rel| = 4 > K; hits at ranks 1, 2, then padding
        [4, -1, -1],  # q2: rel {4, 6}: one hit then padding
        [0, 1, 2],    # q3: rel {9}: no hit
    ])
    indptr, items = csr([[1, 7, 9], [2, 5, 8, 9], [4, 6], [9]])
    m = compute_metrics(topk, indptr, items, [1, 3])
    # recall@3: 2/3, 2/4, 1/2, 0
    np.testing.assert_allclose(m["recall@3"], [2 / 3, 2 / 4, 1 / 2, 0], atol=1e-15)
    # AP@3 = Σ P@i·hit(i) / min(|rel|, 3):
    #   q0 (1/2 + 2/3) / 3 = 7/18; q1 (1/1 + 2/2) / min(4, 3) = 2/3; q2 (1/1) / 2; q3 0
    np.testing.assert_allclose(m["map@3"], [7 / 18, 2 / 3, 1 / 2, 0], atol=1e-15)
    # NDCG@3: DCG / IDCG over min(|rel|, 3) ideal hits
    #   q0 (1/log2 3 + 1/2) / (1 + 1/log2 3 + 1/2); q1 (1 + 1/log2 3) / (1 + 1/log2 3 + 1/2)
    #   q2 1 / (1 + 1/log2 3); q3 0
    full3 = 1 + 1 / L2 + 1 / L3
    np.testing.assert_allclose(m["ndcg@3"], [(1 / L2 + 1 / L3) / full3, (1 + 1 / L2) / full3, 1 / (1 + 1 / L2), 0],
                               atol=1e-15)
    # MRR@3: 1/2, 1, 1, 0
    np.testing.assert_allclose(m["mrr@3"], [0.5, 1, 1, 0], atol=1e-15)
    # @1: only rank 1 counts; AP@1 divides by min(|rel|, 1) = 1
    np.testing.assert_allclose(m["recall@1"], [0, 1 / 4, 1 / 2, 0], atol=1e-15)
    np.testing.assert_allclose(m["map@1"], [0, 1, 1, 0], atol=1e-15)
    np.testing.assert_allclose(m["ndcg@1"], [0, 1, 1, 0], atol=1e-15)
    np.testing.assert_allclose(m["mrr@1"], [0, 1, 1, 0], atol=1e-15)
    assert sorted(m) == sorted(f"{n}@{k}" for n in ("recall", "map", "ndcg", "mrr") for k in (1, 3))


def test_ap_divides_by_min_rel_k() -> None:
    # topk [5, 2], rel {2, 5, 8, 9}, K = 2: both retrieved are relevant.
    # AP@2 = (1/1 + 2/2) / min(4, 2) = 1 (dividing by |rel| = 4 would give 0.5)
    hits = hits_matrix(np.array([[5, 2]]), *csr([[2, 5, 8, 9]]))
    assert average_precision_at_k(hits, np.array([4]), 2)[0] == 1.0
    assert recall_at_k(hits, np.array([4]), 2)[0] == 0.5


def test_duplicates_and_padding_collisions() -> None:
    # Duplicates inside a relevant set count once: {1, 1, 7, 9, 9} == {1, 7, 9}
    indptr, items = csr([[1, 1, 7, 9, 9], [0]])
    np.testing.assert_array_equal(relevant_counts(indptr, items), [3, 1])
    topk = np.array([[3, 1, 7], [-1, -1, -1]])
    # The −1 of q1 has key 1·n − 1, which equals q0's key of item n − 1 = 9: must not be a hit
    hits = hits_matrix(topk, indptr, items)
    np.testing.assert_array_equal(hits, [[False, True, True], [False, False, False]])
    # A repeated retrieved item counts only at its first rank: [1, 1, 7] vs {1, 7} → hits 1, 0, 1
    np.testing.assert_array_equal(hits_matrix(np.array([[1, 1, 7]]), *csr([[1, 7]])), [[True, False, True]])


def test_errors() -> None:
    topk = np.array([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="no relevant"):
        compute_metrics(topk, *csr([[1], []]), [1])
    with pytest.raises(ValueError, match="outside"):
        compute_metrics(topk, *csr([[1], [2]]), [3])
    with pytest.raises(ValueError, match="outside"):
        compute_metrics(topk, *csr([[1], [2]]), [0])
    hits = hits_matrix(topk, *csr([[1], [2]]))
    for fn in (recall_at_k, average_precision_at_k, ndcg_at_k, reciprocal_rank_at_k):
        with pytest.raises(ValueError):
            fn(hits, np.array([1, 0]), 1)
        with pytest.raises(ValueError):
            fn(hits, np.array([1, 1]), 3)
    with pytest.raises(ValueError):
        hits_matrix(topk, np.array([0, 1]), np.array([1]))  # Q + 1 offsets needed
    with pytest.raises(ValueError):
        hits_matrix(topk, np.array([0, 1, 2]), np.array([1, -3]))


def naive(topk: np.ndarray, sets: list[list[int]], k: int) -> dict[str, np.ndarray]:
    """Textbook per-query loop."""
    out: dict[str, list[float]] = {"recall": [], "map": [], "ndcg": [], "mrr": []}
    for row, rel_list in zip(topk, sets):
        rel, seen, hits = set(rel_list), set(), []
        for item in row[:k]:
            hits.append(item >= 0 and item in rel and item not in seen)
            seen.add(item)
        n_hit, ap, dcg, rr = 0, 0.0, 0.0, 0.0
        for i, h in enumerate(hits, start=1):
            if h:
                n_hit += 1
                ap += n_hit / i
                dcg += 1 / math.log2(i + 1)
                rr = rr or 1 / i
        idcg = sum(1 / math.log2(i + 1) for i in range(1, min(len(rel), k) + 1))
        out["recall"].append(n_hit / len(rel))
        out["map"].append(ap / min(len(rel), k))
        out["ndcg"].append(dcg / idcg)
        out["mrr"].append(rr)
    return {name: np.array(v) for name, v in out.items()}


def random_case(rng: np.random.Generator, q: int, k: int, n: int) -> tuple[np.ndarray, list[list[int]]]:
    """Rows of distinct items (some padded with −1) and relevant sets with duplicates."""
    topk = np.argsort(rng.random((q, n)), axis=1)[:, :k].astype(np.int64)
    pad = rng.integers(0, k + 1, q)
    topk[np.arange(k)[None, :] >= (k - pad[:, None] // 3)] = -1
    sets = [list(rng.integers(0, n, rng.integers(1, 15))) for _ in range(q)]
    return topk, sets


def test_vectorized_matches_naive_loop() -> None:
    rng = np.random.default_rng(0)
    topk, sets = random_case(rng, 500, 20, 50)
    m = compute_metrics(topk, *csr(sets), [1, 5, 10, 20])
    for k in (1, 5, 10, 20):
        ref = naive(topk, sets, k)
        for name in ref:
            np.testing.assert_allclose(m[f"{name}@{k}"], ref[name], rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 12), st.integers(1, 40), st.integers(0, 2**31))
def test_metrics_in_unit_interval(q: int, k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    topk = rng.integers(-1, n, (q, k))  # may repeat items and contain padding anywhere
    sets = [list(rng.integers(0, n, rng.integers(1, 2 * n + 1))) for _ in range(q)]
    m = compute_metrics(topk, *csr(sets), sorted({1, k}))
    for name, v in m.items():
        assert v.shape == (q,) and v.dtype == np.float64
        assert ((v >= 0) & (v <= 1 + 1e-12)).all(), name


def test_summarize_and_mean_std() -> None:
    assert summarize({"recall@1": np.array([0.0, 1.0, 0.5])}) == {"recall@1": 0.5}
    assert math.isnan(summarize({"x": np.array([])})["x"])
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_bootstrap_identical_and_paired() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(3000)
    same = paired_bootstrap_ci(b, b.copy(), n_boot=300)
    assert same["relative"] == 0.0 and same["low"] <= 0.0 <= same["high"]
    # t = 1.05·b query by query: every paired replicate has exactly +5 % (an unpaired one would not)
    scaled = paired_bootstrap_ci(b, 1.05 * b, n_boot=300)
    assert scaled["low"] == pytest.approx(0.05, abs=1e-9) and scaled["high"] == pytest.approx(0.05, abs=1e-9)
    assert scaled["p_value"] == 0.0


def test_bootstrap_better_worse_deterministic() -> None:
    rng = np.random.default_rng(2)
    b = (rng.random(2000) < 0.3).astype(float)
    t = np.maximum(b, rng.random(2000) < 0.15)  # strictly more hits
    better = paired_bootstrap_ci(b, t, n_boot=500, seed=3)
    assert better["relative"] > 0 and better["low"] > 0 and better["p_value"] < 0.01
    assert better == paired_bootstrap_ci(b, t, n_boot=500, seed=3)
    assert better != paired_bootstrap_ci(b, t, n_boot=500, seed=4)
    worse = paired_bootstrap_ci(t, b, n_boot=500, seed=3)
    assert worse["high"] < 0 and worse["p_value"] > 0.99  # one-sided p for "treatment is better"
    assert worse["low"] <= worse["relative"] <= worse["high"]


def test_bootstrap_large_q_and_errors() -> None:
    rng = np.random.default_rng(3)
    b = rng.random(300_000)
    r = paired_bootstrap_ci(b, b + 0.01, n_boot=40)  # chunked: 14 replicates per chunk
    assert 0 < r["low"] <= r["relative"] <= r["high"]
    zero = paired_bootstrap_ci(np.zeros(5), np.ones(5), n_boot=10)
    assert math.isnan(zero["relative"]) and math.isnan(zero["low"])
    with pytest.raises(ValueError):
        paired_bootstrap_ci(b, b[:-1])
    with pytest.raises(ValueError):
        paired_bootstrap_ci(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        paired_bootstrap_ci(b, b, level=1.5)


def test_novel_pairs_both_directions_and_its_slice() -> None:
    """A test pair is novel when training holds neither (q, j) nor, item-to-item, (j, q); the novel
    slice scores exactly those pairs and cuts across head / tail / cold."""
    from sslkit.data.profile import novel_pairs
    from sslkit.evaluation.evaluate import slice_metrics, slice_per_query

    train = np.array([[0, 1], [2, 3], [4, 0]])
    q = np.array([0, 1, 3, 0, 5])
    j = np.array([1, 0, 2, 4, 6])
    assert novel_pairs(q, j, train, both_directions=True).tolist() == [False, False, False, False, True]
    assert novel_pairs(q, j, train, both_directions=False).tolist() == [False, True, True, True, True]
    assert novel_pairs(q, j, np.zeros((0, 2), np.int64), both_directions=True).all()  # nothing trained: all novel
    # queries 0 and 1; query 0 has items 1 (seen), 7 (novel); query 1 has item 2 (novel)
    queries, indptr, items = np.array([0, 1]), np.array([0, 2, 3]), np.array([1, 7, 2])
    novel = novel_pairs(np.repeat(queries, np.diff(indptr)), items, np.array([[0, 1]]), both_directions=True)
    top = np.array([[7, 5], [1, 3]])  # query 0 finds its novel item 7, query 1 misses item 2
    labels = np.array([0, 1, 1])
    per = slice_per_query(top, queries, indptr, items, labels, [2], novel)
    assert per["novel"]["recall@2"].tolist() == [1.0, 0.0]
    out = slice_metrics(per, labels, novel)
    assert out["novel"]["pairs"] == 2 and out["novel"]["recall@2"] == 0.5
    assert out["head"]["pairs"] == 1 and out["tail"]["pairs"] == 2
