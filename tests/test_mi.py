"""Exact pairwise MI (paper eq. 4) against a pure-Python reference, sklearn, and invariants."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

import sslkit.mi
from sslkit.mi import MIResult, default_mask_size, mask_sets, mutual_information


def row_values(arr: np.ndarray, r: int) -> list[int]:
    """Non-pad values of row r (duplicates kept); [0] for a row with no value."""
    vals = [int(v) for v in np.asarray(arr)[r] if v != 0]
    return vals or [0]


def ref_joint(a: np.ndarray, b: np.ndarray) -> dict[tuple[int, int], float]:
    """Each row's unit mass spread evenly over the (value_a, value_b) pairs of its bags."""
    n = len(a)
    p: dict[tuple[int, int], float] = defaultdict(float)
    for r in range(n):
        va, vb = row_values(a, r), row_values(b, r)
        w = 1.0 / (len(va) * len(vb)) / n
        for x in va:
            for y in vb:
                p[(x, y)] += w
    return p


def ref_marginal(a: np.ndarray) -> dict[int, float]:
    n = len(a)
    p: dict[int, float] = defaultdict(float)
    for r in range(n):
        va = row_values(a, r)
        for x in va:
            p[x] += 1.0 / len(va) / n
    return p


def ref_entropy(a: np.ndarray) -> float:
    return -sum(v * math.log(v) for v in ref_marginal(a).values() if v > 0)


def ref_mi(a: np.ndarray, b: np.ndarray) -> float:
    pj = ref_joint(a, b)
    pa = defaultdict(float)
    pb = defaultdict(float)
    for (x, y), v in pj.items():
        pa[x] += v
        pb[y] += v
    return sum(v * math.log(v / (pa[x] * pb[y])) for (x, y), v in pj.items() if v > 0)


def check_against_reference(feats: dict[str, np.ndarray]) -> MIResult:
    res = mutual_information(feats)
    names = list(feats)
    assert res.features == names
    k = len(names)
    assert res.mi.shape == (k, k) and res.nmi.shape == (k, k) and res.entropy.shape == (k,)
    for i, a in enumerate(names):
        h_i = ref_entropy(feats[a])
        assert res.entropy[i] == pytest.approx(h_i, abs=1e-9)
        assert res.mi[i, i] == pytest.approx(h_i, abs=1e-9)
        for j, b in enumerate(names):
            if i == j:
                continue
            m = ref_mi(feats[a], feats[b])
            assert res.mi[i, j] == pytest.approx(m, abs=1e-9), (a, b)
            h_j = ref_entropy(feats[b])
            nmi = m / math.sqrt(h_i * h_j) if h_i > 1e-12 and h_j > 1e-12 else 0.0  # float sums of 1/n
            assert res.nmi[i, j] == pytest.approx(nmi, abs=1e-9), (a, b)
    return res


def random_features(seed: int, n: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cat = rng.integers(2, 7, size=(n, 1))
    corr = (cat + rng.integers(0, 2, size=(n, 1))) % 9 + 2  # correlated with cat
    missing = rng.integers(2, 5, size=(n, 1))
    missing[rng.random(n) < 0.2] = 0  # missing rows
    bag = rng.integers(2, 6, size=(n, 4))
    bag[rng.random((n, 4)) < 0.4] = 0  # padding (also in the middle), some empty rows
    bag[:5] = 0
    tags = rng.integers(2, 4, size=(n, 3))  # duplicates in a bag are common here
    tags[:, 2] = np.where(rng.random(n) < 0.5, 0, tags[:, 2])
    return {"cat": cat, "corr": corr, "missing": missing, "bag": bag, "tags": tags}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(seed: int) -> None:
    check_against_reference(random_features(seed))


def test_duplicates_in_bag_hand_case() -> None:
    # row 0: bag [3, 3, 5] → value 3 gets 2/3 of the row, 5 gets 1/3; row 1: [5]; row 2: empty → 0
    bag = np.array([[3, 3, 5], [5, 0, 0], [0, 0, 0]])
    cat = np.array([[2], [2], [3]])
    res = check_against_reference({"bag": bag, "cat": cat})
    # marginal of bag: {3: 2/9, 5: 1/9 + 1/3 = 4/9, 0: 1/3}
    p = [2 / 9, 4 / 9, 1 / 3]
    assert res.entropy[0] == pytest.approx(-sum(x * math.log(x) for x in p), abs=1e-12)
    # joint with cat: (3,2) 2/9, (5,2) 1/9 + 1/3, (0,3) 1/3 → cat is a function of bag: MI = H(cat)
    assert res.mi[0, 1] == pytest.approx(res.entropy[1], abs=1e-12)
    assert res.entropy[1] == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)), abs=1e-12)


def test_constant_and_id_like_features() -> None:
    rng = np.random.default_rng(5)
    n = 120
    feats = {
        "const": np.full((n, 1), 4),
        "id": rng.permutation(n)[:, None] + 2,  # every value once
        "cat": rng.integers(2, 6, size=(n, 1)),
        "bag": rng.integers(0, 5, size=(n, 3)),
    }
    res = check_against_reference(feats)
    assert res.entropy[0] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(res.mi[0], 0.0, atol=1e-12) and np.allclose(res.nmi[0], 0.0)
    assert res.entropy[1] == pytest.approx(math.log(n), abs=1e-9)
    # the id determines the single-valued cat: MI(id, cat) = H(cat)
    assert res.mi[1, 2] == pytest.approx(res.entropy[2], abs=1e-9)
    # with the bag it is not a shortcut case (bag is multi-valued); still matches the reference above


def test_all_missing_feature() -> None:
    feats = {"empty": np.zeros((10, 3), dtype=np.int64), "cat": np.arange(10)[:, None] % 3 + 2}
    res = check_against_reference(feats)
    assert res.entropy[0] == 0.0 and res.mi[0, 1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_matches_sklearn_single_valued(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    a = rng.integers(1, 8, size=n)
    b = (a * 3 + rng.integers(0, 3, size=n)) % 11 + 1
    c = rng.integers(0, 4, size=n)  # includes 0 = missing, a value of its own
    feats = {"a": a[:, None], "b": b[:, None], "c": c[:, None]}
    res = mutual_information(feats)
    cols = [a, b, c]
    for i in range(3):
        for j in range(3):
            assert res.mi[i, j] == pytest.approx(mutual_info_score(cols[i], cols[j]), abs=1e-9)
            assert res.nmi[i, j] == pytest.approx(
                normalized_mutual_info_score(cols[i], cols[j], average_method="geometric"), abs=1e-9)


def test_sort_path_equals_bincount_path(monkeypatch: pytest.MonkeyPatch) -> None:
    feats = random_features(7)
    dense = mutual_information(feats)
    monkeypatch.setattr(sslkit.mi, "_DENSE_LIMIT", 1)
    sparse = mutual_information(feats)
    np.testing.assert_allclose(sparse.mi, dense.mi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sparse.nmi, dense.nmi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sparse.entropy, dense.entropy, rtol=0, atol=0)
    check_against_reference(feats)  # still under the patched limit


def test_chunked_path_equals_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslkit.mi, "_CHUNK", 5)  # many small chunks
    check_against_reference(random_features(8, n=60))
    monkeypatch.setattr(sslkit.mi, "_DENSE_LIMIT", 1)
    check_against_reference(random_features(9, n=60))


bag_strategy = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=1), min_size=n, max_size=n),
    st.lists(st.lists(st.integers(0, 4), min_size=3, max_size=3), min_size=n, max_size=n),
    st.lists(st.lists(st.integers(0, 6), min_size=2, max_size=2), min_size=n, max_size=n),
))


@settings(max_examples=40, deadline=None)
@given(bag_strategy)
def test_invariants_property(cols: tuple[list, list, list]) -> None:
    feats = {f"f{i}": np.array(c, dtype=np.int64) for i, c in enumerate(cols)}
    res = mutual_information(feats)
    assert np.array_equal(res.mi, res.mi.T) and np.array_equal(res.nmi, res.nmi.T)
    assert (res.mi >= 0).all() and (res.entropy >= 0).all()
    assert (res.nmi >= 0).all() and (res.nmi <= 1).all()
    h = res.entropy
    assert (res.mi <= np.minimum.outer(h, h) + 1e-9).all()
    for i in range(3):
        for j in range(i + 1, 3):
            assert res.mi[i, j] == pytest.approx(ref_mi(feats[f"f{i}"], feats[f"f{j}"]), abs=1e-9)


# ---- mask sets --------------------------------------------------------------------------------

FEATS = ["a", "b", "c", "d", "e"]
M = np.array([
    [9.0, 0.1, 0.5, 0.5, 0.3],  # a: c and d tie at 0.5 → feature order (c first)
    [0.1, 9.0, 0.2, 0.7, 0.2],
    [0.5, 0.2, 9.0, 0.0, 0.9],
    [0.5, 0.7, 0.0, 9.0, 0.4],
    [0.3, 0.2, 0.9, 0.4, 9.0],
])


def test_mask_sets_hand_matrix() -> None:
    # default size: floor(5 / 2) = 2
    assert default_mask_size(5) == 2
    assert mask_sets(M, FEATS) == {"a": ["a", "c"], "b": ["b", "d"], "c": ["c", "e"], "d": ["d", "b"],
                                   "e": ["e", "c"]}
    # size 3: seed first, then decreasing value, ties by feature order
    assert mask_sets(M, FEATS, 3) == {"a": ["a", "c", "d"], "b": ["b", "d", "c"], "c": ["c", "e", "a"],
                                      "d": ["d", "b", "a"], "e": ["e", "c", "d"]}
    # k = 1: just the seed
    assert mask_sets(M, FEATS, 1) == {f: [f] for f in FEATS}
    # ties: b's c and e tie at 0.2 → c before e
    assert mask_sets(M, FEATS, 4)["b"] == ["b", "d", "c", "e"]
    # sizes clamp to k − 1
    assert all(len(v) == 4 for v in mask_sets(M, FEATS, 10).values())


def test_mask_sets_small_k() -> None:
    m2 = np.array([[1.0, 0.3], [0.3, 1.0]])
    assert mask_sets(m2, ["x", "y"]) == {"x": ["x"], "y": ["y"]}
    assert mask_sets(m2, ["x", "y"], 2) == {"x": ["x"], "y": ["y"]}  # clamped to k − 1 = 1
    assert mask_sets(np.array([[1.0]]), ["x"]) == {"x": ["x"]}
    assert [default_mask_size(k) for k in (1, 2, 3, 4, 7)] == [1, 1, 1, 2, 3]


def test_to_json_from_json_round_trip() -> None:
    res = mutual_information(random_features(11, n=80))
    obj = res.to_json()
    back = MIResult.from_json(obj)
    assert back.features == res.features
    np.testing.assert_array_equal(back.mi, res.mi)
    np.testing.assert_array_equal(back.nmi, res.nmi)
    np.testing.assert_array_equal(back.entropy, res.entropy)
    assert obj["mask_size"] == 2 and obj["measure"] == "mi"
    assert obj["mask_sets"] == mask_sets(res.mi, res.features, 2)
    obj_n = res.to_json(mask_size=3, normalized=True)
    assert obj_n["measure"] == "nmi" and obj_n["mask_size"] == 3
    assert obj_n["mask_sets"] == mask_sets(res.nmi, res.features, 3)
    import json
    again = MIResult.from_json(json.loads(json.dumps(obj)))
    np.testing.assert_array_equal(again.mi, res.mi)


@pytest.mark.parametrize("field,value", [
    ("mi", [[0.0, 0.0]]),
    ("nmi", [[0.0]]),
    ("entropy", [0.0, 0.0, 0.0]),
    ("features", ["a", "b", "c"]),
])
def test_from_json_rejects_bad_shapes(field: str, value: object) -> None:
    obj = {"features": ["a", "b"], "mi": [[1.0, 0.1], [0.1, 1.0]], "nmi": [[1.0, 0.1], [0.1, 1.0]],
           "entropy": [1.0, 1.0]}
    MIResult.from_json(obj)  # valid as is
    obj[field] = value
    with pytest.raises(ValueError):
        MIResult.from_json(obj)
