#!/usr/bin/env python
"""docs/RESULTS-simulated.md from the two control studies (SIMULATED data): the reference rankers per
slice beside the models, Table 2 with intervals that include selection, slices with absolute
differences, novel pairs, budget curves, stopping steps, wall time and the compute budget.

    python examples/simulated/report.py                       # after both studies ran (see README there)
    python examples/simulated/report.py --out /tmp/r.md       # elsewhere

Reads, per control C in (positive, negative): runs/simulated-C/summary.json (written by `sslkit sweep`),
the reference rankers (oracles.py on the test split, computed here) and the novel-pair scores of the
final runs (oracles.py's scorer over the runs the summary lists). Pilot notes come from
examples/simulated/pilot.json (validation only; written by hand from the pilot's numbers).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONTROLS = ("positive", "negative")
SLICES = ("overall", "head", "tail", "cold", "novel")


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"sim_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def f4(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def ci(lo_hi: Any, pct: bool = False) -> str:
    if not lo_hi:
        return "–"
    lo, hi = lo_hi
    return f"[{lo:+.1%}, {hi:+.1%}]" if pct else f"[{lo:+.4f}, {hi:+.4f}]"


def final_runs(summary: dict[str, Any]) -> dict[str, list[list[str]]]:
    """arm → [replicate][seed] run dirs of the finals (the group rows list them replicate by replicate)."""
    seeds = len(summary["selection"]["final_seeds"])
    out = {}
    for g in summary.get("groups", []):
        runs = g.get("runs", [])
        if runs and len(runs) % seeds == 0:
            out[g.get("name") or g["group"]] = [runs[i:i + seeds] for i in range(0, len(runs), seeds)]
    return out


def novel_rows(scorer: Any, runs: dict[str, list[list[str]]]) -> dict[str, Any]:
    """Each arm's finals scored on novel pairs (mean over its runs) and, against the baseline, the
    difference with an interval over replicates x seeds x queries when the stats module is there."""
    from sslkit.evaluation.metrics import compute_metrics

    out: dict[str, Any] = {}
    per: dict[str, np.ndarray] = {}
    novel = ~scorer.repeat
    owner = np.repeat(np.arange(len(scorer.q)), np.diff(scorer.indptr))
    qs, counts = np.unique(owner[novel], return_counts=True)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    for arm, reps in runs.items():
        grid = []
        for rep in reps:
            row = []
            for d in rep:
                top = _top(scorer, d)
                row.append(compute_metrics(top[qs], ptr, scorer.rel[novel], (50,))["recall@50"])
            grid.append(row)
        per[arm] = np.array(grid)  # (R, S, Qnovel)
        out[arm] = {"recall@50": float(per[arm].mean()), "runs": int(per[arm].shape[0] * per[arm].shape[1])}
    return {"arms": out, "per_query": per, "queries": int(len(qs)), "pairs": int(novel.sum())}


def novel_versus(novel: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """Each arm against the baseline on the novel pairs, with the study's interval (replicates x seeds x
    queries, `sslkit.study.stats.hierarchical_paired_ci`)."""
    from sslkit.study import stats

    per = novel["per_query"]
    rows = []
    for arm, a in per.items():
        if arm == base or a.shape != per[base].shape:
            continue
        ab = stats.hierarchical_paired_ci(per[base], a, relative=False)
        rows.append({"arm": arm, "baseline_value": float(per[base].mean()), "value": float(a.mean()),
                     "delta_abs": ab["delta"], "ci_abs": ab["ci"], "wins": ab["wins"], "replicates": ab["replicates"],
                     "verdict": stats.verdict(ab["ci"])})
    return rows


def _top(scorer: Any, run_dir: str) -> np.ndarray:
    from sslkit.evaluation.evaluate import retrieve
    from sslkit.retrieval.embed import embed_table, load_run

    run = load_run(run_dir)
    items = embed_table(run, scorer.store.items, queries=False)
    queries = embed_table(run, scorer.store.items.take(scorer.q), queries=True)
    return retrieve(items, queries, 50, index="exact", exclude_self=scorer.q, exclude=scorer.seen, batch_size=4096)


def ranker_table(oracle: dict[str, Any], groups: dict[str, dict[str, Any]], novel: dict[str, Any]) -> list[str]:
    """Reference rankers and the models' finals (mean over replicates x seeds), Recall@50 and @10 per slice."""
    lines = ["| ranker | " + " | ".join(f"{s} R@50" for s in SLICES) + " | overall R@10 |",
             "|---|" + "---:|" * (len(SLICES) + 1)]
    names = {"bayes": "Bayes-optimal (the generator's P(j \\| q))", "content": "content-only oracle (features → latent, cross-fitted)",
             "toppop": "TopPopular"}
    for key, label in names.items():
        r = oracle["rankers"][key]
        lines.append(f"| {label} | " + " | ".join(f4(r[s].get("recall@50")) for s in SLICES)
                     + f" | {f4(r['overall'].get('recall@10'))} |")
    for arm, g in groups.items():
        m, sl = g.get("metrics", {}), g.get("slices", {})
        cells = [f4(m.get("recall@50", {}).get("mean"))]
        cells += [f4(sl.get(s, {}).get("recall@50")) for s in ("head", "tail", "cold")]
        cells.append(f4(novel.get("arms", {}).get(arm, {}).get("recall@50")))
        lines.append(f"| model: {arm} (test, mean of {g.get('n', g.get('seeds', '?'))} finals) | " + " | ".join(cells)
                     + f" | {f4(m.get('recall@10', {}).get('mean'))} |")
    return lines


def _signed(v: Any, pct: bool = False) -> str:
    return "–" if v is None else (f"{v:+.1%}" if pct else f"{v:+.4f}")


def comparison_table(summary: dict[str, Any]) -> list[str]:
    """Every comparison; the headline family (arm vs baseline on the selection metric) first."""
    lines = ["| arm vs baseline | metric | baseline | arm | Δ abs [95% CI] | Δ rel [95% CI] | p (Holm) | wins | verdict |",
             "|---|---|---:|---:|---|---|---:|---:|---|"]
    rows = sorted(summary.get("comparisons", []), key=lambda c: (not c.get("family"), c["metric"]))
    for c in rows:
        p = c.get("p_holm") if c.get("p_holm") is not None else c.get("p")
        p_txt = "–" if p is None else f"{p:.3f}" + ("" if c.get("p_holm") is not None else " (raw)")
        lines.append(f"| {c['arm']} vs {c['baseline']} | {c['metric']} | {f4(c.get('baseline_value'))} | {f4(c.get('value'))} "
                     f"| {_signed(c.get('delta_abs'))} {ci(c.get('ci_abs'))} | {_signed(c.get('delta_rel'), True)} "
                     f"{ci(c.get('ci_rel'), pct=True)} | {p_txt} | {c.get('wins', '–')}/{c.get('replicates', '–')} "
                     f"| {c.get('verdict', '–')} |")
    return lines


def slice_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| arm | slice | metric | baseline | arm | Δ abs [95% CI] | Δ rel [95% CI] |", "|---|---|---|---:|---:|---|---|"]
    for s in summary.get("slices", []):
        rel = "–" if s.get("absolute_only") or s.get("ci_rel") is None else f"{s['delta_rel']:+.1%} {ci(s['ci_rel'], pct=True)}"
        lines.append(f"| {s['arm']} | {s['slice']} | {s['metric']} | {f4(s.get('baseline_value'))} | {f4(s.get('value'))} "
                     f"| {_signed(s.get('delta_abs'))} {ci(s.get('ci_abs'))} | {rel} |")
    return lines


def picks_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| arm | replicate | pick | validation R@50 | stopping step |", "|---|---:|---|---:|---:|"]
    for arm, a in summary.get("arms", {}).items():
        for r in a.get("replicates", []):
            pick = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (r.get("pick") or {}).items())
            lines.append(f"| {arm} | {r.get('replicate')} | {pick} | {f4(r.get('validation'))} | {r.get('stopping_step', '–')} |")
    return lines


def curve_table(summary: dict[str, Any]) -> list[str]:
    curves = summary.get("budget_curves", {})
    if not curves:
        return ["_No budget curves in the summary._"]
    budgets = sorted({p["budget"] for c in curves.values() for p in c})
    lines = ["| arm | " + " | ".join(f"B={b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for arm, pts in curves.items():
        by = {p["budget"]: p for p in pts}
        lines.append(f"| {arm} | " + " | ".join(
            f"{by[b]['expected_best']:.4f} [{by[b]['lo']:.4f}, {by[b]['hi']:.4f}]" if b in by else "–" for b in budgets) + " |")
    return lines


def groups_of(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for g in summary.get("groups", []):
        name = g.get("name") or g.get("group")
        out[str(name)] = g
    return out


def control_section(control: str, runs_root: Path) -> tuple[list[str], dict[str, Any]]:
    """One control's part of the report, and the numbers it used (for the JSON beside the report)."""
    oracles = _load("oracles")
    spec_name = control
    summary_path = runs_root / f"simulated-{control}" / f"{spec_name}.sweep.json"
    summary = json.loads(summary_path.read_text())
    schema = HERE / "data" / control / "schema.yaml"
    truth = dict(np.load(schema.parent / "truth.npz"))
    sc = oracles.Scorer(schema, "test")
    ref = {"data": sc.describe(), **oracles.oracles(sc, truth)}
    runs = final_runs(summary)
    novel = novel_rows(sc, runs) if runs else {"arms": {}, "per_query": {}}
    nv = novel_versus(novel, summary["baseline"]) if runs else []
    d = ref["data"]
    title = {"positive": "Positive control: features carry the engagement latent",
             "negative": "Negative control: features independent of engagement"}[control]
    lines = [f"## {title}", "",
             f"Test split: {d['pairs']:,} pairs from {d['queries']:,} queries (head {d['slice_pairs']['head']:,}, "
             f"tail {d['slice_pairs']['tail']:,}, cold {d['slice_pairs']['cold']:,}); "
             f"{d['repeat_share']:.1%} of them repeat a training pair (either direction), the rest are the *novel* "
             f"pairs. {d['items_in_training']:,} of {d['items']:,} items occur in training. "
             f"Content model fit (cross-fitted R² of the engagement latent from the features): "
             f"{ref['content_fit']['r2_latent']:.2f}.", "",
             "### Reference rankers and models per slice (test, Recall@50)", ""]
    lines += ranker_table(ref, groups_of(summary), novel)
    lines += ["", "### Table 2: CFM vs baseline (test; the interval resamples replicates × seeds × queries, so it "
              "covers the tuning step)", ""]
    lines += comparison_table(summary)
    lines += ["", "### Slices (Recall@50; absolute differences, relative ones only where the baseline is ≥ 0.05)", ""]
    lines += slice_table(summary)
    if nv:
        lines += ["", f"Novel pairs ({novel['pairs']:,} pairs, {novel['queries']:,} queries), Recall@50:", "",
                  "| arm | baseline | arm | Δ abs [95% CI] | wins | verdict |", "|---|---:|---:|---|---:|---|"]
        lines += [f"| {r['arm']} | {r['baseline_value']:.4f} | {r['value']:.4f} | {r['delta_abs']:+.4f} "
                  f"{ci(r['ci_abs'])} | {r['wins']}/{r['replicates']} | {r['verdict']} |" for r in nv]
    lines += ["", "### Picks, validation scores and stopping steps", ""] + picks_table(summary)
    st = summary.get("stopping", {})
    if st:
        lines += ["", "Finals' training steps: " + "; ".join(
            f"{a}: {', '.join(str(x) for x in (v.get('best_steps') if any(v.get('stopped_early') or []) else v.get('steps')) or [])}"
            for a, v in st.items())]
    lines += ["", "### Expected best validation Recall@50 vs budget (Dodge et al. 2019; band over replicates)", ""]
    lines += curve_table(summary)
    if summary.get("warnings"):
        lines += ["", "Warnings: " + "; ".join(summary["warnings"])]
    pre = summary.get("preregistration") or {}
    if pre:
        lines += ["", f"Pre-registration: spec sha256 {str(pre.get('spec_sha256', ''))[:12]}…, commit "
                  f"{str(pre.get('commit', ''))[:10]}, recorded {pre.get('recorded_at', '–')}"
                  + (" — RERUN (the spec changed after test was read)" if pre.get("rerun") else "") + "."]
    numbers = {"reference": ref, "novel": {"arms": novel["arms"], "versus": nv}, "summary_path": str(summary_path)}
    return lines, numbers


def compute_lines(runs_root: Path, controls: list[str]) -> list[str]:
    """Wall time of each study (its runner's log) and the CPU seconds its runs report."""
    out = []
    for control in controls:
        root = runs_root / f"simulated-{control}"
        secs = [json.loads(p.read_text()).get("train_seconds", 0.0) for p in root.glob("*/summary.json")]
        wall = root / "wall.json"
        w = json.loads(wall.read_text()) if wall.exists() else {}
        out.append(f"* {control}: {len(secs)} runs, {sum(secs) / 60:.1f} min of training time summed over runs"
                   + (f", {w['seconds'] / 60:.1f} min wall for the whole study (start {w.get('start')}, end "
                      f"{w.get('end')})" if "seconds" in w else ""))
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the studies wrote their runs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "RESULTS-simulated.md")
    ap.add_argument("--controls", nargs="+", choices=CONTROLS, default=list(CONTROLS))
    a = ap.parse_args(argv)
    (a.out.parent / "results").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    head = (HERE / "report_head.md").read_text()
    body, numbers = [], {}
    for control in a.controls:
        lines, numbers[control] = control_section(control, a.runs)
        body += lines + [""]
    tail = (HERE / "pilot.md").read_text().rstrip() + "\n\n" + (HERE / "discussion.md").read_text()
    for control in a.controls:  # each study's full page from `sslkit report` (charts as .svg beside it)
        page = a.out.parent / "results" / f"simulated-{control}.md"
        subprocess.run([sys.executable, "-m", "sslkit", "report", str(a.runs / f"simulated-{control}"), "--format", "md",
                        "--out", str(page), "--title", f"SIMULATED {control} control: the study"], check=True)
        body += [f"Full {control} study page from `sslkit report` (every trial, budget curves, charts): "
                 f"[results/simulated-{control}.md](results/simulated-{control}.md).", ""]
    cpu = _cpu_model()
    text = "\n".join([head.rstrip(), "", *body, "## Compute", "", *compute_lines(a.runs, a.controls),
                      f"* CPU: {cpu} (Zen 3: AVX2, no avx512_bf16, no AMX), 2 cores shared with about seven other jobs (load average ~30); "
                      "each study one process with one thread, the two side by side, fp32; report built in "
                      f"{time.perf_counter() - t0:.0f} s.", "", tail.rstrip(), ""])
    a.out.write_text(text)
    (a.out.parent / "results" / "simulated-controls.json").write_text(json.dumps(numbers, indent=1, default=float))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
