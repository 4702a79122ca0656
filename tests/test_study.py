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
        "protocol": "joint", "tune": {"budget": 2, "metric": "recall@50", "space": {"lr": [0.05, 0.2]}, "replicates": 1},
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
    assert s["selection"]["split"] == "validation" and "validation split" in s["protocol"]["text"]
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

    # paired comparisons (replicates x seeds x queries); the derived arm also against its parent; null check
    g = {row["group"]: row for row in s["groups"]}
    assert g["cfm"]["seeds"] == 2 and g["cfm"]["replicates"] == 1
    comp = {(c["arm"], c["baseline"], c["metric"]): c for c in s["comparisons"]}
    c = comp[("cfm", "none", "recall@50")]
    assert c["ci_rel"][0] <= c["delta_rel"] <= c["ci_rel"][1] and (c["seeds"], c["replicates"]) == (2, 1)
    ci = g["cfm"]["vs_baseline"]["recall@50"]  # the table's keys, from the same comparison
    assert (ci["relative"], ci["low"], ci["high"]) == (c["delta_rel"], *c["ci_rel"])
    head = next(x for x in s["slices"] if x["arm"] == "cfm" and x["slice"] == "head")  # Table 4's slices too
    assert head["ci_abs"][0] <= head["delta_abs"] <= head["ci_abs"][1] and 0 < head["queries"] <= g["cfm"]["slices"]["head"]["pairs"]
    assert ("cfm_popularity", "cfm", "recall@50") in comp and not comp[("cfm_popularity", "cfm", "recall@50")]["family"]
    assert (s["null_check"]["runs"], s["null_check"]["comparisons"]) == (4, 1)
    assert [p["value"] for p in s["curves"]["alpha"]["cfm"]] == [3.0]
    assert (runs / "tiny.sweep.json").exists()

    # the report (sslkit.study.report's Markdown behind study.py's preamble) says what the intervals support
    from sslkit.study.report import verdict_of

    text = study.write_report({"tiny": s}, tmp_path / "docs", quick=True).read_text()
    assert "QUICK SMOKE RUN" in text and "## Study: tiny" in text
    assert f"| tiny | CFM | {c['value']:.4f} / {c['baseline_value']:.4f} | {c['delta_rel']:+.1%} |" in text
    assert f"[{c['ci_rel'][0]:+.1%}, {c['ci_rel'][1]:+.1%}]" in text and c["verdict"] in text
    assert "1 false positives in 1" in text or "0 false positives in 1" in text  # the null check's line
    assert verdict_of(0.01, 0.2) == "helps" and verdict_of(-0.2, -0.01) == "hurts"
    assert verdict_of(-0.01, 0.2) == "no detectable difference"

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
