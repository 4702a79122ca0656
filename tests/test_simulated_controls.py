"""The simulated controls' mechanism (examples/simulated/controls.py), checked on a small instance:
on the positive control the item features carry the latent that drives engagement, on the negative
control they carry nothing about it; pairs follow the latent in both."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from polars.testing import assert_frame_equal

HERE = Path(__file__).resolve().parents[1] / "examples" / "simulated"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sim_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


controls = _load("controls")
SMALL = {"items": 800, "pairs": 6000, "seed": 1}


@pytest.fixture(scope="module")
def made() -> dict[str, tuple]:
    return {c: controls.make_control(c, **SMALL) for c in ("positive", "negative")}


def test_positive_features_carry_the_engagement_latent(made: dict[str, tuple]) -> None:
    tables, truth = made["positive"]
    x = controls.feature_matrix(tables["items"])
    _, r2 = controls.crossfit_ridge(x, truth["e"])
    assert r2 > 0.4, r2  # out-of-fold: the features of an unseen item place it in the latent space


def test_negative_features_carry_nothing_about_engagement(made: dict[str, tuple]) -> None:
    tables, truth = made["negative"]
    x = controls.feature_matrix(tables["items"])
    _, r2_e = controls.crossfit_ridge(x, truth["e"])
    _, r2_pop = controls.crossfit_ridge(x, truth["log_pop"])
    _, r2_z = controls.crossfit_ridge(x, truth["z"])
    assert r2_e < 0.05 and r2_pop < 0.05, (r2_e, r2_pop)
    assert r2_z > 0.4  # ... while they still carry their own latent (the catalog is the same)


def test_controls_share_the_catalog_and_differ_in_engagement(made: dict[str, tuple]) -> None:
    (pos, tpos), (neg, tneg) = made["positive"], made["negative"]
    assert_frame_equal(pos["items"], neg["items"])
    np.testing.assert_array_equal(tpos["e"], tpos["z"])
    assert abs(float((tneg["e"] * tneg["z"]).sum(1).mean())) < 0.05  # independent unit vectors


@pytest.mark.parametrize("control", ["positive", "negative"])
def test_pairs_follow_the_engagement_latent(made: dict[str, tuple], control: str) -> None:
    tables, truth = made[control]
    row = {v: i for i, v in enumerate(truth["ids"])}
    q = np.array([row[v] for v in tables["pairs"]["query_item"]])
    j = np.array([row[v] for v in tables["pairs"]["item_id"]])
    assert (q != j).all()
    cos = (truth["e"][q] * truth["e"][j]).sum(1)
    rand = (truth["e"][q] * truth["e"][np.random.default_rng(0).permutation(j)]).sum(1)
    assert cos.mean() > rand.mean() + 0.3  # co-engaged items sit close in the engagement latent


def test_cold_items_are_born_late_and_pairs_after_births(made: dict[str, tuple]) -> None:
    tables, truth = made["positive"]
    new = truth["birth"] > 0
    assert abs(new.mean() - 0.15) < 0.01 and (truth["birth"][new] >= 0.75).all()
    row = {v: i for i, v in enumerate(truth["ids"])}
    pairs = tables["pairs"]
    q = np.array([row[v] for v in pairs["query_item"]])
    t = pairs["ts"].to_numpy() / 1e7
    assert (t >= truth["birth"][q] - 1e-6).all()
    assert (np.diff(pairs["ts"].to_numpy()) >= 0).all()  # the log is in time order


def test_same_seed_same_tables() -> None:
    a, _ = controls.make_control("negative", items=300, pairs=1000, seed=2)
    b, _ = controls.make_control("negative", items=300, pairs=1000, seed=2)
    for key in a:
        assert_frame_equal(a[key], b[key])
