"""sslkit.study.stats against hand-worked cases and naive reference loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sslkit.evaluation.metrics import paired_seeds_bootstrap_ci
from sslkit.study.stats import (
    _boot_means,
    binomial_ci,
    expected_max_curve,
    hierarchical_paired_ci,
    holm,
    null_check,
    verdict,
)


def _naive_boot_means(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One draw at a time, index by index, consuming the generator as the vectorized code does."""
    r, s, q = x.shape
    rng = np.random.default_rng(seed)
    reps = rng.integers(0, r, size=(n_boot, r))
    seeds = rng.integers(0, s, size=(n_boot, r, s))
    queries = rng.integers(0, q, size=(n_boot, q))
    mx, my = np.zeros(n_boot), np.zeros(n_boot)
    for j in range(n_boot):
        for i in range(r):
            for k in range(s):
                for qq in queries[j]:
                    mx[j] += x[reps[j, i], seeds[j, i, k], qq]
                    my[j] += y[reps[j, i], seeds[j, i, k], qq]
    return mx / (r * s * q), my / (r * s * q)


def test_hierarchical_bootstrap_means_match_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 2, 7)), rng.random((3, 2, 7))
    fast = _boot_means(x, y, n_boot=40, seed=5, resample_replicates=True)
    slow = _naive_boot_means(x, y, n_boot=40, seed=5)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-12)


def test_point_estimate_wins_and_fields() -> None:
    base = np.full((3, 2, 4), 0.5)
    arm = base + np.array([0.1, -0.05, 0.2])[:, None, None]  # replicate 1 loses
    res = hierarchical_paired_ci(base, arm, relative=False, n_boot=200)
    assert res["delta"] == pytest.approx(0.25 / 3)
    assert (res["wins"], res["replicates"], res["seeds"], res["queries"]) == (2, 3, 2, 4)
    assert res["resamples"] == "replicates x seeds x queries"
    rel = hierarchical_paired_ci(base, arm, n_boot=200)
    assert rel["delta"] == pytest.approx((0.5 + 0.25 / 3) / 0.5 - 1)
    raw = hierarchical_paired_ci(base, arm, relative=False, n_boot=500, expand=False)
    # only replicates vary: every draw is a mean of 3 of the replicate differences
    assert -0.05 - 1e-12 <= raw["ci"][0] <= raw["ci"][1] <= 0.2 + 1e-12 and raw["expansion"] == 1.0
    assert res["expansion"] > 2  # df ≈ R − 1 = 2: t_2 widens a lot
    assert hierarchical_paired_ci(base, arm, n_boot=200, seed=3) == hierarchical_paired_ci(base, arm, n_boot=200,
                                                                                           seed=3)


def _replicated(rng: np.random.Generator, shifts: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Base [3, 3, 400] and an arm whose relative change in replicate r is shifts[r] (plus seed/query noise)."""
    base = rng.beta(2.0, 3.0, 400)[None, None, :] + rng.normal(0, 0.01, (3, 3, 1)) + rng.normal(0, 0.02, (3, 3, 400))
    arm = base * (1 + np.asarray(shifts))[:, None, None] + rng.normal(0, 0.02, (3, 3, 400))
    return np.clip(base, 0, None), np.clip(arm, 0, None)


def test_interval_widens_when_tuning_replicates_disagree() -> None:
    """Issue 20's constructed case: the same data, except that the replicates' picks disagree in sign."""
    agree = _replicated(np.random.default_rng(7), [0.06, 0.05, 0.07])
    disagree = _replicated(np.random.default_rng(7), [0.06, -0.05, 0.07])
    a = hierarchical_paired_ci(*agree, n_boot=1000)
    d = hierarchical_paired_ci(*disagree, n_boot=1000)
    assert a["ci"][0] > 0 and verdict(a["ci"], a["p"]) == "helps" and a["wins"] == 3
    assert d["ci"][0] < 0 < d["ci"][1] and verdict(d["ci"], d["p"]) == "no detectable difference"
    assert d["ci"][1] - d["ci"][0] > 3 * (a["ci"][1] - a["ci"][0]) and d["wins"] == 2
    assert d["p"] > 0.05 and a["p"] < 0.01
    # the old seeds × queries interval, on the one replicate a study used to tune, calls it significant
    old = paired_seeds_bootstrap_ci(disagree[0][0], disagree[1][0], n_boot=1000)
    assert old["low"] > 0


def test_one_replicate_works_and_says_tuning_is_not_covered() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((4, 60))
    arm = base + 0.3
    res = hierarchical_paired_ci(base, arm, n_boot=300)  # [S, Q]
    assert res["replicates"] == 1 and res["seeds"] == 4 and "tuning not covered" in res["resamples"]
    assert res["ci"][0] > 0 and res["p"] == pytest.approx(1 / 300)  # never below 1/n_boot
    assert hierarchical_paired_ci(base[None], arm[None], n_boot=300) == res
    null = hierarchical_paired_ci(base, base.copy(), n_boot=300)
    assert null["delta"] == 0.0 and null["p"] == 1.0 and null["ci"] == [0.0, 0.0]


def test_relative_interval_never_below_minus_100_percent() -> None:
    rng = np.random.default_rng(3)
    base = rng.random((2, 2, 50))
    arm = base * np.array([0.05, 1.9])[:, None, None]
    res = hierarchical_paired_ci(base, arm, n_boot=300)
    assert res["ci"][0] == -1.0 and res["ci"][1] > 0


def test_hierarchical_ci_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same non-empty"):
        hierarchical_paired_ci(np.zeros((2, 2, 5)), np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="n_boot"):
        hierarchical_paired_ci(np.zeros((2, 2, 5)), np.zeros((2, 2, 5)), n_boot=0)


def test_null_false_positive_rate_is_near_nominal_when_replicates_dominate() -> None:
    """Simulated null: replicate effects dominate. The raw percentile interval over 3 replicates is far too
    narrow; the expanded one is not."""
    rng = np.random.default_rng(11)
    raw = exp = 0
    n = 100
    for i in range(n):
        q = rng.random(100) * 0.5
        b, a = (q + rng.normal(0, 0.02, (3, 1, 1)) + rng.normal(0, 0.005, (3, 2, 1))
                + rng.normal(0, 0.05, (3, 2, 100)) for _ in range(2))
        exp += verdict(hierarchical_paired_ci(b, a, n_boot=200, seed=i)["ci"]) != "no detectable difference"
        raw += verdict(hierarchical_paired_ci(b, a, n_boot=200, seed=i, expand=False)["ci"]) != \
            "no detectable difference"
    assert raw / n > 0.15  # 22 of 100
    assert exp / n <= 0.08  # 5 of 100 (300 such nulls with 200 queries: 6.3%; the df is itself estimated)


def _brute_expected_max(values: np.ndarray, n: int) -> float:
    return float(np.mean([max(t) for t in itertools.product(values, repeat=n)]))


def test_expected_max_matches_brute_force_enumeration() -> None:
    trials = np.array([[0.3, 0.1, np.nan], [0.3, 0.5, 0.2]])  # a tie and a failed trial
    pool = np.array([0.3, 0.1, 0.3, 0.5, 0.2])
    curve = expected_max_curve(trials)
    assert [c["budget"] for c in curve] == [1, 2, 3]
    for c in curve:
        assert c["expected_best"] == pytest.approx(_brute_expected_max(pool, c["budget"]), abs=1e-12)
    assert curve[0]["expected_best"] == pytest.approx(pool.mean())
    # band: quantiles over replicates of each one's best-so-far: [0.3, 0.3, 0.3] and [0.3, 0.5, 0.5]
    assert (curve[1]["lo"], curve[1]["hi"]) == pytest.approx((0.3 + 0.025 * 0.2, 0.3 + 0.975 * 0.2))
    assert curve[0]["lo"] == curve[0]["hi"] == 0.3
    only = expected_max_curve(trials, [2], level=0.5)
    assert len(only) == 1 and only[0]["lo"] == pytest.approx(0.35) and only[0]["hi"] == pytest.approx(0.45)


def test_expected_max_is_monotone_and_rejects_bad_budgets() -> None:
    rng = np.random.default_rng(0)
    curve = expected_max_curve(rng.random((3, 12)))
    means = [c["expected_best"] for c in curve]
    assert all(b >= a for a, b in itertools.pairwise(means))
    assert all(c["lo"] <= c["hi"] for c in curve)
    assert np.isnan(expected_max_curve(np.array([[np.nan, np.nan]]))[0]["expected_best"])
    with pytest.raises(ValueError, match="outside"):
        expected_max_curve(rng.random((2, 4)), [0, 5])


def test_holm_worked_example() -> None:
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped
    out = holm([0.02, float("nan"), 0.01])  # NaN stays NaN and is not counted
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]) == [] and holm([0.04]) == [0.04]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 20, 0.0, 0.16843347),  # 1 − 0.025^(1/20)
    (20, 20, 0.83156653, 1.0),
    (5, 100, 0.01643188, 0.11283491),
    (1, 10, 0.00252858, 0.44501612),
    (17, 300, 0.03335331, 0.08918040),
])
def test_clopper_pearson_known_values(k: int, n: int, lo: float, hi: float) -> None:
    assert binomial_ci(k, n) == pytest.approx((lo, hi), abs=1e-7)


def test_clopper_pearson_level_and_errors() -> None:
    lo90, hi90 = binomial_ci(3, 30, level=0.9)
    lo95, hi95 = binomial_ci(3, 30)
    assert lo95 < lo90 < 0.1 < hi90 < hi95
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_ci(5, 4)


def test_null_check_uses_disjoint_blocks() -> None:
    rng = np.random.default_rng(2)
    runs = rng.beta(1.0, 2.5, 120) + rng.normal(0, 0.02, (43, 1)) + rng.normal(0, 0.05, (43, 120))
    res = null_check(runs, block=4, n_boot=200)
    assert (res["comparisons"], res["runs_used"], res["block"]) == (5, 40, 4)
    assert res["false_positives"] == round(res["rate"] * 5) and res["nominal"] == pytest.approx(0.05)
    assert res["ci"] == pytest.approx(list(binomial_ci(res["false_positives"], 5)))
    assert "cannot show" in res["note"]
    shifted = runs + np.where((np.arange(43) // 4) % 2 == 0, 0.4, 0.0)[:, None]  # block 2i is better: not a null
    hit = null_check(shifted, block=4, n_boot=200)
    assert hit["false_positives"] == 5 and hit["rate"] == 1.0
    two = null_check(runs, block=4, n_boot=200, replicates=2)
    assert two["replicates"] == 2 and two["comparisons"] == 5
    with pytest.raises(ValueError, match="2 blocks"):
        null_check(runs[:7], block=4)
    with pytest.raises(ValueError, match="multiple"):
        null_check(runs, block=3, replicates=2)


@pytest.mark.parametrize(("ci", "p", "word"), [
    ([0.01, 0.2], None, "helps"),
    ([-0.3, -0.02], None, "hurts"),
    ([-0.01, 0.2], None, "no detectable difference"),
    ([0.01, 0.2], 0.01, "helps"),
    ([0.01, 0.2], 0.2, "no detectable difference"),  # Holm takes it back
    ([-0.3, -0.02], 0.05, "no detectable difference"),  # not below alpha
    ([float("nan"), float("nan")], None, "no detectable difference"),
])
def test_verdict(ci: list[float], p: float | None, word: str) -> None:
    assert verdict(ci, p) == word
