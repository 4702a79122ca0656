"""Reproduce the paper's study on MovieLens-100K under a protocol that cannot peek; write docs/RESULTS.md.

    python examples/movielens/study.py                 # the whole study (133 min measured on a shared 2-core machine)
    python examples/movielens/study.py --quick         # smoke run into /tmp: budget 2, 2 seeds, 5 steps (~3 min)
    python examples/movielens/study.py --budget 8      # 8 tuning cells per arm instead of 6 (more time)
    python examples/movielens/study.py --specs table2  # some of the specs only (the report needs all)

Builds the data when missing (prepare.py) and runs the tuning studies in `sweeps/` with `sslkit
sweep` (resumable: finished cells are skipped, cells shared between specs are trained once, and
cells of other training arithmetic are never reused — `sslkit.NUMERICS_VERSION` is in their
names). Protocol: every tuned arm (a method) gets the same number of tuning cells over its own
knobs, scored on the validation split (10% of the training pairs); its best cell by validation
Recall@50 is trained with 5 seeds and scored once on the test split; arms are compared with the
baseline seed by seed (paired bootstrap over seeds and queries), and a null check measures how
often that interval calls a difference between baseline seeds. Verdicts say "helps" or "hurts"
only when the 95% interval excludes 0.

Time (2 CPU cores, fp32): one 8-epoch run with [256, 64] towers takes ~15 s, with [1024, 128]
towers ~4.5x that. The default study trains ~100 small item-to-item runs (table2: 24 tuning + 26
seeds + 5 null + 7 curve points; table5: 20; table3: 20), 10 large ones (towers) and 44
user-to-item runs (users): measured 133 min of wall time, most of it while other jobs shared the
cores (table2 53 · table5 16 · table3 33 · towers 7 · users 25 min); ~60 min on idle cores is the
estimate from the per-run times.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPECS = ("table2", "table5", "table3", "towers", "users")
METRICS = ("recall@10", "recall@50", "map@10", "map@50")
MIN_SLICE_PAIRS = 100  # below this a slice's relative change is one or two hits: not reported
QUICK = {"budget": 2, "seeds": [0, 1], "null_seeds": [2, 3], "overrides": ["train.steps=5"]}

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
                        null_seeds=QUICK["null_seeds"] if quick else None)
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


# ---- report pieces (generic: any study summary) -------------------------------------------------

def group(summary: dict[str, Any], arm: str) -> dict[str, Any]:
    for g in summary["groups"]:
        if g["group"] == arm:
            return g
    raise KeyError(f"{summary['spec']}: no arm {arm}")


def ms(g: dict[str, Any], m: str) -> str:
    return f"{g['metrics'][m]['mean']:.4f} ± {g['metrics'][m]['std']:.4f}" if "metrics" in g else "—"


def ci_text(c: dict[str, Any] | None) -> str:
    return "—" if not c else f"{c['relative']:+.1%} [{c['low']:+.1%}, {c['high']:+.1%}]"


def verdict(c: dict[str, Any] | None) -> str:
    """'helps' / 'hurts' only when the 95% interval excludes 0 (the rule of `sslkit report`)."""
    from sslkit.study.report import verdict_of

    return (verdict_of(c.get("low"), c.get("high")) if c else "") or "—"


def name_of(arm: str) -> str:
    return NAMES.get(arm, arm)


def budget_table(summary: dict[str, Any]) -> str:
    """Per arm: what it searched, how many cells, and what it picked (validation score)."""
    sel = summary["selection"]
    lines = [f"| arm | tuned | knobs searched (grid size) | tuning cells | pick | validation {sel['metric']} of the pick |",
             "|---|---|---|---|---|---|"]
    for arm, a in summary["arms"].items():
        pick = ", ".join(f"{k}={v}" for k, v in a.get("selected", {}).items()) or "—"
        if a["tuned"]:
            knobs = " × ".join(f"{k} {v}" for k, v in a["space"].items())
            cells = f"{a['cells']}" + (" (balanced random subset)" if a["sampled"] else " (whole grid)")
            score = a.get("selected_validation")
            lines.append(f"| {name_of(arm)} | yes | {knobs} ({a['grid_size']}) | {cells} | {pick} | "
                         f"{'—' if score is None else f'{score:.4f}'} |")
        else:
            change = ", ".join(f"{k}={v}" for k, v in a["fixed"].items())
            lines.append(f"| {name_of(arm)} | no: {name_of(a['from'])}'s pick with {change} | — | 0 | {pick} | — |")
    return "\n".join(lines)


def tuning_table(summary: dict[str, Any]) -> str:
    """Every tuning cell's validation scores, best first within each arm."""
    metric = summary["selection"]["metric"]
    lines = [f"| arm | cell | validation {metric} | validation map@50 |", "|---|---|---|---|"]
    for arm in summary["arms"]:
        rows = [t for t in summary["tuning"] if t["arm"] == arm]
        for t in sorted(rows, key=lambda t: -(t["validation"] or {}).get(metric, -1)):
            v = t["validation"] or {}
            cell = ", ".join(f"{k}={x}" for k, x in t["values"].items())
            lines.append(f"| {name_of(arm)} | {cell} | {v.get(metric, float('nan')):.4f} | {v.get('map@50', float('nan')):.4f} |")
    return "\n".join(lines)


def methods_table(summary: dict[str, Any], methods: list[str], paper: Callable[[str], str] | None = None,
                  key: str = "vs_baseline") -> str:
    """Test metrics (mean ± std over seeds), Δ vs the baseline (or parent) with paired CIs, verdict."""
    head = ["method", "seeds", *METRICS, "Δ Recall@50 [95% CI]", "Δ MAP@50 [95% CI]", "verdict (Recall@50)"]
    if paper:
        head.insert(-1, "paper Δ Recall@50")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        g = group(summary, m)
        vs = g.get(key) or {}
        row = [name_of(m), str(g["seeds"]), *(ms(g, x) for x in METRICS), ci_text(vs.get("recall@50")),
               ci_text(vs.get("map@50")), verdict(vs.get("recall@50")) if vs else "(reference)"]
        if paper:
            row.insert(-1, paper(m))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def null_text(summary: dict[str, Any]) -> str:
    nc = summary.get("null_check")
    if not nc:
        return "_(no null check in this spec)_"
    return (f"{nc['false_positives']} of {nc.get('comparisons', nc.get('replicates'))} baseline-vs-baseline comparisons "
            f"({nc['arm_size']} vs {nc['arm_size']} of the baseline pick's {nc['runs']} seeds, every split) had a "
            f"95% interval on {nc['metric']} that excludes 0: a false-positive rate of **{nc['rate']:.1%}** "
            f"(nominal {nc['nominal']:.0%}).")


def verdict_lines(comparisons: list[tuple[str, dict[str, Any], str, str]]) -> str:
    """One line per comparison: what its interval supports."""
    out = []
    for label, summary, arm, key in comparisons:
        try:
            c = (group(summary, arm).get(key) or {}).get("recall@50")
        except KeyError:
            continue
        out.append(f"* {label}: **{verdict(c)}** (Recall@50 {ci_text(c)}).")
    return "\n".join(out)


# ---- the MovieLens report -------------------------------------------------------------------------

def paper_rel(table: str) -> Callable[[str], str]:
    def rel(method: str) -> str:
        i = PAPER_ORDER.index("recall@50")
        parts = [f"{rows[method][i] / rows['none'][i] - 1:+.1%} ({ds})" for ds, rows in PAPER[table].items()
                 if method in rows and method != "none"]
        return ", ".join(parts) or "—"
    return rel


PAPER_SLICE_OF = {"head": ("AAI", "head"), "tail": ("AAI", "tail"), "cold": ("Wikipedia", "tail")}


def sampled_arms(summary: dict[str, Any]) -> str:
    tuned = [a for a in summary["arms"].values() if a["tuned"]]
    n = sum(a["sampled"] for a in tuned)
    return "every tuned arm here" if n == len(tuned) else f"{n} of the {len(tuned)} tuned arms here"


def slices_table(summary: dict[str, Any], methods: list[str]) -> str:
    lines = ["| method | slice | test pairs | Recall@10 | Recall@50 | Δ Recall@50 vs baseline [95% CI] | verdict | paper Δ Recall@50, same kind of slice |",
             "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        g = group(summary, m)
        for s in ("head", "tail", "cold"):
            sl = g["slices"][s]
            if not sl.get("pairs"):
                continue
            rel = (g.get("vs_baseline_slices") or {}).get(s, {}).get("recall@50")
            ci = (g.get("vs_baseline_slices_ci") or {}).get(s, {}).get("recall@50")
            paper = "—"
            if m in PAPER_SLICES["AAI"] and m != "none":  # AAI's slices are by popularity; Wikipedia's
                ds, ps = PAPER_SLICE_OF[s]                # "tail" is items unseen in training: our cold
                paper = f"{PAPER_SLICES[ds][m][ps][1] / PAPER_SLICES[ds]['none'][ps][1] - 1:+.1%} ({ds} {ps})"
            delta = "—" if rel is None else (ci_text(ci) if ci else f"{rel:+.1%} (point)")
            judged = "—" if m == "none" else verdict(ci)
            if m != "none" and sl["pairs"] < MIN_SLICE_PAIRS:
                delta, judged = f"— (only {sl['pairs']} pairs)", "—"
            lines.append(f"| {name_of(m)} | {s} | {sl['pairs']:,} | {sl.get('recall@10', float('nan')):.4f} | "
                         f"{sl.get('recall@50', float('nan')):.4f} | {delta} | {judged} | {paper} |")
    return "\n".join(lines)


def curve(summary: dict[str, Any], key: str, path: Path, xlabel: str, log_x: bool = False) -> str:
    """Figures 6–7: validation Recall@50 (tuning seed) as one knob moves around an arm's pick, drawn
    by `sslkit report`'s SVG charts into `path` (an .svg file); returns the table of its points."""
    from sslkit.data.io import atomic_write_text
    from sslkit.study.svg import Series, line_chart

    metric = summary["selection"]["metric"]
    series, rows = [], []
    for arm, points in summary["curves"][key].items():
        pts = sorted((p for p in points if p["validation"]), key=lambda p: p["value"])
        series.append(Series(name_of(arm), [p["value"] for p in pts],
                             [p["validation"][metric] for p in pts]))
        pick = summary["arms"][arm].get("selected", {}).get(key)
        rows += [f"| {name_of(arm)} | {p['value']}{' (pick)' if p['value'] == pick else ''} | "
                 f"{p['validation'][metric]:.4f} | {p['validation']['map@50']:.4f} |" for p in pts]
    base = summary["arms"][summary["baseline"]].get("selected_validation")
    xs = [x for s_ in series for x in s_.xs]
    if base is not None and xs:
        series.append(Series("Baseline pick", [min(xs), max(xs)], [base, base], dashed=True, color="#7f7f7f",
                             markers=False))
    atomic_write_text(path, line_chart(series, title=f"Validation {metric} vs {key}", xlabel=xlabel,
                                       ylabel=f"validation {metric} (1 seed)", log_x=log_x) + "\n")
    return "\n".join([f"| method | {key} | validation {metric} | validation MAP@50 |", "|---|---|---|---|", *rows])


def report_appendix(summaries: dict[str, Any], out: Path, figures: str = "results/report") -> str:
    """Each study's full report — protocol, picks, budget curves, a forest plot of every comparison
    with its interval, slices, verdicts — as `sslkit report` writes it (Markdown; charts as SVG files
    under out/figures)."""
    from sslkit.data.io import atomic_write_text
    from sslkit.study.report import render_markdown

    parts = ["## Appendix — each study's full report", "",
             "Generated by the code of `sslkit report` (`sslkit.study.report.render_markdown`); "
             "`sslkit report runs/…/SPEC.sweep.json` gives the same as one HTML page.", ""]
    for name, summary in summaries.items():
        text, files = render_markdown(summary, figures=figures, heading=3)
        for rel, svg in files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / rel, svg + "\n")
        parts.append(text)
    return "\n".join(parts)


def projection(summaries: dict[str, Any], path: Path) -> dict[str, float]:
    """Figure 5: 2-D PCA of item embeddings (seed 0), baseline vs CFM, coloured by first genre; plus
    the share of each item's 10 nearest neighbours that share its first genre (higher = more semantic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    import torch

    from sslkit.retrieval.embed import embed_table, load_run
    from sslkit.retrieval.index import exact_topk

    items = pl.read_parquet(HERE / "data/items.parquet").select("item_id", pl.col("genres").list.first().alias("g"))
    genre = dict(zip(items["item_id"].to_list(), items["g"].fill_null("unknown").to_list()))
    top = [g for g, _ in items.group_by("g").len().sort("len", descending=True).head(6).rows()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    purity = {}
    for ax, m in zip(axes, ("none", "cfm")):
        run_dir = Path(group(summaries["table2"], m)["runs"][0])
        run = load_run(run_dir)
        store = run.store()
        vecs = embed_table(run, store.items, queries=False)
        labels = np.array([genre.get(str(i), "unknown") for i in store.items.ids])
        t = torch.from_numpy(np.ascontiguousarray(vecs, dtype=np.float32))
        nn = exact_topk(t, t, 10, exclude_self=torch.arange(len(t)))[1].numpy()
        purity[m] = float((labels[nn] == labels[:, None]).mean())
        centred = vecs - vecs.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        other = ~np.isin(labels, top)
        ax.scatter(xy[other, 0], xy[other, 1], s=4, c="lightgrey", label="other")
        for g in top:
            sel = labels == g
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, label=g)
        ax.set_title(f"{NAMES[m]} (10-NN same first genre: {purity[m]:.1%})", fontsize=10)
        ax.set_xticks([]); ax.set_yticks([])
    axes[1].legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return purity


def popularity_figure(path: Path) -> dict[str, Any]:
    from sslkit.config import load_config
    from sslkit.data.profile import plot_popularity, profile
    from sslkit.data.store import load_or_build

    store = load_or_build(load_config(HERE / "schema.yaml"))
    plot_popularity(store, str(path))
    return profile(store, ks=(10, 50), head_fraction=0.1)



def paper_comparisons(t2: dict[str, Any], t3: dict[str, Any] | None, t5: dict[str, Any] | None,
                      tw: dict[str, Any] | None) -> list[tuple[str, dict[str, Any], str, str]]:
    """The comparisons every study's verdict list opens with (those of the specs that ran)."""
    return [c for c in [
        ("CFM vs baseline, full data (Table 2)", t2, "cfm", "vs_baseline"),
        ("SO vs baseline, full data", t2, "so", "vs_baseline"),
        ("FD vs baseline, full data", t2, "fd", "vs_baseline"),
        ("CFM vs baseline, 10% of the data (Table 3)", t3, "cfm", "vs_baseline"),
        ("CFM vs baseline with [1024, 128] towers", tw, "cfm_1024_128", "vs_baseline"),
        ("popularity vs uniform SSL sampling (CFM, same settings)", t2, "cfm_popularity", "vs_parent"),
        ("baseline without vs with its picked logQ setting", t2, "none_no_logq", "vs_parent"),
        *((f"{name_of(m)} vs baseline (Table 5)", t5, m, "vs_baseline")
          for m in ("rfm", "rfm_no_compl", "cfm_no_dropout", "no_mask")),
    ] if c[1] is not None]


def discussion_text(notes: Path, quick: bool) -> str:
    if quick:
        return "_(No discussion for a quick run.)_\n"
    return notes.read_text() if notes.exists() else f"_({notes.name} beside the study is not written yet.)_\n"


def write_report(summaries: dict[str, Any], out: Path, quick: bool) -> Path:
    t0 = time.perf_counter()
    figs = out / "results"
    figs.mkdir(parents=True, exist_ok=True)
    prof = popularity_figure(figs / "fig4_popularity.png")
    t2, t3, t5, tw, tu = (summaries.get(k) for k in ("table2", "table3", "table5", "towers", "users"))
    assert t2 is not None, "the report is built around table2"
    missing = [k for k in SPECS if k not in summaries]

    def section(summary: dict[str, Any] | None, body: Callable[[], str]) -> str:
        return body() if summary is not None else (
            "_Not run in this regeneration (the 2-core time budget); run "
            "`python examples/movielens/study.py` to add it._")
    base = group(t2, "none")
    alpha_rows = curve(t2, "alpha", figs / "fig6_alpha.svg", "α (SSL loss weight)", log_x=True)
    dr_rows = curve(t2, "dropout", figs / "fig7_dropout.svg", "dropout rate dr")
    purity = projection(summaries, figs / "fig5_embeddings.png")
    pop = prof["popularity"]
    times = " · ".join(f"{k} {v['seconds'] / 60:.1f} min" for k, v in summaries.items())
    report_s = time.perf_counter() - t0
    total_s = sum(v["seconds"] for v in summaries.values()) + report_s
    sel = t2["selection"]
    discussion = discussion_text(HERE / "discussion.md", quick)
    verdicts = verdict_lines(paper_comparisons(t2, t3, t5, tw) + [
        (f"{name_of(m)} vs baseline, user-to-item", tu, m, "vs_baseline") for m in ("cfm", "so", "fd") if tu is not None])
    text = f"""# Reproducing the paper's study on MovieLens-100K

Generated by `python examples/movielens/study.py` ({'QUICK SMOKE RUN — budget 2, 2 seeds, 5 steps per run; not results' if quick else 'full run'}).
Every number below comes from the tuning studies in `examples/movielens/sweeps/`; the paper's
numbers are quoted from its Tables 2–5 (Wikipedia and AAI, relative change vs its baseline).
Total time: **{total_s / 60:.1f} min** of wall time on this machine, 2 CPU cores: the studies ({times}; each
measured when its cells were trained, while other jobs may have shared the cores) and {report_s:.0f} s for the figures.{(' Not run in this regeneration: ' + ', '.join(missing) + '.') if missing else ''}

## Protocol

* **Splits.** A random 10% of the pairs is the test set (split.seed 0); a random 10% of the
  remaining training pairs is the validation set (`split.validation_fraction`); models train on
  the rest. Tuning and selection read validation only; test is read once, for the tables.
* **Equal tuning budget.** Every tuned arm (method) gets **{sel['budget']} tuning cells** over its own
  knobs: the baseline over lr × τ × logQ, SSL arms over those plus α (down to 0.01), SSL τ and, where
  the method has one, the dropout rate dr. Where an arm's grid is larger than the budget
  ({sampled_arms(t2)}), its cells are a seeded, balanced random subset of the grid (each knob's values spread
  evenly over the cells; today: the first cells of a seeded Sobol sequence per arm and replicate, so
  budgets nest). Tuning cells train with seeds {sel.get('tuning_seeds', sel.get('tune_seed'))} and are scored on validation.
* **Selection.** Each arm's pick is its tuning cell with the best validation {sel['metric']}. The pick is
  trained with seeds {sel.get('final_seeds', sel.get('seeds'))} and scored on test (fresh seeds, disjoint from the tuning
  seeds). Arms marked "not tuned" take another
  arm's pick and change one thing (an ablation): only that thing differs.
* **Paired comparisons.** Seed s of an arm has the same initialization and batch order as seed s of
  the baseline. Δ is the relative change of the mean over seeds and test queries; its 95% interval
  is a paired bootstrap: each replicate resamples seed indices (the same for both arms) and test
  queries (the same for both arms and all seeds), and the percentile interval is expanded for few
  seeds (× sqrt(n/(n−1))·t_df/z, Welch–Satterthwaite df of the seed and query variance components).
  p-values, where the JSON gives them, are one-sided. A verdict says "helps" or "hurts" only when
  the interval excludes 0, else "no detectable difference".
* **Null check.** The baseline's pick was also trained with {len(t2.get('null_check', {}).get('seeds', [])) - len(sel.get('final_seeds', sel.get('seeds', [])))} more seeds;
  {null_text(t2)}
* **Reproducible.** Cells are named by a hash of their resolved config, the sslkit version and
  `sslkit.NUMERICS_VERSION`; each run's `run.json` records the numerics version and git commit.

## What the intervals support

{verdicts}

## Setup

* **Data** (`examples/movielens/prepare.py`): MovieLens-100K from the `recbole==1.2.1` wheel with
  Freebase features. Item-to-item pairs: consecutive positively rated movies (rating ≥ 4) in each
  user's timeline, seed → next: {prof['pairs']['read']:,} pairs over {prof['items']:,} movies.
* **Features** (14): id, title tokens, year buckets, decade, genres, actors, directors, writers,
  producers, languages, countries, production companies, content rating, subjects.
* **Model**: embedding 32, towers [256, 64] (the [1024, 128] ablation aside), batch 1024, Adagrad,
  8 epochs; Table 3's runs take the same number of steps on 10% of the pairs (94 epochs). fp32.
* **Evaluation**: exact retrieval over the whole catalog, the query movie excluded; Recall@K and
  MAP@K (AP divides by min(|relevant|, K)), per query, averaged over queries.

## Tuning budget and picks (full data)

{budget_table(t2)}

<details><summary>Every tuning cell's validation scores</summary>

{tuning_table(t2)}

</details>

## Table 2 — full training data

{methods_table(t2, ['none', 'fd', 'so', 'cfm'], paper_rel('table2'))}

## Table 3 — 10% of the training pairs (same test set)

{section(t3, lambda: budget_table(t3) + chr(10) + chr(10) + methods_table(t3, ['none', 'cfm'], paper_rel('table3')))}

## Table 4 — head / tail / cold slices (full data)

Head = test pairs whose target is among the 10% most frequent training movies, tail = the rest of
the movies seen in training, cold = movies never seen in training. Each slice's Δ has the paired
seeds-and-queries interval of the main tables, over the queries with pairs in the slice (each
query's recall on those pairs alone); a slice under {MIN_SLICE_PAIRS} pairs gets no Δ. The paper's AAI slices are by
popularity like head and tail here; its Wikipedia "tail" is the test pairs whose item is not in
training, so it is quoted beside the cold slice.

{slices_table(t2, ['none', 'fd', 'so', 'cfm'])}

## Table 5 — augmentations (each at CFM's pick)

{section(t5, lambda: methods_table(t5, ['none', 'cfm', 'rfm', 'rfm_no_compl', 'cfm_no_dropout', 'no_mask'], paper_rel('table5')))}

## Ablations

SSL item sampling and logQ, against the arm they change (paired, same seeds):

{methods_table(t2, ['cfm_popularity', 'none_no_logq'], key='vs_parent')}

The paper's towers [1024, 128] (baseline and CFM at their full-data picks, not tuned again), CFM
against the large-tower baseline:

{section(tw, lambda: methods_table(tw, ['none_1024_128', 'cfm_1024_128']))}

## User-to-item (Table 2's protocol on `schema_users.yaml`)

Users → movies from the same positive ratings: each user's latest 10% (at least one) is test, the
10% before it validation (`split.method: leave_last_out`), 10 epochs per run; the user tower reads
id, age, gender, occupation and zip prefix. Every arm tunes over lr × τ (0.07–0.3) × logQ (and its
own knobs) with the same budget as Table 2.

{section(tu, lambda: budget_table(tu) + chr(10) + chr(10) + methods_table(tu, ['none', 'fd', 'so', 'cfm']) + chr(10) + chr(10) + slices_table(tu, ['none', 'fd', 'so', 'cfm']))}

## Popularity (Figure 4)

![popularity CDF](results/fig4_popularity.png)

Top 1% of movies take {pop['top_1pct_items_share']:.1%} of the interactions, top 10% take
{pop['top_10pct_items_share']:.1%} (Gini {pop['gini']:.2f}). TopPopular reaches Recall@50
{base['toppop']['recall@50']:.4f} on the test set.

## Figure 6 — SSL weight α, and Figure 7 — dropout rate dr

Each point is one run (the tuning seed) with CFM's pick and one knob changed, scored on the
**validation** split — these curves are part of tuning, not of the test tables, and carry seed
noise of the size of the std columns above. The dashed line is the baseline pick's validation score.

![alpha](results/fig6_alpha.svg)

{alpha_rows}

![dropout](results/fig7_dropout.svg)

{dr_rows}

## Figure 5 — item embeddings, baseline vs CFM

![embeddings](results/fig5_embeddings.png)

2-D PCA of the movie vectors (seed 0 of each pick), coloured by first genre. Share of each movie's
10 nearest neighbours with the same first genre: baseline {purity['none']:.1%}, CFM {purity['cfm']:.1%}.

## Discussion

{discussion}
"""
    text += "\n" + report_appendix(summaries, out, "results/report" if not quick else "results/report.quick")
    path = out / ("RESULTS.md" if not quick else "RESULTS.quick.md")
    path.write_text(text)
    raw = json.dumps(summaries, indent=1, default=str)  # run paths relative to the repository
    (figs / ("summaries.json" if not quick else "summaries.quick.json")).write_text(
        raw.replace(json.dumps(str(ROOT))[1:-1] + "/", ""))
    return path


def study_main(doc: str, *, specs: tuple[str, ...], sweeps: Path, runs: str, report: str, quick_dir: str,
               ensure: Callable[[], None], write: Callable[[dict[str, Any], Path, bool], Path]) -> None:
    """The command line of a study script: run its specs (resumably), then write its report.

    Shared by this study and `examples/simulated/study.py`; `runs`/`quick_dir` are the default run
    directories (under the repository / under /tmp for --quick), `report` names what --docs gets.
    """
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="budget 2, seeds 0-1 (+2 null), 5 steps per run, into /tmp")
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
