"""What a user sees of the SSL task: in-batch top-1 beside its loss, warnings when it stays at chance or
at 1.0, an SSL batch larger than the catalog capped with one line, and `ssl.cfm_id` (where CFM's masking
sets put the id feature)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sslkit.cli import app
from sslkit.config import load_config
from sslkit.data.mi import cfm_id_sets, id_features, mask_sets
from sslkit.training.train import ssl_batch_size, ssl_task_warning

FEATS = ["item_id", "a", "b", "c", "d"]
# raw MI: the id's MI with a feature is that feature's entropy, the largest in every row
MI = np.array([[8.0, 2.0, 1.5, 1.0, 0.5],
               [2.0, 2.0, 1.2, 0.1, 0.2],
               [1.5, 1.2, 1.5, 0.3, 0.1],
               [1.0, 0.1, 0.3, 1.0, 0.4],
               [0.5, 0.2, 0.1, 0.4, 0.5]])


def test_id_features_are_the_unique_ones() -> None:
    assert id_features(FEATS, [math.log(100), 2.0, 1.5, 1.0, 0.5], 100) == ["item_id"]
    assert id_features(FEATS, [math.log(100) - 0.1, 2.0, 1.5, 1.0, 0.5], 100) == []


def test_cfm_id_modes_place_the_id() -> None:
    paper = cfm_id_sets(MI, FEATS, 2, ["item_id"], "paper")
    assert paper == mask_sets(MI, FEATS, 2)
    assert all("item_id" in m for m in paper.values())  # the paper's definition: the id in every set
    exclude = cfm_id_sets(MI, FEATS, 2, ["item_id"], "exclude")
    assert exclude == {"item_id": ["item_id", "a"], "a": ["a", "b"], "b": ["b", "a"], "c": ["c", "d"], "d": ["d", "c"]}
    alone = cfm_id_sets(MI, FEATS, 2, ["item_id"], "alone")
    assert alone == {**exclude, "item_id": ["item_id"]}
    wide = cfm_id_sets(MI, FEATS, 4, ["item_id"], "exclude")  # |F_m| = 4 of 5: the other features first
    assert wide["c"] == ["c", "d", "b", "a"] and wide["item_id"] == mask_sets(MI, FEATS, 4)["item_id"]
    with pytest.raises(ValueError, match="cfm_id must be one of"):
        cfm_id_sets(MI, FEATS, 2, ["item_id"], "never")


def test_ssl_batch_is_capped_at_the_items_it_draws_from() -> None:
    assert ssl_batch_size(1024, 5000) == (1024, None)
    assert ssl_batch_size(1024, 91) == (91, 1024)
    assert ssl_batch_size(1024, 91, world_size=2) == (90, 1024)  # divisible by the ranks
    assert ssl_batch_size(300, 300) == (300, None)


def test_ssl_task_warning_at_chance_trivial_and_silent(data: Path) -> None:
    cfg = load_config(data / "schema.yaml", ["ssl.aug=cfm", "ssl.alpha=0.05"])
    mi = {"id_features": ["item_id"], "mask_sets": {"item_id": ["item_id", "a"], "a": ["a", "item_id"]}}
    assert ssl_task_warning([0.5, 0.002, 0.001], cfg, ssl_batch=1024, catalog=5000, mi=mi) is None  # too early
    chance = ssl_task_warning([0.5, 0.1, 0.01, 0.002, 0.001, 0.003], cfg, ssl_batch=1024, catalog=5000, mi=mi)
    assert chance is not None and chance.startswith("the SSL task learned nothing")
    assert "chance 0.0010" in chance and "'item_id'" in chance and "ssl.cfm_id=exclude" in chance
    assert "ssl.alpha 0.05" in chance
    trivial = ssl_task_warning([0.2, 1.0, 1.0, 1.0], cfg, ssl_batch=91, catalog=91, mi=mi, capped=True)
    assert trivial is not None and "trivial" in trivial and "whole catalog (91 items)" in trivial
    assert ssl_task_warning([0.01, 0.1, 0.3], cfg, ssl_batch=1024, catalog=5000, mi=mi) is None
    so = load_config(data / "schema.yaml", ["ssl.aug=so"])
    assert ssl_task_warning([1.0, 1.0], so, ssl_batch=91, catalog=91, mi=None) is None  # one view: nothing to match
    nomask = load_config(data / "schema.yaml", ["ssl.aug=no_mask"])
    assert "reaches both views" in (ssl_task_warning([1.0], nomask, ssl_batch=64, catalog=300,
                                                     mi={"id_features": ["item_id"]}) or "")


def test_train_caps_a_large_ssl_batch_and_shows_top1(data: Path, runner) -> None:
    out = data / "run"
    r = runner.invoke(app, ["train", str(data / "schema.yaml"), "--aug", "cfm", "--steps", "4", "--batch-size", "64",
                            "--device", "cpu", "--out", str(out), "--set", "ssl.batch_size=1024",
                            "--set", "train.log_every=2", "--set", "train.eval_queries=10", "--set", "ssl.cfm_id=alone"])
    assert r.exit_code == 0, r.output
    err = " ".join(r.stderr.split())  # rich wraps long lines
    assert "ssl.batch_size 1024 is larger than the 300 items the SSL batch is drawn from: capped at 300" in err
    assert "--set ssl.batch_size=75" in err
    assert "(top-1 " in err and "chance 0.0033)" in err  # beside the SSL loss in the step line
    assert "ssl.cfm_id=alone" in err
    mi = json.loads((out / "mi.json").read_text())
    assert mi["id_features"] == ["item_id"] and mi["mask_sets"]["item_id"] == ["item_id"]
    assert all("item_id" not in m for s, m in mi["mask_sets"].items() if s != "item_id")
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"ssl_top1"' in x]
    assert [s["ssl_dup_rate"] for s in steps] == [0.0, 0.0]  # the whole catalog, each item once
