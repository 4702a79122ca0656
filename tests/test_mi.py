"""Exact pairwise MI (paper eq. 4) against a pure-Python reference, sklearn, and invariants."""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

import sslkit.data.mi
from sslkit.data.mi import (MIResult, PlotDependencyError, _mutual_information, default_mask_size, mask_sets,
                       mutual_information, plot_heatmap)


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
    pa: dict[int, float] = defaultdict(float)
    pb: dict[int, float] = defaultdict(float)
    for (x, y), v in pj.items():
        pa[x] += v
        pb[y] += v
    return sum(v * math.log(v / (pa[x] * pb[y])) for (x, y), v in pj.items() if v > 0)


def check_against_reference(feats: dict[str, np.ndarray], **kwargs: int) -> MIResult:
    """Compare every entry of the result with the pure-Python reference at 1e-9."""
    res = _mutual_information(feats, **kwargs) if kwargs else mutual_information(feats)
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
    ident = rng.permutation(n) + 2
    feats = {"a": a[:, None], "b": b[:, None], "c": c[:, None], "id": ident[:, None]}
    res = mutual_information(feats)
    cols = [a, b, c, ident]
    for i in range(4):
        for j in range(4):
            assert res.mi[i, j] == pytest.approx(mutual_info_score(cols[i], cols[j]), abs=1e-9)
            assert res.nmi[i, j] == pytest.approx(
                normalized_mutual_info_score(cols[i], cols[j], average_method="geometric"), abs=1e-9)


def test_nmi_of_constant_features_is_zero() -> None:
    # documented: nmi = 0 when an entropy is 0 (scikit-learn returns 1 for two constant labelings)
    res = mutual_information({"c1": np.full((9, 1), 3), "c2": np.full((9, 1), 5), "x": np.arange(9)[:, None] % 2 + 2})
    assert res.nmi[0, 1] == 0.0 and res.nmi[0, 0] == 0.0 and res.nmi[2, 2] == 1.0 and res.nmi[0, 2] == 0.0
    assert normalized_mutual_info_score([3] * 9, [5] * 9, average_method="geometric") == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.lists(st.integers(0, 6), min_size=n, max_size=n),
                                                     st.lists(st.integers(0, 3), min_size=n, max_size=n))))
def test_matches_sklearn_property(cols: tuple[list[int], list[int]]) -> None:
    x, y = np.array(cols[0]), np.array(cols[1])
    res = mutual_information({"x": x[:, None], "y": y[:, None]})
    assert res.mi[0, 1] == pytest.approx(mutual_info_score(x, y), abs=1e-9)
    if res.entropy.min() > 0:
        assert res.nmi[0, 1] == pytest.approx(normalized_mutual_info_score(x, y, average_method="geometric"), abs=1e-9)


def test_sort_path_equals_bincount_path() -> None:
    feats = random_features(7)
    feats["id"] = np.random.default_rng(7).permutation(200)[:, None] + 2
    dense = _mutual_information(feats)
    sparse = _mutual_information(feats, dense_limit=0)  # every pair counted by sorting
    np.testing.assert_allclose(sparse.mi, dense.mi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sparse.nmi, dense.nmi, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sparse.entropy, dense.entropy)
    check_against_reference(feats, dense_limit=0)


def test_chunked_paths_equal_reference() -> None:
    check_against_reference(random_features(8, n=60), chunk=5)  # many small row chunks, bincount
    check_against_reference(random_features(9, n=60), chunk=5, dense_limit=0)  # chunks, sort + merge


def test_sort_path_without_room_for_weight_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslkit.data.mi, "_COMPOSITE_MAX", 1)  # force the weighted np.unique fallback
    check_against_reference(random_features(10, n=60), dense_limit=0)
    check_against_reference(random_features(12, n=60), dense_limit=0, chunk=7)


def test_sort_path_value_spanning_many_chunks() -> None:
    rng = np.random.default_rng(13)
    n = 120
    bag = rng.integers(2, 9, size=(n, 4))
    bag[rng.random((n, 4)) < 0.3] = 0
    bag[rng.random(n) < 0.7, 0] = 5  # one value in most rows: its values span many chunks
    feats = {"bag": bag, "cat": rng.integers(2, 30, size=(n, 1)), "tags": rng.integers(0, 4, size=(n, 3))}
    for chunk in (3, 8, 50):
        check_against_reference(feats, dense_limit=0, chunk=chunk)


def test_large_ids_factorized_by_sorting() -> None:
    rng = np.random.default_rng(4)
    n = 150
    base = rng.integers(2, 9, size=(n, 1))
    feats = {"big": base * 10_000_019 + 3, "bigbag": np.where(rng.random((n, 2)) < 0.6, base * 1_000_003, 0),
             "base": base}
    res = check_against_reference(feats)
    assert res.mi[0, 2] == pytest.approx(res.entropy[2], abs=1e-12)  # same partition, relabelled


def test_id_with_repeated_missing_is_not_a_shortcut() -> None:
    n = 50
    ident = np.arange(2, n + 2)[:, None]
    ident[:3] = 0  # three missing rows share the value "missing"
    cat = (np.arange(n) % 4 + 2)[:, None]
    check_against_reference({"id": ident, "cat": cat, "cat2": (np.arange(n) % 3 + 2)[:, None]})


def test_single_value_per_row_bag_equals_single_valued() -> None:
    rng = np.random.default_rng(6)
    n = 100
    single = rng.integers(2, 7, size=(n, 1))
    single[:7] = 0
    padded = np.zeros((n, 3), dtype=np.int64)
    padded[np.arange(n), rng.integers(0, 3, n)] = single[:, 0]  # one value, anywhere in the row
    other = (single + rng.integers(0, 2, size=(n, 1))) % 5 + 2
    a = mutual_information({"f": single, "o": other})
    b = check_against_reference({"f": padded, "o": other})
    np.testing.assert_allclose(a.mi, b.mi, rtol=0, atol=1e-12)


@pytest.mark.parametrize("feats,match", [
    ({"a": np.zeros((3, 1), np.float32)}, "integer"),
    ({"a": np.zeros((3, 1, 1), np.int32)}, "integer"),
    ({"a": np.full((3, 1), -1)}, "negative"),
    ({"a": np.zeros((3, 1), np.int32), "b": np.zeros((4, 1), np.int32)}, "rows"),
    ({"a": np.zeros((0, 1), np.int32)}, "row"),
])
def test_rejects_bad_features(feats: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mutual_information(feats)


def test_empty_mapping() -> None:
    res = mutual_information({})
    assert res.features == [] and res.mi.shape == (0, 0) and res.entropy.shape == (0,)
    back = MIResult.from_json(res.to_json())
    assert back.mi.shape == (0, 0) and back.nmi.shape == (0, 0)


bag_strategy = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=1), min_size=n, max_size=n),
    st.lists(st.lists(st.integers(0, 4), min_size=3, max_size=3), min_size=n, max_size=n),
    st.lists(st.lists(st.integers(0, 6), min_size=2, max_size=2), min_size=n, max_size=n),
))


@settings(max_examples=40, deadline=None)
@given(bag_strategy)
def test_invariants_property(cols: tuple[list[list[int]], ...]) -> None:
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
    sorted_path = _mutual_information(feats, dense_limit=0, chunk=4)
    np.testing.assert_allclose(sorted_path.mi, res.mi, rtol=0, atol=1e-12)


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
    assert mask_sets(np.array([[1.0]]), ["x"], 3) == {"x": ["x"]}
    assert mask_sets(np.zeros((0, 0)), []) == {}
    assert [default_mask_size(k) for k in (0, 1, 2, 3, 4, 7, 8)] == [1, 1, 1, 1, 2, 3, 4]


def test_mask_sets_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        mask_sets(M, FEATS[:4])
    with pytest.raises(ValueError, match="mask_size"):
        mask_sets(M, FEATS, 0)
    with pytest.raises(ValueError):
        default_mask_size(-1)


def test_mask_sets_from_real_mi() -> None:
    rng = np.random.default_rng(2)
    n = 300
    a = rng.integers(2, 12, size=(n, 1))
    feats = {"a": a, "noise": rng.integers(2, 12, size=(n, 1)), "a_coarse": a // 3, "a_noisy": np.where(
        rng.random((n, 1)) < 0.5, a, rng.integers(2, 12, size=(n, 1)))}
    res = mutual_information(feats)
    assert mask_sets(res.mi, res.features, 3)["a"] == ["a", "a_coarse", "a_noisy"]
    assert mask_sets(res.nmi, res.features)["noise"][0] == "noise"


def test_to_json_from_json_round_trip() -> None:
    res = mutual_information(random_features(11, n=80))
    obj = res.to_json()
    assert set(obj) == {"features", "mi", "nmi", "entropy", "mask_sets", "mask_size", "measure"}
    assert type(obj["mi"][0][1]) is float and type(obj["entropy"][0]) is float and type(obj["mask_size"]) is int
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
    assert res.to_json(mask_size=99)["mask_size"] == 4  # clamped to k − 1
    again = MIResult.from_json(json.loads(json.dumps(obj_n)))
    np.testing.assert_array_equal(again.mi, res.mi)
    with pytest.raises(ValueError, match="mask_size"):
        res.to_json(mask_size=0)


GOOD = {"features": ["a", "b"], "mi": [[1.0, 0.1], [0.1, 1.0]], "nmi": [[1.0, 0.1], [0.1, 1.0]],
        "entropy": [1.0, 1.0], "mask_sets": {"a": ["a"], "b": ["b"]}, "mask_size": 1, "measure": "mi"}


@pytest.mark.parametrize("field,value,match", [
    ("mi", [[0.0, 0.0]], "shape"),
    ("nmi", [[0.0]], "shape"),
    ("entropy", [0.0, 0.0, 0.0], "shape"),
    ("features", ["a", "b", "c"], "shape"),
    ("features", ["a", "a"], "duplicate"),
    ("features", "ab", "list"),
    ("mi", [[1.0, 0.1], [0.1]], "numeric"),
    ("mi", [[1.0, "x"], [0.1, 1.0]], "numeric"),
    ("entropy", [1.0, float("nan")], "finite"),
    ("mi", [[1.0, 0.1], [0.5, 1.0]], "symmetric"),
    ("nmi", [[1.0, 1.5], [1.5, 1.0]], "outside"),
    ("entropy", [1.0, -1.0], "negative"),
    ("mask_sets", {"a": ["a"]}, "mask_sets"),
    ("mask_sets", {"a": ["b", "a"], "b": ["b"]}, "seed"),
    ("mask_sets", {"a": ["a", "z"], "b": ["b"]}, "seed"),
    ("measure", "pmi", "measure"),
    ("mask_size", 0, "mask_size"),
    ("mask_size", 1.5, "mask_size"),
])
def test_from_json_rejects_bad_input(field: str, value: object, match: str) -> None:
    obj = json.loads(json.dumps(GOOD))
    MIResult.from_json(obj)  # valid as is
    obj[field] = value
    with pytest.raises(ValueError, match=match):
        MIResult.from_json(obj)


def test_from_json_rejects_missing_keys_and_non_objects() -> None:
    obj = dict(GOOD)
    del obj["nmi"]
    with pytest.raises(ValueError, match="nmi"):
        MIResult.from_json(obj)
    with pytest.raises(ValueError, match="object"):
        MIResult.from_json([1, 2])  # type: ignore[arg-type]


# ---- plot -------------------------------------------------------------------------------------

def test_plot_heatmap_writes_png_atomically(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = mutual_information(random_features(3, n=40))
    out = tmp_path / "sub" / "mi.png"
    plot_heatmap(res, str(out), normalized=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["mi.png"]  # no temp file left behind


def test_plot_heatmap_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    res = mutual_information({"a": np.arange(4)[:, None] + 2})
    with pytest.raises(ImportError, match=r"pip install 'sslkit\[plot\]'") as info:
        plot_heatmap(res, str(tmp_path / "x.png"), False)
    assert isinstance(info.value, PlotDependencyError)
    assert not (tmp_path / "x.png").exists()
