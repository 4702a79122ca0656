"""Reproduce the paper's study on MovieLens-100K with sslkit, and write docs/RESULTS.md and its plots.

    python examples/movielens/study.py            # the whole study (≈ 38 min on 2 CPU cores)
    python examples/movielens/study.py --quick    # smoke run: 1 seed, 1 epoch, to /tmp (≈ 2 min)

Builds the data when missing (prepare.py), runs every sweep spec in `sweeps/` with `sslkit sweep`
(resumable: rerunning skips finished cells; cells shared between specs are trained once), then
draws the figures and writes the report. The paper's numbers are quoted from its Tables 2–5.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPECS = ("tune", "table2", "table3", "table5", "alpha", "dropout")
METRICS = ("recall@10", "recall@50", "map@10", "map@50")
MIN_SLICE_PAIRS = 100  # below this a slice's relative change is one or two hits: not reported

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


def log(msg: str) -> None:
    print(f"[study] {msg}", file=sys.stderr, flush=True)


def ensure_data() -> None:
    if (HERE / "data/ratings.parquet").exists():
        return
    spec = importlib.util.spec_from_file_location("ml_prepare", HERE / "prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    mod.main([])


def run_specs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from sslkit import console
    from sslkit.sweep import cell_status, load_sweep, run_sweep, summarize_sweep, write_summary

    # Wall time per spec, kept beside the runs: a rerun that trains nothing reports the time the
    # cells took when they were trained, not the seconds it took to skip them.
    times_path = args.runs / "study_times.json"
    seconds = json.loads(times_path.read_text()) if times_path.exists() else {}
    summaries = {}
    quick = ["train.epochs=1"] if args.quick else []
    for name in SPECS:
        sw = load_sweep(HERE / "sweeps" / f"{name}.yaml", overrides=quick, out=args.runs,
                        seeds=[0] if args.quick else None)
        todo = sum(cell_status(c) != "done" for c in sw.cells)
        log(f"sweep {name}: {len(sw.cells)} cells, {todo} to run")
        t0 = time.perf_counter()
        display = console.SweepDisplay()
        try:
            results, failed = run_sweep(sw, log=lambda _: None, on_event=display)
        finally:
            display.close()
        if failed:
            sys.exit(f"Error: sweep {name}: {len(failed)} cells failed: {failed[0][1]}")
        elapsed = time.perf_counter() - t0
        if todo or name not in seconds:
            resumed = 0 < todo < len(sw.cells)  # finished an interrupted spec: add to its earlier time
            seconds[name] = (seconds.get(name, 0.0) if resumed else 0.0) + elapsed
            args.runs.mkdir(parents=True, exist_ok=True)
            times_path.write_text(json.dumps(seconds, indent=1))
        summaries[name] = summarize_sweep(sw, results)
        summaries[name]["seconds"] = seconds[name]
        write_summary(sw, summaries[name])
        log(f"sweep {name}: {elapsed:.0f} s" + ("" if todo else f" (nothing to train; its cells took {seconds[name]:.0f} s)"))
    return summaries


def group(summary: dict[str, Any], **values: Any) -> dict[str, Any]:
    for g in summary["groups"]:
        if all(g["values"].get(k) == v for k, v in values.items()):
            return g
    raise KeyError(f"{summary['spec']}: no group {values}")


def ms(g: dict[str, Any], m: str) -> str:
    return f"{g['metrics'][m]['mean']:.4f} ± {g['metrics'][m]['std']:.4f}"


def ci(g: dict[str, Any], m: str) -> str:
    if "vs_baseline" not in g:
        return "—"
    c = g["vs_baseline"][m]
    return f"{c['relative']:+.1%} [{c['low']:+.1%}, {c['high']:+.1%}]"


def paper_rel(table: str, method: str, metric: str) -> str:
    parts = []
    for ds, rows in PAPER[table].items():
        if method in rows:
            i = PAPER_ORDER.index(metric)
            parts.append(f"{rows[method][i] / rows['none'][i] - 1:+.1%} ({ds})")
    return ", ".join(parts) if method != "none" else "—"


def verdict(g: dict[str, Any], metric: str = "recall@50") -> str:
    if "vs_baseline" not in g:
        return "—"
    c = g["vs_baseline"][metric]
    if c["low"] > 0:
        return "better than baseline (CI above 0)"
    if c["high"] < 0:
        return "worse than baseline (CI below 0)"
    return "no significant difference (CI spans 0)"


def methods_table(summary: dict[str, Any], table: str, methods: list[str]) -> str:
    head = "| method | " + " | ".join(METRICS) + " | Δ Recall@50 vs baseline [95% CI] | Δ MAP@50 [95% CI] | paper Δ Recall@50 | verdict (Recall@50) |"
    lines = [head, "|" + "---|" * (len(METRICS) + 5)]
    for m in methods:
        g = group(summary, aug=m)
        lines.append(f"| {NAMES[m]} | " + " | ".join(ms(g, x) for x in METRICS) +
                     f" | {ci(g, 'recall@50')} | {ci(g, 'map@50')} | {paper_rel(table, m, 'recall@50')} | {verdict(g)} |")
    return "\n".join(lines)


def slices_table(summary: dict[str, Any], methods: list[str]) -> str:
    lines = ["| method | slice | test pairs | Recall@10 | Recall@50 | Δ Recall@50 vs baseline | paper Δ Recall@50 (Wikipedia, AAI) |",
             "|---|---|---|---|---|---|---|"]
    for m in methods:
        g = group(summary, aug=m)
        for s in ("head", "tail", "cold"):
            sl = g["slices"][s]
            if not sl.get("pairs"):
                continue
            rel = (g.get("vs_baseline_slices") or {}).get(s, {}).get("recall@50")
            paper = "—"
            if m != "none" and s in ("head", "tail"):
                paper = ", ".join(f"{PAPER_SLICES[ds][m][s][1] / PAPER_SLICES[ds]['none'][s][1] - 1:+.1%}"
                                  for ds in ("Wikipedia", "AAI"))
            delta = "—" if rel is None else f"{rel:+.1%}"
            if m != "none" and sl["pairs"] < MIN_SLICE_PAIRS:
                delta = f"— (only {sl['pairs']} pairs)"
            lines.append(f"| {NAMES[m]} | {s} | {sl['pairs']:,} | {sl.get('recall@10', float('nan')):.4f} | "
                         f"{sl.get('recall@50', float('nan')):.4f} | {delta} | {paper} |")
    return "\n".join(lines)


def tune_table(summary: dict[str, Any]) -> str:
    lines = ["| logQ correction | lr | temperature | Recall@10 | Recall@50 | MAP@50 |", "|---|---|---|---|---|---|"]
    for g in sorted(summary["groups"], key=lambda g: -g["metrics"]["recall@50"]["mean"]):
        v = g["values"]
        lines.append(f"| {v['logq']} | {v['lr']} | {v['temperature']} | {g['metrics']['recall@10']['mean']:.4f} | "
                     f"{g['metrics']['recall@50']['mean']:.4f} | {g['metrics']['map@50']['mean']:.4f} |")
    return "\n".join(lines)


def curve(summaries: dict[str, Any], spec: str, key: str, methods: list[str], base: dict[str, Any], path: Path,
          xlabel: str, log_x: bool = False) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    rows = []
    for m in methods:
        gs = sorted([g for g in summaries[spec]["groups"] if g["values"]["aug"] == m], key=lambda g: g["values"][key])
        x = [g["values"][key] for g in gs]
        y = [g["metrics"]["recall@50"]["mean"] for g in gs]
        e = [g["metrics"]["recall@50"]["std"] for g in gs]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=NAMES[m])
        rows += [f"| {NAMES[m]} | {xv} | {ms(g, 'recall@50')} | {ms(g, 'map@50')} |" for xv, g in zip(x, gs)]
    ax.axhline(base["metrics"]["recall@50"]["mean"], ls="--", color="grey", label="Baseline")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Recall@50 (mean ± std, 5 seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "\n".join([f"| method | {key} | Recall@50 | MAP@50 |", "|---|---|---|---|", *rows])


def projection(summaries: dict[str, Any], path: Path) -> dict[str, float]:
    """Figure 5: 2-D PCA of item embeddings (seed 0), baseline vs CFM, coloured by first genre; plus
    the share of each item's 10 nearest neighbours that share its first genre (higher = more semantic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    import torch

    from sslkit.embed import embed_table, load_run
    from sslkit.index import exact_topk

    items = pl.read_parquet(HERE / "data/items.parquet").select("item_id", pl.col("genres").list.first().alias("g"))
    genre = dict(zip(items["item_id"].to_list(), items["g"].fill_null("unknown").to_list()))
    top = [g for g, _ in items.group_by("g").len().sort("len", descending=True).head(6).rows()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    purity = {}
    for ax, m in zip(axes, ("none", "cfm")):
        run_dir = Path(group(summaries["table2"], aug=m)["runs"][0])
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
    from sslkit.profile import plot_popularity, profile
    from sslkit.store import load_or_build

    store = load_or_build(load_config(HERE / "schema.yaml"))
    plot_popularity(store, str(path))
    return profile(store, ks=(10, 50), head_fraction=0.1)


def write_report(summaries: dict[str, Any], out: Path, quick: bool) -> Path:
    t0 = time.perf_counter()
    figs = out / "results"
    figs.mkdir(parents=True, exist_ok=True)
    prof = popularity_figure(figs / "fig4_popularity.png")
    base = group(summaries["table2"], aug="none")
    alpha_rows = curve(summaries, "alpha", "alpha", ["cfm", "so"], base, figs / "fig6_alpha.png", "α (SSL loss weight)", log_x=True)
    dr_rows = curve(summaries, "dropout", "dropout", ["cfm", "fd"], base, figs / "fig7_dropout.png", "dropout rate dr")
    purity = projection(summaries, figs / "fig5_embeddings.png")
    t2, t3 = summaries["table2"], summaries["table3"]
    main = ["none", "fd", "so", "cfm"]
    pop = prof["popularity"]
    times = " · ".join(f"{k} {v['seconds'] / 60:.1f} min" for k, v in summaries.items())
    report_s = time.perf_counter() - t0
    total_s = sum(v["seconds"] for v in summaries.values()) + report_s
    notes = HERE / "discussion.md"
    if quick:
        discussion = "_(No discussion for a quick run.)_\n"
    else:
        discussion = notes.read_text() if notes.exists() else "_(examples/movielens/discussion.md is not written yet.)_\n"
    text = f"""# Reproducing the paper's study on MovieLens-100K

Generated by `python examples/movielens/study.py` ({'QUICK SMOKE RUN — 1 seed, 1 epoch; not results' if quick else 'full run'}).
Every number below comes from the sweep specs in `examples/movielens/sweeps/`; the paper's numbers
are quoted from its Tables 2–5 (Wikipedia and AAI, relative change vs its baseline).
Total time: **{total_s / 60:.1f} min** on this machine, 2 CPU cores, nothing else running: the sweeps
({times}; each measured when its cells were trained) and {report_s:.0f} s for the figures.

## Setup

* **Data** (`examples/movielens/prepare.py`): MovieLens-100K from the `recbole==1.2.1` wheel with
  Freebase features. Item-to-item pairs: consecutive positively rated movies (rating ≥ 4) in each
  user's timeline, seed → next: {prof['pairs']['read']:,} pairs over {prof['items']:,} movies;
  random 10% of the pairs are the test set (split.seed 0), {prof['pairs']['test']:,} test pairs.
* **Features** (14): id, title tokens, year buckets, decade, genres, actors, directors, writers,
  producers, languages, countries, production companies, content rating, subjects.
* **Model**: sslkit's defaults (embedding 32, towers [256, 64]), batch 1024, Adagrad, 8 epochs
  (376 steps); Table 3's runs take the same 376 steps on 10% of the pairs (94 epochs). Towers in
  fp32: the specs pin `train.precision: fp32`, so the results do not depend on whether a CPU has AMX
  (where `auto` means bf16; Table 2 in bf16 is within noise of fp32, see the README).
* **Seeds**: 5 per cell (tuning: 1). Tables give mean ± std over seeds; Δ is the relative change of
  the seed-mean vs the baseline's, with a bootstrap 95% CI that resamples test queries and seeds.
* **Evaluation**: exact retrieval over the whole catalog, the query movie excluded; Recall@K and
  MAP@K (AP divides by min(|relevant|, K)), per query, averaged over test queries.

## Baseline tuning

The paper tuned its baseline; so did we, on a different random split (split.seed 1), one seed, no SSL.
The in-batch softmax without correction under-ranks popular movies on this popularity-heavy data;
the logQ correction (Yi et al. 2019) is the tuning step that matters most.

{tune_table(summaries['tune'])}

Chosen for every run below: **logQ correction on, lr 0.05, temperature 0.2** (SSL temperature set to
the same value: the paper uses one τ in both losses).

## Popularity (Figure 4)

![popularity CDF](results/fig4_popularity.png)

Top 1% of movies take {pop['top_1pct_items_share']:.1%} of the interactions, top 10% take
{pop['top_10pct_items_share']:.1%} (Gini {pop['gini']:.2f}). TopPopular reaches Recall@10 {base['toppop']['recall@10']:.4f},
Recall@50 {base['toppop']['recall@50']:.4f} on the test set — a much less skewed distribution than
the paper's AAI (top 50 of 2.4M apps = 10% of data).

## Table 2 — full training data

{methods_table(t2, 'table2', main)}

## Table 3 — 10% of the training pairs (same test set)

A random 10% of the training pairs (`split.fraction 0.1`, 4,899 pairs), the same 376 steps as Table 2.

{methods_table(t3, 'table3', main)}

## Table 4 — head / tail / cold slices (full data)

Head = test pairs whose target is among the 10% most frequent training movies, tail = the rest of
the movies seen in training, cold = movies never seen in training (only the features know them).

{slices_table(t2, main)}

## Table 5 — augmentations

{methods_table(summaries['table5'], 'table5', ['none', 'cfm', 'rfm', 'rfm_no_compl', 'cfm_no_dropout', 'no_mask'])}

## Figure 6 — SSL weight α

![alpha](results/fig6_alpha.png)

{alpha_rows}

## Figure 7 — dropout rate dr

![dropout](results/fig7_dropout.png)

{dr_rows}

## Figure 5 — item embeddings, baseline vs CFM

![embeddings](results/fig5_embeddings.png)

2-D PCA of the 1,682 movie vectors (seed 0), coloured by first genre. Share of each movie's 10 nearest
neighbours with the same first genre: baseline {purity['none']:.1%}, CFM {purity['cfm']:.1%}.

## What reproduces and what does not

{discussion}
"""
    path = out / ("RESULTS.md" if not quick else "RESULTS.quick.md")
    path.write_text(text)
    raw = json.dumps(summaries, indent=1, default=str)  # run paths relative to the repository
    (figs / "summaries.json").write_text(raw.replace(json.dumps(str(ROOT))[1:-1] + "/", ""))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, into /tmp: checks the pipeline")
    ap.add_argument("--runs", type=Path, default=None, help="cell run directories [runs/movielens]")
    ap.add_argument("--docs", type=Path, default=None, help="where RESULTS.md and results/ go [docs]")
    args = ap.parse_args()
    if args.quick:
        args.runs = args.runs or Path("/tmp/sslkit-study-quick/runs")
        args.docs = args.docs or Path("/tmp/sslkit-study-quick/docs")
    args.runs = args.runs or ROOT / "runs/movielens"
    args.docs = args.docs or ROOT / "docs"
    t0 = time.perf_counter()
    ensure_data()
    summaries = run_specs(args)
    path = write_report(summaries, args.docs, args.quick)
    log(f"wrote {path} in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
