"""Reproduce the paper's study on MovieLens-100K under a protocol that cannot peek; write docs/RESULTS.md.

    python examples/movielens/study.py                 # the whole study (see docs/RESULTS.md for its cost)
    python examples/movielens/study.py --quick         # smoke run into /tmp: budget 2, 2 seeds, 5 steps
    python examples/movielens/study.py --specs table2  # some of the specs only (the report needs table2)

Builds the data when missing (prepare.py) and runs the tuning studies in `sweeps/` with `sslkit
sweep`'s code (resumable: finished cells are skipped, and cells of other training arithmetic are
never reused — `sslkit.NUMERICS_VERSION` is in their names). The protocol is the spec's (two-stage,
3 tuning replicates, early stopping, fresh final seeds; docs/studies.md). The report is `sslkit
report`'s Markdown (sslkit.study.report.write_markdown) of the three studies, after a preamble that
puts the paper's numbers (Tables 2, 3, 5) beside the measured changes, and before discussion.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPECS = ("table2", "table3", "users")
QUICK = {"budget": 2, "replicates": 2, "seeds": [0, 1], "null_seeds": [2, 3],
         "overrides": ["train.steps=5", "train.epochs=1", "train.eval_queries=50"]}
TITLES = {"table2": "Item-to-item, all training pairs (Tables 2, 4, 5)",
          "table3": "Item-to-item, 10% of the training pairs (Table 3)",
          "users": "User-to-item (leave the latest 10% of each user out)"}

# The paper's tables (Yao et al., CIKM 2021): dataset → method → (MAP@10, MAP@50, Recall@10, Recall@50).
PAPER_ORDER = ("map@10", "map@50", "recall@10", "recall@50")
PAPER = {
    "table2": {"Wikipedia": {"none": (0.0171, 0.0229, 0.0537, 0.1930), "fd": (0.0172, 0.0229, 0.0535, 0.1912),
                             "so": (0.0176, 0.0235, 0.0549, 0.1956), "cfm": (0.0183, 0.0243, 0.057, 0.2009)},
               "AAI": {"none": (0.1257, 0.1363, 0.2793, 0.4983), "fd": (0.1278, 0.1384, 0.2840, 0.5058),
                       "so": (0.1300, 0.1406, 0.2870, 0.5076), "cfm": (0.1413, 0.1522, 0.3078, 0.5355)}},
    "table3": {"Wikipedia": {"none": (0.0077, 0.0105, 0.0237, 0.0924), "fd": (0.0089, 0.0120, 0.0272, 0.1046),
                             "so": (0.0083, 0.0112, 0.0254, 0.0978), "cfm": (0.0093, 0.0126, 0.0286, 0.1093)},
               "AAI": {"none": (0.1112, 0.1194, 0.2406, 0.4068), "fd": (0.1217, 0.1302, 0.2611, 0.4324),
                       "so": (0.1220, 0.1308, 0.2632, 0.4400), "cfm": (0.1409, 0.1507, 0.3024, 0.5014)}},
    "table5": {"AAI": {"none": (0.1257, 0.1363, 0.2793, 0.4983), "cfm": (0.1413, 0.1522, 0.3078, 0.5355),
                       "rfm": (0.1281, 0.1389, 0.2851, 0.5104), "rfm_no_compl": (0.1363, 0.1472, 0.3007, 0.5290),
                       "cfm_no_dropout": (0.1309, 0.1417, 0.2898, 0.5150), "no_mask": (0.1303, 0.1408, 0.2868, 0.5053)}},
}
# Table 4: dataset → method → slice → (Recall@10, Recall@50)
PAPER_SLICES = {
    "Wikipedia": {"none": {"tail": (0.0472, 0.1621), "head": (0.0610, 0.2273)},
                  "fd": {"tail": (0.0474, 0.1638), "head": (0.0593, 0.2212)},
                  "so": {"tail": (0.0481, 0.1644), "head": (0.0606, 0.2268)},
                  "cfm": {"tail": (0.0524, 0.1749), "head": (0.0619, 0.2283)}},
    "AAI": {"none": {"tail": (0.0475, 0.2333), "head": (0.2846, 0.4993)},
            "fd": {"tail": (0.0727, 0.2743), "head": (0.2849, 0.5069)},
            "so": {"tail": (0.0661, 0.2602), "head": (0.2879, 0.5086)},
            "cfm": {"tail": (0.0720, 0.2906), "head": (0.309, 0.537)}},
}
NAMES = {"none": "Baseline", "fd": "FD", "so": "SO", "cfm": "CFM", "rfm": "RFM", "rfm_no_compl": "RFM_no_compl",
         "cfm_no_dropout": "CFM_no_dropout", "no_mask": "NoMasking"}


NAMES |= {"cfm_popularity": "CFM, popularity SSL sampling", "none_no_logq": "Baseline without logQ",
          "none_1024_128": "Baseline [1024, 128]", "cfm_1024_128": "CFM [1024, 128]",
          "cfm_at_none": "CFM at the baseline's pick"}


NAMES |= {"cfm_id_exclude": "CFM, id out of the mask sets", "cfm_popularity": "CFM, popularity SSL sampling"}
PAPER_TABLE = {"table2": {"fd": "table2", "so": "table2", "cfm": "table2", "rfm": "table5",
                          "cfm_no_dropout": "table5", "no_mask": "table5"},
               "table3": {"cfm": "table3"}}


def log(msg: str) -> None:
    print(f"[study] {msg}", file=sys.stderr, flush=True)


def ensure_data() -> None:
    if (HERE / "data/ratings.parquet").exists() and (HERE / "data/items.parquet").exists():
        return
    spec = importlib.util.spec_from_file_location("ml_prepare", HERE / "prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    mod.main([])


def run_specs(specs: dict[str, Path], runs: Path, *, quick: bool = False, budget: int | None = None,
              progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run each tuning study (resumably) and return its summary, with the wall time its cells took.

    The same path for the MovieLens study and for `tests/test_study.py`'s tiny one.
    """
    from sslkit import console
    from sslkit.data import io
    from sslkit.study.cells import cell_status
    from sslkit.study.sweep import load_sweep, run_sweep, summarize_sweep, write_summary

    # Wall time per spec, kept beside the runs: a rerun that trains nothing reports the time the
    # cells took when they were trained, not the seconds it took to skip them. The running total is
    # saved after every cell, so a process stopped midway keeps the time it spent, and the process
    # that resumes the spec adds its own.
    times_path = runs / "study_times.json"
    seconds = json.loads(times_path.read_text()) if times_path.exists() else {}
    summaries = {}
    for name, path in specs.items():
        sw = load_sweep(path, out=runs, overrides=QUICK["overrides"] if quick else [],
                        budget=QUICK["budget"] if quick else budget, seeds=QUICK["seeds"] if quick else None,
                        null_seeds=QUICK["null_seeds"] if quick else None,
                        replicates=QUICK["replicates"] if quick else None)
        statuses = [cell_status(c) for c in sw.cells]
        log(f"sweep {name}: {len(sw.cells)} tuning cells ({sum(s != 'done' for s in statuses)} to run), then each "
            f"arm's pick with {len(sw.spec.seeds)} seeds")
        # a spec with finished cells is being resumed: its recorded time so far is kept and added to
        base = seconds.get(name, 0.0) if "done" in statuses or "trained" in statuses or "partial" in statuses else 0.0
        t0 = time.perf_counter()
        display = progress or console.SweepDisplay()
        trained = [False]

        def record() -> None:  # specs may run in parallel processes: keep the other entries on disk
            seconds[name] = base + time.perf_counter() - t0
            runs.mkdir(parents=True, exist_ok=True)
            on_disk = json.loads(times_path.read_text()) if times_path.exists() else {}
            io.atomic_write_bytes(times_path, json.dumps(on_disk | {name: seconds[name]}, indent=1).encode())

        def on_event(kind: str, p: dict[str, Any]) -> None:
            if kind == "cell" and p["status"] != "done":  # work starts on this cell: save the time so far
                trained[0] = True
                record()
            display(kind, p)

        try:
            results, failed = run_sweep(sw, log=lambda _: None, on_event=on_event)
        finally:
            getattr(display, "close", lambda: None)()
        if failed:
            sys.exit(f"Error: sweep {name}: {len(failed)} cells failed: {failed[0][1]}")
        elapsed = time.perf_counter() - t0
        if trained[0] or name not in seconds:  # something was trained (or nothing recorded yet)
            record()
        summaries[name] = summarize_sweep(sw, results)
        summaries[name]["seconds"] = seconds[name]
        write_summary(sw, summaries[name])
        log(f"sweep {name}: {elapsed:.0f} s")
    return summaries


# ---- the report: a preamble (the paper beside the measured changes), sslkit report's Markdown, discussion

def paper_change(table: str, arm: str) -> str:
    """The paper's relative change of Recall@50 over its baseline for `arm` in `table`, per dataset."""
    i = PAPER_ORDER.index("recall@50")
    rows = [f"{r[arm][i] / r['none'][i] - 1:+.1%} ({ds})" for ds, r in PAPER.get(table, {}).items() if arm in r]
    return ", ".join(rows) or "–"


def paper_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Every arm against the baseline on Recall@50: the measured change with its interval (replicates x
    seeds x queries: it covers the tuning draw), wins of R, the verdict, and the paper's change."""
    from sslkit.study.report import comparisons

    lines = ["| study | arm | Recall@50 (arm / baseline) | Δ | 95% interval | beat the baseline in | verdict "
             "| paper's Δ Recall@50 |", "|---|---|---:|---:|---|---:|---|---|"]
    for spec, s in summaries.items():
        for c in comparisons(s):
            if c["metric"] != "recall@50" or c["baseline"] != s.get("baseline", "none") or c["rel"] is None:
                continue
            wins = f"{c['wins']} of {c['replicates']}" if c.get("wins") is not None else "–"
            ci = f"[{c['lo']:+.1%}, {c['hi']:+.1%}]" if c["lo"] is not None else "–"
            table = PAPER_TABLE.get(spec, {}).get(c["arm"])
            lines.append(f"| {spec} | {NAMES.get(c['arm'], c['arm'])} | {c['value']:.4f} / {c['baseline_value']:.4f} "
                         f"| {c['rel']:+.1%} | {ci} | {wins} | {c['verdict']} | "
                         f"{paper_change(table, c['arm']) if table else '–'} |")
    return "\n".join(lines)


def preamble(summaries: dict[str, dict[str, Any]], quick: bool) -> str:
    from sslkit import NUMERICS_VERSION
    from sslkit.study.report import trained_on

    machine = next(filter(None, map(trained_on, summaries.values())), "an unrecorded machine")
    secs = {k: s.get("seconds") for k, s in summaries.items()}
    cost = " · ".join(f"{k} {v / 60:.0f} min" for k, v in secs.items() if v is not None)
    total = sum(v for v in secs.values() if v is not None) / 60
    head = (HERE / "results_head.md").read_text()
    return "\n".join([
        "# Reproducing the paper's study on MovieLens-100K" + (" (QUICK SMOKE RUN: not results)" if quick else ""),
        "",
        f"Generated by `python examples/movielens/study.py`: the preamble and the paper's columns by that script, "
        f"each study's section by `sslkit report`'s code (`sslkit.study.report`), the discussion from "
        f"`examples/movielens/discussion.md`. Training arithmetic: `NUMERICS_VERSION` {NUMERICS_VERSION}.",
        "",
        f"**Cost:** {total:.0f} min of wall time for the studies ({cost}; each measured while it ran, one "
        f"process per study; studies may have shared the cores). Trained on {machine}.",
        "",
        head.strip(),
        "",
        "## Every arm against the baseline",
        "",
        paper_table(summaries),
        "",
        "_Δ: relative change of the mean Recall@50 over replicates × final seeds × test queries; the 95% interval "
        "resamples replicates, seeds within them and queries (the same draw for both arms), so it covers the "
        "tuning step; a verdict says helps/hurts only when the interval excludes 0 (and Holm's p < 0.05 over "
        "the study's arms). The paper's Δ: its Tables 2, 3 and 5 (Wikipedia, AAI), relative to its baseline._",
    ])


def write_report(summaries: dict[str, dict[str, Any]], out: Path, quick: bool) -> Path:
    from sslkit.study.report import portable, study_report, write_markdown

    published = {k: portable(s) for k, s in summaries.items()}
    reports = [study_report(s, name=TITLES.get(k, k)) for k, s in published.items()]
    notes = HERE / "discussion.md"
    post = "_(No discussion for a quick run.)_" if quick else (
        notes.read_text() if notes.exists() else f"_({notes.name} beside the study is not written yet.)_")
    (out / "results").mkdir(parents=True, exist_ok=True)  # the summaries behind the page, for re-rendering
    (out / "results" / "summaries.json").write_text(json.dumps(published, indent=1, default=float) + "\n")
    return write_markdown(reports, out / "RESULTS.md", heading=2, preamble=preamble(summaries, quick),
                          postscript="## Discussion\n\n" + post)


def study_main(doc: str, *, specs: tuple[str, ...], sweeps: Path, runs: str, report: str, quick_dir: str,
               ensure: Callable[[], None], write: Callable[[dict[str, Any], Path, bool], Path]) -> None:
    """The command line of a study script: run its specs (resumably), then write its report.

    Shared by this study and `examples/simulated/study.py`; `runs`/`quick_dir` are the default run
    directories (under the repository / under /tmp for --quick), `report` names what --docs gets.
    """
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="budget 2, 2 replicates, seeds 0-1 (+2 null), 5 steps per run, into /tmp")
    ap.add_argument("--budget", type=int, default=None, help="tuning cells per arm [the specs']")
    ap.add_argument("--specs", default=",".join(specs), help=f"comma-separated subset of {','.join(specs)}")
    ap.add_argument("--runs", type=Path, default=None, help=f"cell run directories [{runs}]")
    ap.add_argument("--docs", type=Path, default=None, help=f"where {report} and results/ go [docs]")
    args = ap.parse_args()
    names = [s for s in args.specs.split(",") if s]
    unknown = sorted(set(names) - set(specs))
    if unknown:
        sys.exit(f"Error: --specs: unknown {', '.join(unknown)} (choose from {', '.join(specs)})")
    if args.quick:
        args.runs = args.runs or Path(f"/tmp/{quick_dir}/runs")
        args.docs = args.docs or Path(f"/tmp/{quick_dir}/docs")
    from sslkit.errors import SslkitError

    t0 = time.perf_counter()
    ensure()
    try:
        summaries = run_specs({n: sweeps / f"{n}.yaml" for n in names}, args.runs or ROOT / runs, quick=args.quick,
                              budget=args.budget)
    except SslkitError as e:  # a bad spec or --budget, damaged data: one line, as the sslkit commands say it
        sys.exit(f"Error: {e.line()}")
    if "table2" not in names:
        log(f"ran {', '.join(names)} in {(time.perf_counter() - t0) / 60:.1f} min; the report needs table2")
        return
    path = write(summaries, args.docs or ROOT / "docs", args.quick)
    log(f"wrote {path} in {(time.perf_counter() - t0) / 60:.1f} min")


def main() -> None:
    study_main(__doc__, specs=SPECS, sweeps=HERE / "sweeps", runs="runs/movielens", report="RESULTS.md",
               quick_dir="sslkit-study-quick", ensure=ensure_data, write=write_report)


if __name__ == "__main__":
    main()
