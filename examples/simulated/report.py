#!/usr/bin/env python
"""docs/RESULTS-simulated.md from the control studies (SIMULATED data): the reference rankers per slice
beside the models, then each study's section from `sslkit report`'s code (sslkit.study.report: the
protocol, picks, stopping steps, budget curves, every comparison with its interval, slices including
novel pairs, the null check), then the discussion.

    python examples/simulated/report.py                       # after the studies ran (see README there)
    python examples/simulated/report.py --out /tmp/r.md       # elsewhere

Reads runs/simulated-C/SPEC.sweep.json (written by `sslkit sweep`) for the studies in STUDIES, and
computes the reference rankers (oracles.py) on each control's test split.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONTROLS = ("positive", "negative")
# spec → (control whose data it reads, section title)
STUDIES = {"positive": ("positive", "Positive control, all training pairs (Tables 2, 4, 5)"),
           "negative": ("negative", "Negative control, all training pairs (Tables 2, 4, 5)"),
           "positive-10pct": ("positive", "Positive control, 10% of the training pairs (Table 3)")}
SLICES = ("overall", "head", "tail", "cold", "novel")


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"sim_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def f4(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def ranker_table(ref: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Reference rankers and the models' finals (mean over replicates x seeds), Recall@50 per slice."""
    lines = ["| ranker | " + " | ".join(f"{s} R@50" for s in SLICES) + " | overall R@10 |",
             "|---|" + "---:|" * (len(SLICES) + 1)]
    names = {"bayes": "Bayes-optimal (the generator's P(j \\| q))",
             "content": "content-only oracle (features → latent, cross-fitted)", "toppop": "TopPopular"}
    for key, label in names.items():
        r = ref["rankers"][key]
        lines.append(f"| {label} | " + " | ".join(f4(r[s].get("recall@50")) for s in SLICES)
                     + f" | {f4(r['overall'].get('recall@10'))} |")
    for g in summary.get("groups", []):
        m, sl = g.get("metrics", {}), g.get("slices", {})
        cells = [f4(m.get("recall@50", {}).get("mean"))] + [f4(sl.get(s, {}).get("recall@50")) for s in SLICES[1:]]
        lines.append(f"| model: {g.get('name') or g['group']} (mean of {g.get('n', '?')} finals) | " + " | ".join(cells)
                     + f" | {f4(m.get('recall@10', {}).get('mean'))} |")
    return lines


def reference_section(control: str, summary: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The control's test data and its reference rankers beside the study's models."""
    oracles = _load("oracles")
    schema = HERE / "data" / control / "schema.yaml"
    truth = dict(np.load(schema.parent / "truth.npz"))
    sc = oracles.Scorer(schema, "test")
    ref = {"data": sc.describe(), **oracles.oracles(sc, truth)}
    d = ref["data"]
    lines = [f"### {control.capitalize()} control: reference rankers beside the models (test, Recall@50)", "",
             f"Test split: {d['pairs']:,} pairs from {d['queries']:,} queries (head {d['slice_pairs']['head']:,}, "
             f"tail {d['slice_pairs']['tail']:,}, cold {d['slice_pairs']['cold']:,}); {d['repeat_share']:.1%} of them "
             f"repeat a training pair (either direction), the rest are the *novel* pairs. "
             f"{d['items_in_training']:,} of {d['items']:,} items occur in training. Content model fit "
             f"(cross-fitted R² of the engagement latent from the features): {ref['content_fit']['r2_latent']:.2f}.",
             "", *ranker_table(ref, summary), ""]
    return lines, ref


def compute_lines(runs_root: Path, summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Wall time of each study (runs/wall.jsonl, written by the study runner, less the measured pauses)
    and the training seconds its runs report."""
    from sslkit.study.report import trained_on

    from datetime import datetime, timedelta

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    # pauses: the studies stopped (SIGSTOP) while benchmarks timed on idle cores; not the studies' time
    pause_log = runs_root / "pauses.jsonl"
    pauses = [(at(p["start"]), at(p["start"]) + timedelta(seconds=p["seconds"]))
              for p in map(json.loads, pause_log.read_text().splitlines())] if pause_log.exists() else []
    walls = {}
    wall_log = runs_root / "wall.jsonl"
    if wall_log.exists():
        for line in wall_log.read_text().splitlines():
            w = json.loads(line)
            s, e = at(w["start"]), at(w["end"])
            paused = sum(max(0.0, (min(e, pe) - max(s, ps)).total_seconds()) for ps, pe in pauses)
            walls[Path(w["spec"]).stem] = w | {"seconds": w["seconds"] - paused}
    out = ["Training time counts each run's own wall seconds (pauses included); wall time is the study's.", ""]
    for name, s in summaries.items():
        root = runs_root / f"simulated-{STUDIES[name][0]}"
        runs = {d for g in s.get("groups", []) for d in g.get("runs", [])} | {t["dir"] for t in s.get("tuning", [])}
        secs = [json.loads((Path(d) / "summary.json").read_text()).get("train_seconds", 0.0) for d in runs
                if (Path(d) / "summary.json").exists()]
        w = walls.get(name, {})
        out.append(f"* {name}: {len(secs)} runs, {sum(secs) / 60:.1f} min of training time summed over its runs"
                   + (f"; {w['seconds'] / 60:.1f} min of wall time for the whole study ({w['start']} to {w['end']}, "
                      f"the studies two at a time on the 2 cores, less the minutes they were paused for timed benchmarks)" if "seconds" in w else "") + f" (runs in {root.name}/)")
    machine = next(filter(None, map(trained_on, summaries.values())), "an unrecorded machine")
    out.append(f"* Trained on {machine}; each study one process.")
    return out


def main(argv: list[str] | None = None) -> None:
    from sslkit.study.report import portable, study_report, write_markdown

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the studies wrote their runs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "RESULTS-simulated.md")
    ap.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    summaries = {}
    for name in a.studies:
        path = a.runs / f"simulated-{STUDIES[name][0]}" / f"{name}.sweep.json"
        if path.exists():
            summaries[name] = portable(json.loads(path.read_text()))
    if not summaries:
        raise SystemExit(f"no study summary under {a.runs}: run examples/simulated/study.py first")
    pre = [(HERE / "report_head.md").read_text().rstrip(), "", "## Reference rankers", ""]
    numbers = {}
    for control in CONTROLS:
        if control in summaries:
            lines, numbers[control] = reference_section(control, summaries[control])
            pre += lines
    pre += ["## Compute", "", *compute_lines(a.runs, summaries), ""]
    reports = [study_report(s, name=STUDIES[k][1]) for k, s in summaries.items()]
    write_markdown(reports, a.out, heading=2, preamble="\n".join(pre),
                   postscript="## Discussion\n\n" + (HERE / "discussion.md").read_text() +
                   "\n## Appendix: the pilot (validation only, before the studies)\n\n" +
                   (HERE / "pilot.md").read_text().split("\n", 1)[1])
    (a.out.parent / "results").mkdir(parents=True, exist_ok=True)
    (a.out.parent / "results" / "simulated-controls.json").write_text(json.dumps(numbers, indent=1, default=float))
    print(f"wrote {a.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
