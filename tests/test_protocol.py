"""The tuning protocol end to end: a two-stage study on the tiny data, the summary's interval over
tuning replicates (it widens when replicates disagree), preregistration and reruns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.cli import app
from sslkit.study.cells import CellResult
from sslkit.study.sweep import load_sweep, summarize_sweep
from sslkit.study.tuning import later_cells


def two_stage(path: Path, schema: Path, **extra: object) -> Path:
    spec = {"schema": str(schema), "out": "runs",
            "set": {"train.steps": 2, "train.batch_size": 256, "train.eval_queries": 20, "model.hidden": [16],
                    "split.validation_fraction": 0.2},
            "backbone": {"space": {"lr": {"log_uniform": [0.02, 0.3]}, "temperature": [0.1, 0.2]}},
            "arms": {"none": {"set": {"aug": "none"}},
                     "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": {"log_uniform": [0.01, 1.0]},
                                                              "dropout": {"uniform": [0.1, 0.7]}}},
                     "cfm_pop": {"from": "cfm", "set": {"ssl.item_sampling": "popularity"}}},
            "tune": {"budget": 2, "metric": "recall@50", "replicates": 2},
            "seeds": [0, 1], "baseline": "none", **extra}
    path.write_text(json.dumps(spec))
    return path


def test_two_stage_study_end_to_end(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    spec = two_stage(tmp_path / "study.yaml", data / "schema.yaml")
    r = runner.invoke(app, ["-q", "sweep", str(spec), "--json"])
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["kind"] == "study" and s["protocol"]["name"] == "two-stage" and s["failed"] == []
    sel = s["selection"]
    assert (sel["replicates"], sel["budget"], sel["final_seeds"], sel["tuning_seeds"]) == (2, 2, [0, 1], [1000, 1001])
    arms = s["arms"]
    assert [arms[a]["stage"] for a in ("none", "cfm", "cfm_pop")] == ["backbone", "ssl", "derived"]
    # stage 1 tunes the backbone on the baseline; stage 2 tunes CFM's own knobs at that replicate's backbone pick
    for r_ in (0, 1):
        bb = arms["none"]["replicates"][r_]["pick"]
        assert set(bb) == {"lr", "temperature"}
        cfm_trials = [t for t in s["tuning"] if t["arm"] == "cfm" and t["replicate"] == r_]
        assert len(cfm_trials) == 2 and all(set(t["values"]) == {"alpha", "dropout"} for t in cfm_trials)
        cfm_pick = arms["cfm"]["replicates"][r_]
        assert {k: cfm_pick["values"][k] for k in bb} == bb and cfm_pick["values"]["aug"] == "cfm"
        best = max(cfm_trials, key=lambda t: t["validation"]["recall@50"])
        assert cfm_pick["pick"] == best["values"] and cfm_pick["validation"] == best["validation"]["recall@50"]
        assert arms["cfm_pop"]["replicates"][r_]["values"] == cfm_pick["values"] | {"ssl.item_sampling": "popularity"}
    assert len(s["tuning"]) == 2 * 2 + 2 * 2 and all(t["stopping_step"] == 2 for t in s["tuning"])
    # finals: every replicate's pick with every final seed, on test; the interval resamples replicates too
    groups = {g["name"]: g for g in s["groups"]}
    assert all(groups[a]["n"] == 4 and groups[a]["replicates"] == 2 for a in arms)
    headline = [c for c in s["comparisons"] if c["metric"] == "recall@50" and c["baseline"] == "none"]
    assert {c["arm"] for c in headline} == {"cfm", "cfm_pop"} and all(c["family"] for c in headline)
    for c in headline:
        assert c["ci_abs"][0] <= c["delta_abs"] <= c["ci_abs"][1] and c["replicates"] == 2 and c["seeds"] == 2
        assert c["resamples"] == "replicates x seeds x queries" and 0 <= c["wins"] <= 2
        assert c["p_holm"] >= c["p"] and c["verdict"] in ("helps", "hurts", "no detectable difference")
        assert c["value"] == pytest.approx(groups[c["arm"]]["metrics"]["recall@50"]["mean"])
    vs_parent = [c for c in s["comparisons"] if c["baseline"] == "cfm"]
    assert vs_parent and not any(c["family"] for c in vs_parent) and all(c["p_holm"] is None for c in vs_parent)
    assert {sl["slice"] for sl in s["slices"]} <= {"head", "tail", "cold", "novel"} and s["slices"]
    for sl in s["slices"]:
        assert sl["absolute_only"] == (sl["baseline_value"] < 0.05) and (sl["ci_rel"] is None) == sl["absolute_only"]
    assert set(s["budget_curves"]) == {"none", "cfm"} and [p["budget"] for p in s["budget_curves"]["cfm"]] == [1, 2]
    assert s["toppop"]["split"] == "test" and 0 < s["toppop"]["recall@50"] < 1
    below = [g for g in s["groups"] if g["metrics"]["recall@50"]["mean"] < s["toppop"]["recall@50"]]
    assert len(s["warnings"]) == len(below)
    assert s["stopping"]["cfm"]["steps"] == [2, 2, 2, 2] and s["stopping"]["cfm"]["max_steps"] == 2
    pre = s["preregistration"]
    assert pre["rerun"] is False and (tmp_path / "runs" / "study.preregistration.json").exists()
    # tuning trials never read test; only the picks' finals were scored on it
    finals = {Path(d) for g in s["groups"] for d in g["runs"]}
    assert not any((Path(t["dir"]) / "eval.json").exists() for t in s["tuning"] if Path(t["dir"]) not in finals)
    assert all(json.loads((d / "eval.json").read_text())["split"] == "test" for d in finals)

    # resumable: nothing retrains; an edited spec after test was read is reported as a rerun
    again = json.loads(runner.invoke(app, ["-q", "sweep", str(spec), "--json"]).stdout)
    assert again["tuning"] == s["tuning"] and again["comparisons"] == s["comparisons"]
    spec.write_text(spec.read_text().replace('"seeds": [0, 1]', '"seeds": [0, 1, 2]'))
    edited = runner.invoke(app, ["-q", "sweep", str(spec), "--json"])
    assert edited.exit_code == 0, edited.stderr
    e = json.loads(edited.stdout)
    assert e["preregistration"]["rerun"] is True and e["preregistration"]["spec_sha256"] == pre["spec_sha256"]
    assert "rerun" in e["preregistration"]["note"]
    assert groups["none"]["runs"][:2] == [g for g in e["groups"] if g["name"] == "none"][0]["runs"][:2]


def _constructed_summary(data: Path, tmp_path: Path, shift: list[float]) -> dict:
    """A study whose finals are made up: 3 replicates x 4 seeds x 200 queries; CFM's replicate r is the
    baseline's plus shift[r] (plus seed noise)."""
    spec = two_stage(tmp_path / f"c{len(list(tmp_path.iterdir()))}.yaml", data / "schema.yaml",
                     arms={"none": {"set": {"aug": "none"}},
                           "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": {"log_uniform": [0.01, 1.0]}}}},
                     tune={"budget": 2, "replicates": 3}, seeds=[0, 1, 2, 3])
    sw = load_sweep(spec)
    for r in range(3):  # each replicate picked other settings (other cells)
        sw.picks[("none", r)] = {"aug": "none", "lr": [0.05, 0.1, 0.2][r], "temperature": 0.1}
        sw.picks[("cfm", r)] = {"aug": "cfm", "lr": [0.05, 0.1, 0.2][r], "temperature": 0.1, "alpha": 0.1}
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, size=200)
    results = []
    for c in later_cells(sw):
        assert c.stage == "final" and c.replicate is not None
        seed = c.cfg.train.seed
        v = base + rng.normal(0, 0.01, 200) + (shift[c.replicate] if c.arm == "cfm" else 0.0)
        per_query = {"recall@50": np.clip(v, 0, 1)}
        c.dir.mkdir(parents=True, exist_ok=True)
        (c.dir / "summary.json").write_text(json.dumps({"train_seconds": 1.0, "steps": 2 + seed}))
        ev = {"split": "test", "metrics": {"recall@50": float(per_query["recall@50"].mean())},
              "slices": {}, "toppop": {"recall@50": 0.1}}
        results.append(CellResult(cell=c, eval=ev, per_query=per_query, queries=np.arange(200)))
    return summarize_sweep(sw, results, n_boot=500)


def test_interval_widens_when_tuning_replicates_disagree(data: Path, tmp_path: Path) -> None:
    """The same mean gain (+0.02): the replicates agree in one study and disagree (one replicate's pick
    lost) in the other. The interval over replicates x seeds x queries is wider in the second, and
    'wins' says in how many replicates CFM beat the baseline."""
    agree = _constructed_summary(data, tmp_path, [0.02, 0.02, 0.02])["comparisons"][0]
    disagree = _constructed_summary(data, tmp_path, [0.07, 0.02, -0.03])["comparisons"][0]
    assert agree["delta_abs"] == pytest.approx(disagree["delta_abs"], abs=0.002)
    width = lambda c: c["ci_abs"][1] - c["ci_abs"][0]  # noqa: E731
    assert width(disagree) > 3 * width(agree)
    assert (agree["wins"], disagree["wins"], agree["replicates"]) == (3, 2, 3)
    assert agree["verdict"] == "helps" and agree["ci_abs"][0] > 0
    assert disagree["ci_abs"][0] < agree["ci_abs"][0]


def test_bundled_specs_load() -> None:
    """Every study spec the project ships parses and plans; the simulated controls' and MovieLens studies
    are two-stage, the older 100,000-item simulated specs keep the joint protocol they were run with."""
    root = Path(__file__).resolve().parents[1] / "examples"
    specs = sorted(root.glob("*/sweeps/*.yaml")) + [root / "synthetic/study.yaml"]
    assert len(specs) >= 10
    for path in specs:
        old = path.parent.parent.name == "simulated" and path.stem in ("table2", "table3", "table5", "towers")
        want = "joint" if old else "two-stage"
        if not (path.parent.parent / "data").exists() and "synthetic" not in str(path):
            raw = __import__("yaml").safe_load(path.read_text())  # the data is prepared by a script: parse only
            from sslkit.study.spec import SweepSpec

            spec = SweepSpec.model_validate(raw)
            assert spec.protocol == want and spec.tune is not None and spec.tune.replicates == 3, path
            assert not set(spec.tune.seeds or ()) & set(spec.seeds + spec.null_seeds)
            continue
        sw = load_sweep(path)  # its data is there (generated here, or the bundled synthetic example)
        assert sw.spec.protocol == want
        if want == "two-stage":
            assert sw.arms["none"].stage == "backbone"
            assert {c.cfg.train.seed for c in sw.cells} == {1000, 1001, 1002}


def test_halving_rungs() -> None:
    from sslkit.study.tuning import halving_rungs

    assert halving_rungs(9, 900) == [(9, 100), (3, 300), (1, 900)]
    assert halving_rungs(6, 900) == [(6, 300), (2, 900)]
    assert halving_rungs(2, 900) == [(2, 900)]  # fewer than 3 trials: every trial in full
    assert halving_rungs(27, 10) == [(27, 1), (9, 1), (3, 3), (1, 10)]


def test_successive_halving_resumes_the_best_third(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    """3 trials at 2 steps, the best one trained on to 6 steps from its checkpoint; it is the pick,
    and the finals train in full. Equal compute per arm: every tuned arm has the same rungs."""
    spec = two_stage(tmp_path / "sh.yaml", data / "schema.yaml", arms={"none": {"set": {"aug": "none"}}},
                     tune={"budget": 3, "replicates": 1, "search": "successive-halving"}, seeds=[0])
    raw = json.loads(spec.read_text())
    raw["set"]["train.steps"] = 6
    spec.write_text(json.dumps(raw))
    r = runner.invoke(app, ["-q", "sweep", str(spec), "--json"])
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["selection"]["search"] == "successive-halving" and s["selection"]["rungs"]["none"] == [
        {"trials": 3, "steps": 2}, {"trials": 1, "steps": 6}]
    rung0 = [t for t in s["tuning"] if t["rung"] == 0]
    rung1 = [t for t in s["tuning"] if t["rung"] == 1]
    assert len(rung0) == 3 and len(rung1) == 1 and all(t["steps"] == 2 and t["stopping_step"] == 2 for t in rung0)
    best0 = max(rung0, key=lambda t: (t["validation"]["recall@50"], -t["trial"]))
    assert rung1[0]["trial"] == best0["trial"] and rung1[0]["values"] == best0["values"]
    assert rung1[0]["steps"] == 6 and rung1[0]["stopping_step"] == 6
    log = [json.loads(x) for x in (Path(rung1[0]["dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert any(x.get("step", 0) <= 2 for x in log if "loss" in x)  # the first rung's steps, carried over
    pick = s["arms"]["none"]["replicates"][0]
    assert pick["pick"] == best0["values"] and pick["validation"] == rung1[0]["validation"]["recall@50"]
    final = json.loads((Path(s["groups"][0]["runs"][0]) / "summary.json").read_text())
    assert final["steps"] == 6 and "steps" not in pick["values"]
    assert "budget_curves" in s and s["budget_curves"] == {}  # rung 0 is not a full-length trial
