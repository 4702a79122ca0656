"""`sslkit report`: one self-contained page for a run and for a study (HTML and Markdown), naming
every arm and every interval; both today's summary format and the study-summary contract render."""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslkit.cli import app
from sslkit.study.report import comparisons, expected_best, render_html, render_markdown
from sslkit.study.svg import interval_text

SMALL = ["--set", "train.batch_size=256", "--set", "train.eval_queries=20", "--set", "model.hidden=[32,16]"]
VOID = {"meta", "br", "img", "hr", "input", "link", "circle", "line", "rect", "polyline", "polygon", "path"}


class _Tags(HTMLParser):
    """Checks that every opened element is closed in order; collects ids, hrefs, srcs and headings."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.refs: list[str] = []
        self.headings: list[str] = []
        self._h = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.ids += [a["id"]] if a.get("id") else []
        self.refs += [v for k, v in attrs if k in ("href", "src", "xlink:href") and v]
        if tag not in VOID:
            self.stack.append(tag)
        self._h = tag in ("h1", "h2", "h3")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("href", "src") and v]

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        self._h = False

    def handle_data(self, data: str) -> None:
        if self._h:
            self.headings.append(data)


def _check_page(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert html.startswith("<!DOCTYPE html>") and "<meta charset=\"utf-8\">" in html
    # self-contained: nothing is fetched — no script, stylesheet link, image source or CSS url()
    for bad in ("<script", "<link", "<img", "url(", "@import", "<iframe"):
        assert bad not in html
    assert all(r.startswith("#") for r in p.refs), p.refs
    assert len(p.ids) == len(set(p.ids))
    return p


@pytest.fixture()
def run_dir(data: Path, tmp_path: Path, runner: CliRunner) -> Path:
    out = tmp_path / "run"
    r = runner.invoke(app, ["-q", "train", str(data / "schema.yaml"), "--out", str(out), "--steps", "2", "--aug", "cfm",
                            "--set", "train.eval_every=1", "--set", "train.log_every=1", *SMALL])
    assert r.exit_code == 0, r.stderr
    assert runner.invoke(app, ["-q", "eval", str(out)]).exit_code == 0
    return out


def test_run_report_has_curves_metrics_toppop_and_slices(run_dir: Path, tmp_path: Path, runner: CliRunner) -> None:
    r = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "run.html")])
    assert r.exit_code == 0, r.stderr
    html = (tmp_path / "run.html").read_text()
    page = _check_page(html)
    assert {"Run", "Training curves", "Evaluation (test)"} <= set(page.headings)
    charts = re.findall(r'data-chart="([^"]+)"', html)
    assert charts == ["training-loss", "ssl-top1", "validation"]
    assert html.count("<svg") == 3
    ev = json.loads((run_dir / "eval.json").read_text())
    for m, v in ev["metrics"].items():  # every metric beside TopPopular's, as the eval table shows them
        assert f"<td>{m}</td><td class=\"n\">{v:.4f}</td><td class=\"n\">" in html
    for m, v in ev["toppop"].items():
        assert f"{v:.4f}" in html
    for s in ("head", "tail", "cold"):
        assert f"<td>{s}</td>" in html
    # the validation chart draws TopPopular on the same queries, dashed
    val = html[html.index('data-chart="validation"'):]
    assert "TopPopular recall@50" in val[:val.index("</svg>")] and "stroke-dasharray" in val


def _study(data: Path, tmp_path: Path) -> Path:
    from sslkit.study.sweep import load_sweep, run_sweep, summarize_sweep, write_summary

    spec = tmp_path / "study.yaml"
    spec.write_text(json.dumps({  # a two-stage study: the backbone tuned on the baseline, then CFM's own knobs
        "schema": str(data / "schema.yaml"), "out": "study-runs",
        "set": {"train.steps": 2, "train.batch_size": 256, "train.eval_queries": 20, "model.hidden": [32, 16]},
        "backbone": {"space": {"lr": [0.05, 0.1]}},
        "arms": {"none": {"set": {"aug": "none"}}, "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": [0.1, 0.3]}}},
        "tune": {"budget": 2, "metric": "recall@50", "replicates": 1},
        "seeds": [0, 1], "baseline": "none"}))
    sw = load_sweep(spec)
    results, failed = run_sweep(sw)
    assert not failed
    write_summary(sw, summarize_sweep(sw, results, n_boot=200))
    return tmp_path / "study-runs"


def test_study_report_names_every_arm_and_interval(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    out = _study(data, tmp_path)
    summary = json.loads((out / "study.sweep.json").read_text())
    r = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "study.html")])
    assert r.exit_code == 0, r.stderr
    html = (tmp_path / "study.html").read_text()
    page = _check_page(html)
    assert {"Protocol", "Verdicts", "Arms, budgets and picks", "Results (test)", "Comparisons", "Slices"} <= set(page.headings)
    for arm in ("none", "cfm"):
        assert f"<td>{arm}</td>" in html
    comps = comparisons(summary)
    assert len(comps) == 4  # cfm vs none on each of the 4 reported metrics
    for c in comps:  # each interval in the table and beside its row of the forest plot
        assert html.count(escape(interval_text(c["rel"], c["lo"], c["hi"]))) >= 2
        assert escape(f"{c['arm']} vs {c['baseline']} · {c['metric']}") in html
    forest = html[html.index('data-chart="forest"'):]
    assert forest[:forest.index("</svg>")].count("<circle") == len(comps)
    assert 'data-chart="budget-curves"' in html and "<polygon" in html  # the bands
    assert summary["kind"] == "study" and escape(summary["protocol"]["text"][:40]) in html

    md = runner.invoke(app, ["report", str(out / "study.sweep.json"), "--format", "md", "--out", str(tmp_path / "r.md")])
    assert md.exit_code == 0, md.stderr
    text = (tmp_path / "r.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).read_text().startswith("<svg") for link in links)
    for c in comps:
        assert interval_text(c["rel"], c["lo"], c["hi"]) in text


CONTRACT = {
    "kind": "study", "spec": "specs/demo.yaml", "future_key": {"ignored": True},
    "protocol": {"name": "two-stage", "text": "tune the backbone on the baseline, then each arm's own knobs."},
    "selection": {"split": "validation", "metric": "recall@50", "budget": 4, "replicates": 2,
                  "final_seeds": [0, 1, 2], "tuning_seeds": [10, 11], "search": "sequence"},
    "baseline": "none",
    "arms": {"none": {"stage": "backbone", "space": {"lr": [0.05, 0.1]}, "fixed": {"aug": "none"},
                      "replicates": [{"replicate": 0, "pick": {"lr": 0.1}, "validation": 0.25, "stopping_step": 40,
                                      "trials": 4}]},
             "cfm<x>": {"stage": "ssl", "space": {"alpha": [0.1, 1]}, "fixed": {"aug": "cfm"},
                        "replicates": [{"replicate": 0, "pick": {"alpha": 1}, "validation": 0.27, "stopping_step": None,
                                        "trials": 4}]}},
    "budget_curves": {"none": [{"budget": b, "expected_best": 0.2 + 0.01 * b, "lo": 0.19 + 0.01 * b,
                                "hi": 0.21 + 0.01 * b} for b in (1, 2, 3, 4)]},
    "groups": [{"name": "none", "values": {"lr": 0.1}, "n": 3, "recall@50": {"mean": 0.25, "std": 0.01}},
               {"name": "cfm<x>", "values": {"alpha": 1}, "n": 3, "recall@50": {"mean": 0.27, "std": 0.02}}],
    "comparisons": [{"arm": "cfm<x>", "baseline": "none", "metric": "recall@50", "baseline_value": 0.25, "value": 0.27,
                     "delta_abs": 0.02, "ci_abs": [0.004, 0.036], "delta_rel": 0.08, "ci_rel": [0.016, 0.144],
                     "p": 0.01, "p_holm": 0.02, "verdict": "helps", "wins": 2, "replicates": 2,
                     "resamples": "replicates x seeds x queries"}],
    "slices": [{"arm": "cfm<x>", "baseline": "none", "slice": "cold", "metric": "recall@50", "baseline_value": 0.0,
                "value": 0.01, "delta_abs": 0.01, "ci_abs": [-0.002, 0.02], "delta_rel": None, "ci_rel": None,
                "absolute_only": True}],
    "toppop": {"split": "test", "recall@50": 0.2, "slices": {"cold": {"recall@50": 0.0}}},
    "warnings": ["cold slice: fewer than 100 pairs"],
    "null_check": {"metric": "recall@50", "blocks": 20, "false_positives": 1, "rate": 0.05, "ci": [0.001, 0.25],
                   "note": "nominal 5%"},
    "stopping": {"none": {"steps": [40, 60], "best_steps": [30, 45], "max_steps": 100}},
    "preregistration": {"spec_sha256": "ab" * 32, "commit": "c0ffee", "recorded_at": "2026-12-03T12:00:00Z",
                        "rerun": False, "note": "recorded before any test score"},
    "wall_s": 120.0, "cells": 20, "done": 20,
}


def test_contract_summary_renders_every_key_it_knows() -> None:
    html = render_html(CONTRACT)
    _check_page(html)
    assert "cfm&lt;x&gt;" in html and "cfm<x>" not in html  # user text escaped, never markup
    assert escape(interval_text(0.08, 0.016, 0.144)) in html  # +8.0% [+1.6%, +14.4%]
    assert interval_text(0.02, 0.004, 0.036, percent=False) in html
    # a slice whose baseline is below 0.05 gets its absolute change only, with its interval
    assert "+0.0100 [-0.0020, +0.0200]" in html and "– (baseline below 0.05)" in html
    for text in ("two-stage: tune the backbone", "p (Holm) 0.02", "wins 2/2", "warning: cold slice: fewer than 100 pairs",
                 "1 false positives in 20 comparisons, rate 5.0% [0.1%, 25.0%]", "c0ffee",
                 "replicates x seeds x queries", 'class="helps"'):
        assert escape(text, quote=False) in html, text
    assert "<td>[40, 60]</td><td>[30, 45]</td>" in html  # stopping steps, then the steps whose weights were kept
    assert html.count("<polygon") == 1  # the budget curve's band
    md, files = render_markdown(CONTRACT)
    assert "- **cfm&lt;x> vs none, recall@50: helps — +8.0% [+1.6%, +14.4%]" in md
    assert len(files) == 2 and all(f.startswith("figures/") and f.endswith(".svg") for f in files)


def test_an_old_summary_with_groups_alone_still_renders() -> None:
    old = {"spec": "grid.yaml", "groups": [
        {"group": "aug=none", "seeds": 1, "metrics": {"recall@50": {"mean": 0.1, "std": 0.0}}},
        {"group": "aug=cfm", "seeds": 1, "metrics": {"recall@50": {"mean": 0.12, "std": 0.0}}, "baseline": "aug=none",
         "vs_baseline": {"recall@50": {"relative": 0.2, "low": -0.05, "high": 0.4, "p_value": 0.1}}}]}
    html = render_html(old)
    _check_page(html)
    assert "aug=cfm vs aug=none, recall@50: no detectable difference — +20.0% [-5.0%, +40.0%]" in html


def test_expected_best_of_n_draws() -> None:
    assert expected_best([1.0, 2.0, 3.0], 1) == pytest.approx((2.0, (2 / 3) ** 0.5))
    assert expected_best([1.0, 2.0, 3.0], 2)[0] == pytest.approx(22 / 9)  # P(max=1,2,3) = 1/9, 3/9, 5/9
    assert expected_best([1.0, 2.0, 3.0], 200)[0] == pytest.approx(3.0)


def test_report_errors_are_one_line(tmp_path: Path, runner: CliRunner) -> None:
    r = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "nope: no such file or directory" in r.stderr and len(r.stderr.splitlines()) == 1
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 1 and "not a run directory" in r.stderr
    (tmp_path / "x.json").write_text("{bad")
    r = runner.invoke(app, ["report", str(tmp_path / "x.json")])
    assert r.exit_code == 1 and "x.json: damaged JSON" in r.stderr
    (tmp_path / "y.json").write_text("[1]")
    r = runner.invoke(app, ["report", str(tmp_path / "y.json")])
    assert r.exit_code == 1 and "not a sweep or study summary" in r.stderr
    r = runner.invoke(app, ["report", str(tmp_path / "y.json"), "--format", "pdf"])
    assert r.exit_code == 2


def test_the_bundled_studies_report_code_is_sslkit_reports(tmp_path: Path) -> None:
    """docs/RESULTS.md is written by examples/movielens/study.py through sslkit.study.report (one
    section per study, charts as files beside it) — here on the committed study summaries: every arm
    and every comparison's interval is on the page, in the paper table and in the study sections."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("movielens_study_report", root / "examples/movielens/study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)  # type: ignore[union-attr]
    summaries = json.loads((root / "docs/results/summaries.json").read_text())
    path = study.write_report(summaries, tmp_path, quick=False)
    text = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).read_text().startswith("<svg") for link in links)
    for name, s in summaries.items():
        assert f"## Study: {study.TITLES.get(name, name)}" in text
        for c in comparisons(s):
            assert interval_text(c["rel"], c["lo"], c["hi"]) in text
            if c["metric"] == "recall@50" and c["baseline"] == s.get("baseline"):  # the paper table's row
                assert f"| {c['rel']:+.1%} | [{c['lo']:+.1%}, {c['hi']:+.1%}] |" in text
    assert "+7.5% (AAI)" in text  # the paper's Table 2 CFM change, beside the measured one


def test_portable_and_trained_on(tmp_path: Path) -> None:
    """A published page names the spec from examples/ on and the pre-registration file by its name,
    without touching the summary it was given; the machine is the finals' (run.json), not the reader's."""
    from sslkit.study.report import portable, trained_on

    run = tmp_path / "cell"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "precision": "fp32", "precision_choice": {"precision": "fp32", "cpu": "Test CPU 9000", "cpu_bf16_flags": []},
        "threads": {"threads": 1, "usable_cpus": 2}}))
    summary = {"spec": "/home/u/wt/examples/movielens/sweeps/table2.yaml",
               "preregistration": {"file": "/home/u/wt/runs/table2.preregistration.json", "rerun": False},
               "groups": [{"group": "none", "runs": [str(tmp_path / "missing"), str(run)]}]}
    out = portable(summary)
    assert out["spec"] == "examples/movielens/sweeps/table2.yaml"
    assert out["preregistration"] == {"file": "table2.preregistration.json", "rerun": False}
    assert summary["spec"].startswith("/home/u/") and summary["preregistration"]["file"].startswith("/home/u/")
    assert trained_on(summary) == "Test CPU 9000 (bf16 CPU flags: none; 2 usable CPUs, 1 thread(s), fp32)"
    assert trained_on({"groups": [{"runs": [str(tmp_path / "missing")]}]}) is None
