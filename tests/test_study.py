"""A tiny tuning study end to end through examples/movielens/study.py's own code path (run_specs and
the report pieces): equal budgets, selection on validation only, paired seeds on test, null check."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("movielens_study", ROOT / "examples/movielens/study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_tiny_study_end_to_end(data: Path, tmp_path: Path) -> None:
    study = _study()
    spec = tmp_path / "tiny.yaml"
    spec.write_text(json.dumps({
        "schema": str(data / "schema.yaml"),
        "set": {"train.steps": 2, "train.batch_size": 256, "train.eval_queries": 20, "model.hidden": [16],
                "split.validation_fraction": 0.2},
        "arms": {"none": {"set": {"aug": "none"}},
                 "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": [0.01, 1.0], "dropout": [0.1, 0.5]}},
                 "cfm_popularity": {"from": "cfm", "set": {"ssl.item_sampling": "popularity"}}},
        "tune": {"budget": 2, "metric": "recall@50", "space": {"lr": [0.05, 0.2]}},
        "seeds": [0, 1], "null_seeds": [2, 3], "baseline": "none",
        "curves": {"alpha": {"arms": ["cfm"], "values": [3.0]}}}))
    runs = tmp_path / "runs"
    saved: list[float] = []  # the spec's time on disk as each cell starts: a stopped study keeps its time

    def progress(kind: str, p: dict) -> None:
        if kind == "cell" and p["status"] != "done":
            saved.append(json.loads((runs / "study_times.json").read_text())["tiny"])

    s = study.run_specs({"tiny": spec}, runs, progress=progress)["tiny"]
    assert len(saved) >= 10 and saved == sorted(saved) and saved[-1] <= s["seconds"]
    assert json.loads((runs / "study_times.json").read_text())["tiny"] == s["seconds"]

    # equal budgets, stated; every tuning cell has its validation scores; the pick is the best of them
    arms = s["arms"]
    assert (arms["none"]["cells"], arms["cfm"]["cells"]) == (2, 2) and arms["cfm"]["sampled"]
    assert not arms["none"]["sampled"] and not arms["cfm_popularity"]["tuned"]
    assert s["selection"]["split"] == "validation" and "validation split" in s["protocol"]
    for arm in ("none", "cfm"):
        cells = [t for t in s["tuning"] if t["arm"] == arm]
        best = max(cells, key=lambda t: t["validation"]["recall@50"])
        assert arms[arm]["selected_validation"] == best["validation"]["recall@50"]
        assert all(arms[arm]["selected"][k] == v for k, v in best["values"].items())
    assert arms["cfm_popularity"]["selected"] == arms["cfm"]["selected"] | {"ssl.item_sampling": "popularity"}

    # test was read for the picks only: a tuning cell that was not picked has no test evaluation
    picked = {d for g in s["groups"] for d in g["runs"]}
    losers = [t["dir"] for t in s["tuning"] if t["dir"] not in picked]
    assert losers and not any((Path(d) / "eval.json").exists() for d in losers)
    assert all(json.loads((Path(d) / "eval.json").read_text())["split"] == "test" for d in picked)

    # paired comparisons, seed s with seed s; the derived arm also against its parent; null check
    g = {row["group"]: row for row in s["groups"]}
    assert g["cfm"]["seeds"] == 2 and g["cfm"]["vs_baseline_paired_seeds"] == [0, 1]
    ci = g["cfm"]["vs_baseline"]["recall@50"]
    assert ci["low"] <= ci["relative"] <= ci["high"] and ci["seeds"] == 2
    head = g["cfm"]["vs_baseline_slices_ci"]["head"]["recall@50"]  # Table 4's slices get intervals too
    assert head["low"] <= head["relative"] <= head["high"] and 0 < head["queries"] <= g["cfm"]["slices"]["head"]["pairs"]
    assert head["relative"] == pytest.approx(g["cfm"]["vs_baseline_slices"]["head"]["recall@50"])
    assert g["cfm_popularity"]["parent"] == "cfm" and "recall@50" in g["cfm_popularity"]["vs_parent"]
    assert (s["null_check"]["runs"], s["null_check"]["replicates"]) == (4, 3)
    assert [p["value"] for p in s["curves"]["alpha"]["cfm"]] == [3.0]
    assert (runs / "tiny.sweep.json").exists()

    # the report pieces say what the intervals support, and nothing more
    table = study.methods_table(s, ["none", "cfm"])
    assert "(reference)" in table and study.verdict(ci) in table
    assert "2 (balanced random subset)" in study.budget_table(s) and "2 (whole grid)" in study.budget_table(s)
    assert "of 3 baseline-vs-baseline comparisons" in study.null_text(s)
    assert study.verdict({"low": 0.01, "high": 0.2}) == "helps"
    assert study.verdict({"low": -0.2, "high": -0.01}) == "hurts"
    assert study.verdict({"low": -0.01, "high": 0.2}) == "no detectable difference"

    # resumable: a rerun trains nothing and gives the same summary
    again = study.run_specs({"tiny": spec}, runs, progress=lambda kind, p: None)["tiny"]
    assert again["groups"] == s["groups"] and again["tuning"] == s["tuning"]
    assert again["seconds"] == s["seconds"]  # the time the cells took, not the seconds spent skipping them


@pytest.mark.parametrize("flag", ["--specs=bogus"])
def test_study_rejects_unknown_specs(flag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    study = _study()
    monkeypatch.setattr("sys.argv", ["study.py", flag])
    with pytest.raises(SystemExit, match="unknown bogus"):
        study.main()
