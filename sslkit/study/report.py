"""`sslkit report`: one page for a run or a study, as self-contained HTML or as Markdown.

A report is built once as plain blocks (paragraphs, tables, charts, lists) and rendered twice:
`render_html` writes one HTML file with every chart inline as SVG (no script, no stylesheet or
image fetched from anywhere); `render_markdown` writes the same blocks as Markdown with each chart
as an `.svg` file beside it. The bundled studies' `docs/RESULTS*.md` use the same functions.

Inputs (`load_inputs`):
* a run directory (`sslkit train --out`): `metrics.jsonl` (training loss, main and SSL losses,
  SSL top-1; validation rounds with TopPopular on the same queries), `summary.json`, `eval.json` /
  `eval.validation.json` (metrics, TopPopular, slices, ANN recall) and the index sidecar;
* a sweep's output directory (its `*.sweep.json`) or a summary JSON file: a plain grid or a tuning
  study. Both the summary format of `sslkit.study.tuning.summarize_study` /
  `sslkit.study.sweep.summarize_sweep` (`groups` with `vs_baseline`, `tuning`, `curves`,
  `null_check`) and the study-summary contract (`comparisons`, `slices`, `budget_curves`,
  `warnings`, `stopping`, `preregistration`, ...) are read; keys a renderer does not know are
  ignored and missing ones leave their section out.

Library use::

    from sslkit.study.report import build_report, render_html, write_markdown
    html = render_html(summary_dict)                 # or a run directory, or a list of either
    write_markdown(summary_dict, "docs/RESULTS.md")  # charts go to docs/RESULTS_figures/*.svg
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

from sslkit import __version__
from sslkit.data import io
from sslkit.errors import DataError
from sslkit.study import svg
from sslkit.study.svg import ForestRow, Series

# --------------------------------------------------------------------------------------------- blocks


@dataclass
class Para:
    text: str
    kind: str = ""  # "note" | "warning" | "" (styling only)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    right: set[int] = field(default_factory=set)  # right-aligned (numeric) column indices
    caption: str = ""
    collapsed: bool = False  # a long table folded under its caption


@dataclass
class Chart:
    name: str  # file-name stem in Markdown output
    svg: str
    caption: str = ""


@dataclass
class Bullets:
    items: list[str]
    kinds: list[str] = field(default_factory=list)  # per item: helps | hurts | warning | ""


Block = Para | Table | Chart | Bullets


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- inputs


def load_inputs(paths: Sequence[str | Path]) -> list[tuple[str, Any]]:
    """[(kind, payload)]: ("run", run directory) or ("summary", (name, summary dict)) per input.

    A sweep output directory contributes each `*.sweep.json` in it. Raises DataError naming the path
    when it is neither a run, a sweep directory nor a summary file.
    """
    found: list[tuple[str, Any]] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p}: no such file or directory", hint="give a run directory, a sweep's out directory "
                            "or a summary JSON file")
        if p.is_dir():
            if (p / "metrics.jsonl").exists() or (p / "run.json").exists():
                found.append(("run", p))
                continue
            sweeps = sorted(p.glob("*.sweep.json"))
            if not sweeps:
                raise DataError(f"{p}: not a run directory (no run.json or metrics.jsonl) and no *.sweep.json in it",
                                hint="give a run made by `sslkit train`, the out directory of `sslkit sweep`, or a "
                                "summary JSON file")
            found += [("summary", (s.name.removesuffix(".sweep.json"), _read_json(s))) for s in sweeps]
        else:
            obj = _read_json(p)
            if not isinstance(obj, dict) or not ({"groups", "comparisons", "arms"} & set(obj)):
                raise DataError(f"{p}: not a sweep or study summary (no 'groups', 'comparisons' or 'arms' key)",
                                hint="give the *.sweep.json that `sslkit sweep` wrote")
            found.append(("summary", (p.name.removesuffix(".json").removesuffix(".sweep"), obj)))
    return found


def _read_json(path: Path) -> Any:
    try:
        return io.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: damaged JSON ({e})", hint="rerun the command that wrote it")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a half-written last line of a killed run: keep what is whole
                continue
    return rows


def build_report(obj: Any, *, name: str | None = None) -> Report:
    """A Report from a run directory (a path) or a summary dict."""
    if isinstance(obj, Report):
        return obj
    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if p.is_dir() and ((p / "metrics.jsonl").exists() or (p / "run.json").exists()):
            return run_report(p)
        _, payload = load_inputs([p])[0]
        return study_report(payload[1], name=name or payload[0])
    if isinstance(obj, dict):
        return study_report(obj, name=name)
    raise TypeError(f"cannot build a report from {type(obj).__name__}")


def build_reports(paths: Sequence[str | Path]) -> list[Report]:
    """One Report per input of `sslkit report` (see load_inputs)."""
    out = []
    for kind, payload in load_inputs(paths):
        out.append(run_report(payload) if kind == "run" else study_report(payload[1], name=payload[0]))
    return out


# --------------------------------------------------------------------------------------------- a run


def run_report(run_dir: str | Path) -> Report:
    """Training and validation curves, test metrics with TopPopular, slices, ANN recall of one run."""
    run = Path(run_dir)
    cfg = _read_json(run / "config.json") if (run / "config.json").exists() else {}
    meta = _read_json(run / "run.json") if (run / "run.json").exists() else {}
    summ = _read_json(run / "summary.json") if (run / "summary.json").exists() else {}
    rows = _read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
    tr, ssl = cfg.get("train", {}), cfg.get("ssl", {})
    rep = Report(title=f"Run: {run.name}", subtitle=str(run))
    facts = [("dataset", cfg.get("name")), ("augmentation (ssl.aug)", ssl.get("aug")),
             ("ssl.alpha", ssl.get("alpha") if ssl.get("aug") not in (None, "none", "fd") else None),
             ("ssl.dropout", ssl.get("dropout") if ssl.get("aug") not in (None, "none", "so") else None),
             ("optimizer, lr", f"{tr.get('optimizer')}, {tr.get('lr')}" if tr else None),
             ("batch size", tr.get("batch_size")), ("temperature", tr.get("temperature")),
             ("logQ correction", tr.get("logq_correction")), ("seed", tr.get("seed")),
             ("steps (epochs)", f"{summ['steps']:,} ({summ.get('epochs', 0):.2f})" if "steps" in summ else None),
             ("training time", f"{summ['train_seconds']:.1f} s" if "train_seconds" in summ else None),
             ("examples / s", f"{summ['examples_per_s']:,.0f}" if "examples_per_s" in summ else None),
             ("device, precision", f"{meta.get('device')}, {meta.get('precision')}" if meta else None),
             ("started", meta.get("started")),
             ("source", (meta.get("source") or {}).get("commit", "")[:12] or None),
             ("sslkit", (meta.get("versions") or {}).get("sslkit"))]
    sec = Section("Run", [Table(["setting", "value"], [[k, _v(v)] for k, v in facts if v is not None])])
    if summ.get("warning"):
        sec.blocks.append(Para(f"warning: {summ['warning']}", "warning"))
    rep.sections.append(sec)

    steps = [r for r in rows if "loss" in r]
    vals = [r for r in rows if any(k.startswith("val_") for k in r)]
    curves = Section("Training curves")
    if steps:
        xs = [r["step"] for r in steps]
        losses = [Series(k if k != "main" else "main (batch softmax)", xs, [r.get(k) for r in steps])
                  for k in ("loss", "main", "ssl") if any(k in r for r in steps)]
        curves.blocks.append(Chart("training-loss", svg.line_chart(losses, title="Training loss", xlabel="step",
                                                                   ylabel="loss"),
                                   "loss = main + α·ssl per logged step (train.log_every)"))
        if any("ssl_top1" in r for r in steps):
            curves.blocks.append(Chart("ssl-top1", svg.line_chart(
                [Series("SSL top-1", xs, [r.get("ssl_top1") for r in steps])], title="SSL top-1 accuracy",
                xlabel="step", ylabel="SSL top-1"),
                "how often an item's second view is the nearest of the SSL batch to its first"))
    if vals:
        xs = [r["step"] for r in vals]
        names = [k for k in vals[-1] if k.startswith("val_") and not k.startswith("val_toppop_")]
        series = []
        for i, k in enumerate(names):
            color = svg.PALETTE[i % len(svg.PALETTE)]
            series.append(Series(k.removeprefix("val_"), xs, [r.get(k) for r in vals], color=color))
            tp = k.replace("val_", "val_toppop_", 1)
            if any(tp in r for r in vals):
                series.append(Series(f"TopPopular {k.removeprefix('val_')}", xs, [r.get(tp) for r in vals],
                                     dashed=True, color=color, markers=False))
        curves.blocks.append(Chart("validation", svg.line_chart(series, title="Validation", xlabel="step",
                                                                ylabel="validation metric"),
                                   f"validation queries sampled by train (train.eval_queries {tr.get('eval_queries', '')}); "
                                   "dashed: TopPopular on the same queries"))
    if not curves.blocks:
        curves.blocks.append(Para("no metrics.jsonl rows in this run", "note"))
    rep.sections.append(curves)

    for split, fname in (("test", "eval.json"), ("validation", "eval.validation.json")):
        if (run / fname).exists():
            rep.sections += _eval_sections(_read_json(run / fname), split, run)
    if not any((run / f).exists() for f in ("eval.json", "eval.validation.json")):
        rep.sections.append(Section("Evaluation", [Para(f"not evaluated yet: `sslkit eval {run}` writes eval.json",
                                                        "note")]))
    ann = _index_recall(run)
    if ann:
        rep.sections.append(Section("Index", [Table(["index file", "setting", "value"], ann, right={2})]))
    return rep


def _eval_sections(e: dict[str, Any], split: str, run: Path) -> list[Section]:
    metrics = {m: v for m, v in e.get("metrics", {}).items()}
    top = e.get("toppop", {})
    rows = [[m, v, top.get(m), _rel(v, top.get(m))] for m, v in metrics.items()]
    ks = ",".join(map(str, e.get("k", [])))
    head = (f"whole-catalog retrieval on the {split} split: {e.get('queries', 0):,} queries, {e.get('pairs', 0):,} "
            f"pairs; index {e.get('index')}, K {ks}, exclude-seen {'on' if e.get('exclude_seen') else 'off'}")
    blocks: list[Block] = [Para(head), Table(["metric", "this run", "TopPopular", "vs TopPopular"], rows,
                                             right={1, 2, 3})]
    ann = [[k, v] for k, v in e.items() if k.startswith("ann_recall@")]
    if ann:
        blocks.append(Table(["ANN recall vs exact top-K", "value"], ann + [["queries measured",
                                                                            e.get("ann_recall_queries")]], right={1}))
    sl = e.get("slices", {})
    if sl:
        names = [m for m in metrics if any(m in s for s in sl.values())]
        srows = [[s, v.get("pairs"), v.get("queries"), *[v.get(m) for m in names]] for s, v in sl.items()]
        blocks.append(Table(["slice", "pairs", "queries", *names], srows, right=set(range(1, 3 + len(names))),
                            caption="head = ground truth among the 10% most frequent training items; tail = the rest; "
                                    "cold = never in training; novel = not a training pair (item-to-item: "
                                    "in either direction), across head / tail / cold"))
    return [Section(f"Evaluation ({split})", blocks)]


def _index_recall(run: Path) -> list[list[Any]]:
    rows = []
    for side in sorted(run.glob("*.hnsw.json")):
        try:
            meta = _read_json(side)
        except DataError:
            continue
        for k in ("count", "M", "ef_construction", "ef"):
            if k in meta:
                rows.append([side.name, k, meta[k]])
        rows += [[side.name, f"ANN recall@{k.split('_')[-1]} (validation queries)", v]
                 for k, v in meta.items() if k.startswith("recall_at_")]
    return rows


# --------------------------------------------------------------------------------------------- a study


def verdict_of(lo: float | None, hi: float | None) -> str:
    """helps / hurts when the 95% interval [lo, hi] of a change excludes 0, else no detectable difference."""
    if not (_num(lo) and _num(hi)):
        return ""
    return "helps" if lo > 0 else "hurts" if hi < 0 else "no detectable difference"  # type: ignore[operator]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _rel(v: Any, base: Any) -> str:
    return f"{v / base - 1:+.1%}" if _num(v) and _num(base) and base else "-"


def _gname(g: dict[str, Any]) -> str:
    return str(g.get("name", g.get("group", "?")))


def _gmetrics(g: dict[str, Any]) -> dict[str, dict[str, float]]:
    if isinstance(g.get("metrics"), dict):
        return g["metrics"]
    return {k: v for k, v in g.items() if isinstance(v, dict) and "mean" in v}


def metric_names(summary: dict[str, Any]) -> list[str]:
    for g in summary.get("groups", []):
        if _gmetrics(g):
            return list(_gmetrics(g))
    return list(dict.fromkeys(c["metric"] for c in summary.get("comparisons", [])))


def primary_metric(summary: dict[str, Any]) -> str | None:
    sel = summary.get("selection") or {}
    names = metric_names(summary)
    if sel.get("metric"):
        return sel["metric"]
    return "recall@50" if "recall@50" in names else (names[0] if names else None)


def comparisons(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every comparison as {arm, baseline, metric, value, baseline_value, rel, lo, hi, abs, abs_lo,
    abs_hi, p, p_holm, verdict, wins, replicates, resamples}: the contract's `comparisons`, else
    read from each group's `vs_baseline` / `vs_parent`."""
    if summary.get("comparisons"):
        out = []
        for c in summary["comparisons"]:
            lo, hi = (c.get("ci_rel") or [None, None])[:2]
            alo, ahi = (c.get("ci_abs") or [None, None])[:2]
            out.append({"arm": c.get("arm"), "baseline": c.get("baseline"), "metric": c.get("metric"),
                        "value": c.get("value"), "baseline_value": c.get("baseline_value"), "rel": c.get("delta_rel"),
                        "lo": lo, "hi": hi, "abs": c.get("delta_abs"), "abs_lo": alo, "abs_hi": ahi, "p": c.get("p"),
                        "p_holm": c.get("p_holm"), "verdict": c.get("verdict") or verdict_of(lo, hi),
                        "wins": c.get("wins"), "replicates": c.get("replicates"), "resamples": c.get("resamples")})
        return out
    by_name = {_gname(g): g for g in summary.get("groups", [])}
    out, seen = [], set()
    for g in summary.get("groups", []):
        for key, ref in (("vs_baseline", "baseline"), ("vs_parent", "parent")):
            if not g.get(key) or not g.get(ref) or (_gname(g), str(g[ref])) in seen:
                continue
            seen.add((_gname(g), str(g[ref])))
            base = by_name.get(str(g[ref]), {})
            for m, ci in g[key].items():
                if not isinstance(ci, dict):
                    continue
                out.append({"arm": _gname(g), "baseline": g[ref], "metric": m,
                            "value": _gmetrics(g).get(m, {}).get("mean"),
                            "baseline_value": _gmetrics(base).get(m, {}).get("mean"), "rel": ci.get("relative"),
                            "lo": ci.get("low"), "hi": ci.get("high"), "abs": None, "abs_lo": None, "abs_hi": None,
                            "p": ci.get("p_value"), "p_holm": None, "verdict": verdict_of(ci.get("low"), ci.get("high")),
                            "wins": None, "replicates": ci.get("seeds"),
                            "resamples": "seeds x queries" if ci.get("seeds") else None})
    return out


def slice_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every slice comparison as {arm, baseline, slice, metric, value, baseline_value, rel, lo, hi,
    pairs, absolute_only}: the contract's `slices`, else each group's `slices` and `vs_baseline_slices_ci`."""
    if isinstance(summary.get("slices"), list):
        out = []
        for s in summary["slices"]:
            lo, hi = (s.get("ci_rel") or [None, None])[:2]
            out.append({**{k: s.get(k) for k in ("arm", "baseline", "slice", "metric", "value", "baseline_value")},
                        "rel": s.get("delta_rel"), "lo": lo, "hi": hi, "abs": s.get("delta_abs"),
                        "abs_ci": s.get("ci_abs"), "pairs": s.get("pairs"), "absolute_only": s.get("absolute_only")})
        return out
    by_name = {_gname(g): g for g in summary.get("groups", [])}
    out = []
    for g in summary.get("groups", []):
        base = by_name.get(str(g.get("baseline")), {}) if g.get("baseline") else {}
        cis = g.get("vs_baseline_slices_ci") or {}
        rels = g.get("vs_baseline_slices") or {}
        for sl, vals in (g.get("slices") or {}).items():
            for m, v in vals.items():
                if m in ("pairs", "queries") or not _num(v):
                    continue
                ci = (cis.get(sl) or {}).get(m) or {}
                bv = ((base.get("slices") or {}).get(sl) or {}).get(m)
                out.append({"arm": _gname(g), "baseline": g.get("baseline"), "slice": sl, "metric": m, "value": v,
                            "baseline_value": bv, "rel": ci.get("relative", (rels.get(sl) or {}).get(m)),
                            "lo": ci.get("low"), "hi": ci.get("high"), "abs": None, "abs_ci": None,
                            "pairs": vals.get("pairs"), "absolute_only": False})
    return out


def toppop(summary: dict[str, Any]) -> dict[str, Any]:
    if isinstance(summary.get("toppop"), dict):
        return summary["toppop"]
    g = next((g for g in summary.get("groups", []) if g.get("toppop")), None)
    return dict(g["toppop"]) if g else {}


def warnings(summary: dict[str, Any]) -> list[str]:
    """The summary's warnings, else: each arm below TopPopular on the primary metric."""
    if summary.get("warnings") is not None:
        return [str(w) for w in summary["warnings"]]
    m, top, out = primary_metric(summary), toppop(summary), []
    for g in summary.get("groups", []):
        mean = _gmetrics(g).get(m or "", {}).get("mean")
        if _num(mean) and _num(top.get(m)) and mean < top[m]:
            out.append(f"{_gname(g)} is below TopPopular on {m} ({mean:.4f} vs {top[m]:.4f}): its model ranks worse "
                       "than recommending the most popular items")
    if summary.get("failed"):
        out += [f"cell {f.get('cell')} failed: {f.get('error')}" for f in summary["failed"]]
    return out


def expected_best(values: Sequence[float], n: int) -> tuple[float, float]:
    """(mean, std) of the best of n draws with replacement from `values` (Dodge et al. 2019)."""
    v = sorted(values)
    N = len(v)
    probs = [((i + 1) / N) ** n - (i / N) ** n for i in range(N)]
    mean = sum(p * x for p, x in zip(probs, v))
    var = sum(p * (x - mean) ** 2 for p, x in zip(probs, v))
    return mean, math.sqrt(max(var, 0.0))


def budget_curves(summary: dict[str, Any]) -> tuple[dict[str, list[dict[str, float]]], str]:
    """({arm: [{budget, expected_best, lo, hi}]}, note): the summary's `budget_curves`, else computed
    from its tuning cells' validation scores (expected best of n of them, ± one standard deviation;
    averaged over replicates)."""
    if summary.get("budget_curves"):
        return summary["budget_curves"], ("expected best validation score after B tuning trials "
                                          "(Dodge et al. 2019), with its band")
    m = primary_metric(summary)
    runs: dict[str, dict[Any, list[float]]] = {}
    for t in summary.get("tuning", []):
        v = (t.get("validation") or {}).get(m)
        if _num(v):
            runs.setdefault(str(t.get("arm")), {}).setdefault(t.get("replicate", 0), []).append(v)
    out = {}
    for arm, reps in runs.items():
        n_max = min(len(v) for v in reps.values())
        pts = []
        for n in range(1, n_max + 1):
            stats = [expected_best(v, n) for v in reps.values()]
            mean = sum(s[0] for s in stats) / len(stats)
            sd = sum(s[1] for s in stats) / len(stats)
            pts.append({"budget": n, "expected_best": mean, "lo": mean - sd, "hi": mean + sd})
        out[arm] = pts
    return out, (f"expected best validation {m} among n of each arm's tuning cells, drawn with replacement "
                 "(Dodge et al. 2019), computed here from the summary's tuning cells; band: ± one standard deviation")


def _prune(t: Table) -> Table:
    """Leave out the columns that hold nothing in any row (an older summary lacks some keys)."""
    keep = [i for i in range(len(t.columns)) if any(r[i] not in (None, "-", "") for r in t.rows)]
    if len(keep) == len(t.columns):
        return t
    pos = {old: new for new, old in enumerate(keep)}
    return Table([t.columns[i] for i in keep], [[r[i] for i in keep] for r in t.rows],
                 {pos[i] for i in t.right if i in pos}, t.caption, t.collapsed)


def _fmt_values(d: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={_v(v)}" for k, v in (d or {}).items())


def _v(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(_v, v)) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _ms(d: dict[str, Any] | None) -> str:
    if not d or not _num(d.get("mean")):
        return "-"
    return f"{d['mean']:.4f} ± {d['std']:.4f}" if _num(d.get("std")) else f"{d['mean']:.4f}"


def study_report(summary: dict[str, Any], *, name: str | None = None) -> Report:
    """The protocol, budgets and picks, budget curves, results with TopPopular, every comparison as a
    forest plot with its interval, slices, curves, the null check and the verdict list."""
    title = name or Path(str(summary.get("spec", "study"))).stem
    study = summary.get("kind") == "study" or "arms" in summary or "selection" in summary
    rep = Report(title=f"{'Study' if study else 'Grid'}: {title}",
                 subtitle=f"{summary.get('spec', '')} — {summary.get('done', '?')}/{summary.get('cells', '?')} cells")
    m1 = primary_metric(summary)
    comps = comparisons(summary)

    # protocol
    proto = summary.get("protocol")
    sec = Section("Protocol")
    if isinstance(proto, dict):
        sec.blocks.append(Para(f"{proto.get('name', '')}: {proto.get('text', '')}".strip(": ")))
    elif proto:
        sec.blocks.append(Para(str(proto)))
    sel = summary.get("selection") or {}
    facts = [[k.replace("_", " "), _v(v)] for k, v in sel.items()]
    for k in ("baseline", "cells", "done"):
        if k in summary:
            facts.append([k, _v(summary[k])])
    secs = summary.get("wall_s", summary.get("seconds"))
    if _num(secs):
        facts.append(["wall time", f"{secs / 60:.1f} min"])
    if facts:
        sec.blocks.append(Table(["setting", "value"], facts))
    if summary.get("ci_method"):
        sec.blocks.append(Para(f"intervals: {summary['ci_method']}", "note"))
    pre = summary.get("preregistration")
    if isinstance(pre, dict):
        sec.blocks.append(Table(["preregistration", "value"], [[k, _v(v)] for k, v in pre.items()]))
    rep.sections.append(sec)

    # verdicts first: what a reader came for
    ver = Section("Verdicts")
    main = [c for c in comps if c["metric"] == m1] or comps
    items, kinds = [], []
    for c in main:
        extra = []
        if _num(c.get("p_holm")):
            extra.append(f"p (Holm) {c['p_holm']:.3g}")
        elif _num(c.get("p")):
            extra.append(f"p {c['p']:.3g}")
        if c.get("wins") is not None and c.get("replicates"):
            extra.append(f"wins {c['wins']}/{c['replicates']}")
        items.append(f"{c['arm']} vs {c['baseline']}, {c['metric']}: {c['verdict'] or 'no interval'} — "
                     f"{svg.interval_text(c['rel'], c['lo'], c['hi'])}" + (f" ({'; '.join(extra)})" if extra else ""))
        kinds.append(c["verdict"] if c["verdict"] in ("helps", "hurts") else "")
    for w in warnings(summary):
        items.append(f"warning: {w}")
        kinds.append("warning")
    ver.blocks.append(Bullets(items, kinds) if items else Para("no comparison yet (cells missing?)", "note"))
    rep.sections.append(ver)

    # arms, budgets and picks
    arms = summary.get("arms") or {}
    if arms:
        rows = []
        for arm, a in arms.items():
            stage = a.get("stage") or ("tuned" if a.get("tuned") else f"from {a.get('from')}" if a.get("from") else "")
            space = "; ".join(f"{k}: {_v(v)}" for k, v in (a.get("space") or {}).items())
            reps = a.get("replicates")
            if reps:
                trials = ", ".join(str(r.get("trials")) for r in reps)
                pick = "; ".join(f"r{r.get('replicate')}: {_fmt_values(r.get('pick'))}" for r in reps)
                if not any(r.get("pick") for r in reps) and a.get("from"):  # derived: its parent's picks, changed
                    pick = f"{a['from']}'s pick in each replicate, with {_fmt_values(a.get('fixed'))}"
                val = ", ".join(f"{r['validation']:.4f}" for r in reps if _num(r.get("validation")))
            else:
                trials = (f"{a.get('cells')} of {a.get('grid_size')}" if a.get("cells") is not None else "-")
                pick = _fmt_values(a.get("selected"))
                val = f"{a['selected_validation']:.4f}" if _num(a.get("selected_validation")) else "-"
            rows.append([arm, stage, _fmt_values(a.get("fixed")), space or "-", trials, pick or "-", val])
        blk: list[Block] = [Table(["arm", "stage", "fixed", "searched", "trials", "pick", f"validation {m1}"], rows,
                                  caption="each arm's search space, its budget and the pick chosen on validation")]
        curves, note = budget_curves(summary)
        if curves:
            series = [Series(arm, [p["budget"] for p in pts], [p["expected_best"] for p in pts],
                             lo=[p.get("lo") for p in pts], hi=[p.get("hi") for p in pts]) for arm, pts in curves.items()]
            budgets = sorted({p["budget"] for pts in curves.values() for p in pts})
            blk.append(Chart("budget-curves", svg.line_chart(series, title=f"Expected best validation {m1} vs budget",
                                                             xlabel="tuning trials (budget)", ylabel=f"validation {m1}",
                                                             xticks=budgets if len(budgets) <= 12 else None), note))
        tuning = summary.get("tuning") or []
        if tuning:
            names = list(dict.fromkeys(k for t in tuning for k in (t.get("validation") or {})))
            trows = [[t.get("arm"), t.get("replicate", ""), _fmt_values(t.get("values")),
                      *[(t.get("validation") or {}).get(k) for k in names], t.get("stopping_step", "")] for t in tuning]
            blk.append(Table(["arm", "replicate", "values", *[f"val {k}" for k in names], "stopping step"], trows,
                             right=set(range(3, 4 + len(names))), caption=f"all {len(tuning)} tuning cells (validation)",
                             collapsed=True))
        stop = summary.get("stopping")
        if isinstance(stop, dict) and stop:
            blk.append(Table(["arm", "stopping steps", "best (restored) steps", "max steps"],
                             [[a, _v(s.get("steps")), _v(s.get("best_steps")) if s.get("best_steps") else "-",
                               s.get("max_steps")] for a, s in stop.items()],
                             caption="each final run's stopping step and the step whose weights it kept (early "
                                     "stopping on validation); a run that stopped at the cap may not have converged"))
        rep.sections.append(Section("Arms, budgets and picks", blk))

    # results on test
    groups = [g for g in summary.get("groups", []) if _gmetrics(g)]
    names = metric_names(summary)
    if groups:
        top = toppop(summary)
        rows = [[_gname(g), "each replicate's pick (above)" if (g.get("replicates") or 1) > 1 else
                 _fmt_values(g.get("values")), g.get("n", g.get("seeds")),
                 *[_ms(_gmetrics(g).get(m)) for m in names]] for g in groups]
        if top:
            rows.append(["TopPopular", "-", "-", *[f"{top[m]:.4f}" if _num(top.get(m)) else "-" for m in names]])
        rep.sections.append(Section("Results (test)", [Table(["arm", "values", "runs", *names], rows,
                                                             right=set(range(2, 3 + len(names))),
                                                             caption="mean ± std over the runs (replicates × "
                                                                     "final seeds)")]))
    # comparisons
    if comps:
        frows = [ForestRow(f"{c['arm']} vs {c['baseline']} · {c['metric']}", c["rel"], c["lo"], c["hi"], c["verdict"])
                 for c in comps]
        ctab = [[c["arm"], c["baseline"], c["metric"], c["baseline_value"], c["value"],
                 svg.interval_text(c["rel"], c["lo"], c["hi"]),
                 svg.interval_text(c["abs"], c["abs_lo"], c["abs_hi"], percent=False) if _num(c["abs"]) else "-",
                 c["p_holm"] if _num(c["p_holm"]) else c["p"], c["verdict"],
                 f"{c['wins']}/{c['replicates']}" if c.get("wins") is not None else "-"] for c in comps]
        rep.sections.append(Section("Comparisons", [
            Chart("forest", svg.forest_chart(frows, title="Relative change vs baseline, 95% interval",
                                             xlabel="relative change (0 = no difference)", width=940)),
            _prune(Table(["arm", "baseline", "metric", "baseline value", "value", "Δ relative [95% CI]",
                          "Δ absolute [95% CI]", "p", "verdict", "wins"], ctab, right={3, 4, 7},
                         caption="every comparison; the interval resamples " +
                                 (comps[0].get("resamples") or "what the protocol says above")))]))
    # slices
    srows = slice_rows(summary)
    if srows:
        top = toppop(summary)
        tsl = top.get("slices") or {}
        show = [s for s in srows if s["metric"] == m1] or srows
        tab = [[s["arm"], s["slice"], s.get("pairs") if s.get("pairs") is not None else "-", s["value"],
                s["baseline_value"] if _num(s["baseline_value"]) else "-",
                svg.interval_text(s["abs"], *(s.get("abs_ci") or [None, None]), percent=False)
                if _num(s.get("abs")) else "-",
                svg.interval_text(s["rel"], s["lo"], s["hi"]) if _num(s["rel"]) and not s.get("absolute_only")
                else "– (baseline below 0.05)" if s.get("absolute_only") else "-",
                (tsl.get(s["slice"]) or {}).get(s["metric"], "-")] for s in show]
        sblk: list[Block] = [_prune(Table(
            ["arm", "slice", "pairs", m1 or "metric", "baseline", "Δ absolute [95% CI]", "Δ relative [95% CI]",
             "TopPopular"], tab,
            right={2, 3, 4, 7}, caption=f"{m1} per slice: head = ground truth among the 10% most frequent training "
                                        "items, tail = the rest, cold = never in training; novel = test pairs "
                                        "that are not training pairs (item-to-item: in either direction), across "
                                        "head / tail / cold. The interval resamples what the comparisons' does."))]
        fr = [ForestRow(f"{s['arm']} · {s['slice']}", s["rel"], s["lo"], s["hi"], verdict_of(s["lo"], s["hi"]))
              for s in show if _num(s["lo"]) and s.get("baseline") and s["arm"] != s.get("baseline")]
        if fr:
            sblk.insert(0, Chart("forest-slices", svg.forest_chart(fr, title=f"Slices: relative change in {m1}, 95% interval",
                                                                  xlabel="relative change (0 = no difference)")))
        rep.sections.append(Section("Slices", sblk))
    # knob curves (validation vs one knob at the pick)
    kc = summary.get("curves") or {}
    blocks = []
    for key, by_arm in kc.items():
        series = []
        for arm, pts in (by_arm or {}).items():
            pts = sorted((p for p in pts if _num(p.get("value"))), key=lambda p: p["value"])
            series.append(Series(arm, [p["value"] for p in pts], [(p.get("validation") or {}).get(m1) for p in pts]))
        xs = [x for s in series for x in s.xs]
        if xs:
            log_x = min(xs) > 0 and max(xs) / min(xs) >= 20
            blocks.append(Chart(f"curve-{key}", svg.line_chart(series, title=f"Validation {m1} vs {key}", xlabel=key,
                                                               ylabel=f"validation {m1}", log_x=log_x),
                                f"each point: one run at the arm's pick with only {key} changed"))
    if blocks:
        rep.sections.append(Section("Knob curves", blocks))
    # null check
    nc = summary.get("null_check")
    if isinstance(nc, dict) and nc:
        n = nc.get("blocks", nc.get("replicates"))
        ci = nc.get("ci")
        text = (f"the baseline against itself on {nc.get('metric')}: {nc.get('false_positives')} false positives in "
                f"{n} comparisons, rate {nc.get('rate', 0):.1%}" +
                (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if isinstance(ci, list) and len(ci) == 2 else "") +
                (f" (nominal {nc['nominal']:.0%})" if _num(nc.get("nominal")) else "") +
                (f". {nc['note']}" if nc.get("note") else ""))
        rep.sections.append(Section("Null check", [Para(text)]))
    return rep


# --------------------------------------------------------------------------------------------- renderers

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1a1a1a;max-width:1180px;
margin:0 auto;padding:24px 28px 60px;line-height:1.45;font-size:15px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:24px 0 6px}.sub{color:#555;margin:0 0 16px;font-size:13px;word-break:break-all}
nav{font-size:13px;margin:8px 0 18px}nav a{margin-right:12px;color:#1f5fa8;text-decoration:none}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f3f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}caption{caption-side:top;text-align:left;color:#555;font-size:12px;padding:2px 0 4px}
figure{margin:10px 0 18px}figcaption{color:#555;font-size:12px;max-width:760px}svg{max-width:100%;height:auto}
.note{color:#555;font-size:13px}.warning,li.warning{color:#8a4b00}li.helps{color:#17661f}li.hurts{color:#a51d1d}
details summary{cursor:pointer;color:#1f5fa8;font-size:13px;margin:6px 0}
ul.verdicts{padding-left:20px}ul.verdicts li{margin:3px 0}
"""


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _as_reports(obj: Any) -> list[Report]:
    if isinstance(obj, list):
        return [build_report(o) for o in obj]
    return [build_report(obj)]


def render_html(obj: Any, *, title: str | None = None) -> str:
    """One self-contained HTML page (inline CSS and SVG; nothing fetched) for a Report, a summary
    dict, a run directory, or a list of these."""
    reports = _as_reports(obj)
    single = len(reports) == 1
    doc_title = title or (reports[0].title if single else "sslkit report")
    h_rep, h_sec = ("h1", "h2") if single else ("h2", "h3")
    body = [f"<h1>{escape(doc_title)}</h1>" if not single else ""]
    body.append(f'<p class="sub">generated by sslkit {escape(__version__)}'
                + ("" if not single else f" · {escape(reports[0].subtitle)}") + "</p>")
    for ri, rep in enumerate(reports):
        rid = f"r{ri}-{_slug(rep.title)}"
        body.append(f'<article id="{rid}">')
        if not single:
            body.append(f'<{h_rep}>{escape(rep.title)}</{h_rep}><p class="sub">{escape(rep.subtitle)}</p>')
        else:
            body[0] = f"<{h_rep}>{escape(rep.title)}</{h_rep}>"
        body.append("<nav>" + "".join(f'<a href="#{rid}-{_slug(s.title)}">{escape(s.title)}</a>'
                                      for s in rep.sections) + "</nav>")
        for s in rep.sections:
            body.append(f'<section id="{rid}-{_slug(s.title)}"><{h_sec}>{escape(s.title)}</{h_sec}>')
            body += [_html_block(b) for b in s.blocks]
            body.append("</section>")
        body.append("</article>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(doc_title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_block(b: Block) -> str:
    if isinstance(b, Para):
        return f'<p class="{b.kind}">{escape(b.text)}</p>' if b.kind else f"<p>{escape(b.text)}</p>"
    if isinstance(b, Chart):
        cap = f"<figcaption>{escape(b.caption)}</figcaption>" if b.caption else ""
        return f'<figure class="chart" data-chart="{escape(b.name)}">{b.svg}{cap}</figure>'
    if isinstance(b, Bullets):
        kinds = b.kinds or [""] * len(b.items)
        return '<ul class="verdicts">' + "".join(
            f'<li class="{escape(k)}">{escape(t)}</li>' if k else f"<li>{escape(t)}</li>"
            for t, k in zip(b.items, kinds)) + "</ul>"
    head = "".join(f"<th>{escape(c)}</th>" for c in b.columns)
    rows = "".join("<tr>" + "".join(f'<td class="n">{escape(_cell(v))}</td>' if i in b.right
                                    else f"<td>{escape(_cell(v))}</td>" for i, v in enumerate(r)) + "</tr>"
                   for r in b.rows)
    if b.collapsed:
        return (f"<details><summary>{escape(b.caption or 'table')}</summary><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{rows}</tbody></table></details>")
    cap = f"<caption>{escape(b.caption)}</caption>" if b.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _md(text: Any) -> str:
    return _cell(text).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def render_markdown(obj: Any, *, figures: str = "figures", title: str | None = None,
                    heading: int = 1) -> tuple[str, dict[str, str]]:
    """(Markdown text, {relative path: SVG text}) for the same report: each chart becomes an image
    link to `figures/NAME.svg` that the caller writes beside the Markdown (see write_markdown).
    `heading` is the level of the report titles (2 to embed the report under a page's own title)."""
    reports = _as_reports(obj)
    files: dict[str, str] = {}
    out: list[str] = []
    if title:
        out += [f"{'#' * heading} {title}", ""]
        heading += 1
    for rep in reports:
        out += [f"{'#' * heading} {rep.title}", ""]
        if rep.subtitle:
            out += [f"_{_md(rep.subtitle)}_", ""]
        for s in rep.sections:
            out += [f"{'#' * (heading + 1)} {s.title}", ""]
            for b in s.blocks:
                out += _md_block(b, rep, files, figures) + [""]
    return "\n".join(out).rstrip() + "\n", files


def _md_block(b: Block, rep: Report, files: dict[str, str], figures: str) -> list[str]:
    if isinstance(b, Para):
        return [f"_{_md(b.text)}_" if b.kind == "note" else f"**{_md(b.text)}**" if b.kind == "warning" else b.text]
    if isinstance(b, Chart):
        stem, n = f"{_slug(rep.title)}-{_slug(b.name)}", 2
        path = f"{figures}/{stem}.svg"
        while path in files:
            path, n = f"{figures}/{stem}-{n}.svg", n + 1
        files[path] = b.svg
        return [f"![{_md(b.caption or b.name)}]({path})"] + (["", f"_{_md(b.caption)}_"] if b.caption else [])
    if isinstance(b, Bullets):
        kinds = b.kinds or [""] * len(b.items)
        return [f"- {'**' + _md(t) + '**' if k in ('helps', 'hurts') else _md(t)}" for t, k in zip(b.items, kinds)]
    lines = [("| " + " | ".join(_md(c) for c in b.columns) + " |"),
             "|" + "|".join("---:" if i in b.right else "---" for i in range(len(b.columns))) + "|"]
    lines += ["| " + " | ".join(_md(v) for v in r) + " |" for r in b.rows]
    if b.collapsed:
        return [f"<details><summary>{escape(b.caption or 'table')}</summary>", "", *lines, "", "</details>"]
    return ([f"_{_md(b.caption)}_", ""] if b.caption else []) + lines


def write_markdown(obj: Any, out: str | Path, *, title: str | None = None, heading: int = 1,
                   preamble: str = "", postscript: str = "") -> Path:
    """Write the Markdown report to `out` and its charts to `<out stem>_figures/` beside it
    (atomically, file by file). `preamble`/`postscript`: Markdown placed before/after the report."""
    out = Path(out)
    figures = f"{out.stem}_figures"
    text, files = render_markdown(obj, figures=figures, title=title, heading=heading)
    for rel, body in files.items():
        (out.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        io.atomic_write_text(out.parent / rel, body + "\n")
    io.atomic_write_text(out, (preamble.rstrip() + "\n\n" if preamble else "") + text +
                         ("\n" + postscript.strip() + "\n" if postscript else ""))
    return out


def write_html(obj: Any, out: str | Path, *, title: str | None = None) -> Path:
    out = Path(out)
    io.atomic_write_text(out, render_html(obj, title=title))
    return out


def trained_on(summary: dict[str, Any]) -> str | None:
    """Where a study's finals trained, from the first final run's run.json: "CPU model (bf16 flags:
    …; N usable CPUs, T thread(s), precision)" — the machine of the numbers, not of the report."""
    for g in summary.get("groups", []):
        for d in g.get("runs", []):
            path = Path(d) / "run.json"
            if not path.exists():
                continue
            r = _read_json(path)
            pc, th = r.get("precision_choice") or {}, r.get("threads") or {}
            return (f"{pc.get('cpu') or r.get('device', '?')} (bf16 CPU flags: {', '.join(pc.get('cpu_bf16_flags') or []) or 'none'}; "
                    f"{th.get('usable_cpus', '?')} usable CPUs, {th.get('threads', '?')} thread(s), {r.get('precision', '?')})")
    return None


def portable(summary: dict[str, Any], anchor: str = "examples") -> dict[str, Any]:
    """A copy of the summary with the machine's paths cut for a published page: the spec from
    `anchor/` on (as in the repository it ran from), the pre-registration file by its name."""
    out = dict(summary)
    spec = str(out.get("spec", ""))
    if f"/{anchor}/" in spec:
        out["spec"] = f"{anchor}/" + spec.rsplit(f"/{anchor}/", 1)[-1]
    if (out.get("preregistration") or {}).get("file"):
        out["preregistration"] = {**out["preregistration"], "file": Path(out["preregistration"]["file"]).name}
    return out


def iter_arms(summary: dict[str, Any]) -> Iterable[str]:
    """Every arm (group) name the summary holds."""
    return list(dict.fromkeys([*(summary.get("arms") or {}), *(_gname(g) for g in summary.get("groups", []))]))
