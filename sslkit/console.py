"""Terminal output: logs and progress on stderr (rich), reports and tables on stdout.

The library never prints; it reports through callbacks that the CLI points here.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

_state = {"quiet": False}
# User text is printed literally: markup in it is escaped (_escape) and emoji codes such as `:x:` are
# never replaced (emoji=False), on both streams.
err = Console(stderr=True, highlight=False, emoji=False)
if not err.is_terminal:  # a log file or a pipe: one event per line, never wrapped or cut at 80 columns
    err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True, width=200)  # width: tables only
out = Console(highlight=False, soft_wrap=True, emoji=False)
if not out.is_terminal:
    out = Console(highlight=False, soft_wrap=True, width=160, emoji=False)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def quiet() -> bool:
    return _state["quiet"]


def log(message: str) -> None:
    """A progress/log line on stderr (silenced by --quiet). A line the library starts with
    "warning: " (data dropped or capped, a damaged cache rebuilt) is a warning: --quiet hides
    progress, not data loss."""
    if message.startswith("warning: "):
        warn(message)
    elif not _state["quiet"]:
        err.print(f"[dim]{_escape(message)}[/dim]", soft_wrap=not err.is_terminal)


def warn(message: str) -> None:
    """A warning on stderr: one line however long (tools grep it), never silenced."""
    err.print(f"[yellow]{_escape(message)}[/yellow]", soft_wrap=True)


def error(message: str) -> None:
    """The single error line (never silenced)."""
    err.print(f"[bold red]Error:[/bold red] {_escape(message)}", soft_wrap=True)


def show_progress() -> bool:
    return not _state["quiet"] and sys.stderr.isatty()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          right: Sequence[str] = (), fold: Sequence[str] = ("run",)) -> Table:
    """A rich table; numbers are formatted compactly. `fold` columns (run names) wrap onto more
    lines instead of being cut with an ellipsis, so long names stay distinguishable."""
    t = Table(title=_escape(title) if title else None, title_justify="left", show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(_escape(c), justify="right" if c in right else "left", overflow="fold" if c in fold else "ellipsis")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    return t


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return _escape(str(v))


def render_profile(p: dict[str, Any]) -> None:
    """The `sslkit profile` report, on stdout."""
    pairs, pop = p["pairs"], p["popularity"]
    out.print(f"[bold]{p['mode']}[/bold]: {p['items']:,} items, {p['queries']:,} queries, "
              f"{pairs['read']:,} pairs read ({pairs['train']:,} train / {pairs.get('validation', 0):,} validation / "
              f"{pairs['test']:,} test; "
              f"dropped {pairs['dropped_unknown_item']:,} unknown-item, {pairs['dropped_unknown_query']:,} unknown-query)")
    for key, title in (("item_features", "Item features"), ("query_features", "Query features")):
        if key in p:
            out.print(_feature_table(title, p[key]))
    tp = pop["test_pairs"]
    rows = [("interactions on top 1% of items", pop["top_1pct_items_share"]),
            ("interactions on top 10% of items", pop["top_10pct_items_share"]),
            ("Gini of item popularity", pop["gini"]),
            *[(f"TopPopular Recall@{k.split('@')[1]}", v) for k, v in pop.items() if k.startswith("toppop_")],
            ("catalog-only items (no pairs)", pop["catalog_only_items"]),
            ("distinct test pairs: head / tail / cold", f"{tp['head']:,} / {tp['tail']:,} / {tp['cold']:,}")]
    out.print(table("Popularity", ["statistic", "value"], rows, right=["value"]))


def _feature_table(title: str, feats: list[dict[str, Any]]) -> Table:
    rows = []
    for f in feats:
        vpr = f.get("values_per_row")
        per_row = f"{vpr['mean']:.1f} / {vpr['p50']:g} / {vpr['p99']:g} / {vpr['max']}" if vpr else "-"
        top = ", ".join(f"{v} ({c:,})" for v, c in f["top_values"][:3])
        rows.append((f["feature"], f["type"], f["cardinality"], f"{f['null_share']:.1%}", per_row,
                     f.get("truncated_rows", 0), f"{f['test_oov_share']:.1%}" if "test_oov_share" in f else "-", top))
    cols = ["feature", "type", "cardinality", "null", "values/row mean/p50/p99/max", "truncated rows", "test OOV",
            "top values"]
    return table(title, cols, rows, right=["cardinality", "null", "truncated rows", "test OOV"])


def render_mi(obj: dict[str, Any]) -> None:
    """The `sslkit mi` report: entropy, the MI matrix and the CFM masking sets."""
    feats = obj["features"]
    measure = obj.get("measure", "mi")
    mat = obj["nmi"] if measure == "nmi" else obj["mi"]
    out.print(table(f"Mutual information ({'normalized: MI/sqrt(H_i·H_j)' if measure == 'nmi' else 'nats'})",
                    ["feature", "H (nats)", *feats],
                    [(f, obj["entropy"][i], *mat[i]) for i, f in enumerate(feats)], right=["H (nats)", *feats]))
    sets = obj.get("mask_sets", {})
    out.print(table(f"CFM masking sets F_m (|F_m| = {obj.get('mask_size')})", ["seed", "masked together"],
                    [(s, ", ".join(m)) for s, m in sets.items()]))


class TrainDisplay:
    """Renders training events on stderr: a rich progress bar on a terminal, log lines otherwise."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None
        self.last: dict[str, Any] = {}
        self.ssl_batch = 0  # the SSL batch (start event): in-batch top-1's chance level is 1/ssl_batch

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "warning":  # never silenced, like every warning
            printer = self.progress.console.print if self.progress is not None else err.print
            printer(f"[yellow]warning: {_escape(p['message'])}[/yellow]", soft_wrap=True)  # one line
            return
        if quiet():
            return
        if kind == "start":
            self.ssl_batch = p.get("ssl_batch", 0)
            flags = ", ".join(p.get("cpu_bf16_flags") or []) or "no bf16 CPU flags"
            log(f"training on {p['device']} ({p['precision']}; {flags}), {p.get('threads', '?')} thread(s) "
                f"({p.get('threads_reason', '')}): {p['parameters']:,} parameters, "
                f"{p['total_steps']:,} steps ({p['steps_per_epoch']:,} per epoch)")
            if show_progress():
                from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

                self.progress = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                                         TextColumn("{task.description}"), TimeRemainingColumn(), console=err)
                self.progress.start()
                self.task = self.progress.add_task("", total=p["total_steps"], completed=p["step"])
        elif kind == "step":
            self.last = p
            parts = " ".join(f"{k} {p[k]:.4f}" for k in ("loss", "main", "ssl") if k in p)
            if "ssl_top1" in p and self.ssl_batch:  # the SSL task's own progress, beside its loss
                parts += f" (top-1 {p['ssl_top1']:.4f}, chance {1 / self.ssl_batch:.4f})"
            line = f"epoch {p['epoch']:.2f} {parts} {p['examples_per_s']:,.0f} ex/s"
            if self.progress is not None:
                self.progress.update(self.task, completed=p["step"], description=line)
            else:
                log(f"step {p['step']} {line}")
        elif kind == "eval":  # val_recall@K, with TopPopular's on the same queries beside it
            pop = {k: p.get(k.replace("val_", "val_toppop_")) for k in p}
            text = " ".join(f"{k} {v:.4f}" + ("" if pop[k] is None else f" (TopPopular {pop[k]:.4f})")
                            for k, v in p.items() if k != "step" and not k.startswith("val_toppop_"))
            (self.progress.console.print if self.progress is not None else log)(f"step {p['step']} {text}")
        elif kind == "early_stop":
            how = f"stopped early at step {p['stopped_step']}" if p["stopped_early"] else f"ended at step {p['stopped_step']}"
            best = " ".join(f"{k} {v:.4f}" for k, v in p["best_validation"].items())
            (self.progress.console.print if self.progress is not None else log)(
                f"{how}; kept step {p['best_step']}'s weights ({best})")
        elif kind == "done":
            self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def render_eval(runs: list[dict[str, Any]], comparison: dict[str, Any]) -> None:
    """`sslkit eval` tables: metrics per run, TopPopular, slices, comparison."""
    if not runs:
        return
    metric_names = [m for m in runs[0]["metrics"] if m.split("@")[0] in ("recall", "map")]
    rows = [(r["run"], r["config"]["aug"], *[r["metrics"][m] for m in metric_names],
             r.get(next((k for k in r if k.startswith("ann_recall")), ""), None)) for r in runs]
    rows.append(("TopPopular", "-", *[runs[0]["toppop"].get(m) for m in metric_names], None))
    out.print(table(eval_header(runs[0]), ["run", "aug", *metric_names, "ANN recall"], rows,
                    right=[*metric_names, "ANN recall"]))
    srows = [(r["run"], name, s["pairs"], *[s.get(m) for m in metric_names])
             for r in runs for name, s in r["slices"].items()]
    out.print(table("Slices (head = top 10% training items, cold = unseen in training, novel = not a training pair)",
                    ["run", "slice", "pairs", *metric_names], srows, right=["pairs", *metric_names]))
    _render_comparison(comparison, metric_names)


def eval_header(r: dict[str, Any]) -> str:
    """The options every row of an eval table was scored under (TopPopular included)."""
    ks = ",".join(map(str, r.get("k", [])))
    return (f"Whole-catalog retrieval, {r.get('split', 'test')} split: {r['queries']:,} queries, "
            f"{r.get('pairs', r.get('test_pairs', 0)):,} pairs; index {r['index']}, K {ks}, "
            f"exclude-seen {'on' if r.get('exclude_seen') else 'off'} (every row, TopPopular too)")


def _render_comparison(comparison: dict[str, Any], metric_names: list[str]) -> None:
    """Seed groups (mean ± std) and the comparison with the baseline group, each CI labelled with what
    it resamples."""
    groups = comparison.get("groups", [])
    if any(len(g["runs"]) > 1 for g in groups):
        rows = [(g["group"], ", ".join(map(str, g["seeds"])),
                 *[f"{g['metrics'][m]['mean']:.4f} ± {g['metrics'][m]['std']:.4f}" for m in metric_names])
                for g in groups]
        out.print(table("Seed groups (runs identical but for train.seed, same data; mean ± std over seeds)",
                        ["group", "seeds", *metric_names], rows, fold=["group"]))
    if comparison.get("vs_baseline"):
        crow = [(c["group"], c["resamples"],
                 *[f"{c[m]['relative']:+.1%} [{c[m]['low']:+.1%}, {c[m]['high']:+.1%}]" for m in metric_names])
                for c in comparison["vs_baseline"]]
        out.print(table(f"vs baseline {comparison['baseline_group']} (relative change, paired bootstrap 95% CI)",
                        ["group", "CI resamples", *metric_names], crow, fold=["group"]))
        for kind, text in comparison.get("ci_covers", {}).items():
            out.print(f"[dim]{_escape(kind)}: {_escape(text)}[/dim]")


class SweepDisplay:
    """`sslkit sweep` progress: one line per cell, then that cell's training progress."""

    def __init__(self) -> None:
        self.train = TrainDisplay()

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "cell":
            self.train.close()
            self.train = TrainDisplay()
            action = {"done": "done, skipped", "trained": "trained, evaluating", "partial": "resuming",
                      "new": "training"}[p["status"]]
            if not quiet():
                err.print(f"[bold]cell {p['index'] + 1}/{p['total']}[/bold] {_escape(p['label'])} [dim]({action})[/dim]")
        else:
            self.train(kind, p)

    def close(self) -> None:
        self.train.close()


def render_sweep(summary: dict[str, Any]) -> None:
    """`sslkit sweep` table: each group's mean ± std over seeds and its change vs the baseline group, a
    TopPopular row under the same options, and (a study) each comparison's verdict and the warnings."""
    groups = [g for g in summary["groups"] if "metrics" in g]
    if not groups:
        return
    names = list(groups[0]["metrics"])
    baselines = {g.get("baseline") for g in groups}
    rows = []
    for g in groups:
        cells = [f"{g['metrics'][m]['mean']:.4f} ± {g['metrics'][m]['std']:.4f}" for m in names]
        vs = g.get("vs_baseline")
        if vs:
            rel = [f"{vs[m]['relative']:+.1%} [{vs[m]['low']:+.1%}, {vs[m]['high']:+.1%}]" if m in vs else "-"
                   for m in names]
        else:
            rel = ["baseline" if g["group"] in baselines or g["group"] == summary.get("baseline") else "-"] * len(names)
        rows.append([g["group"], g["seeds"], *cells, *rel])
    pop = summary.get("toppop") or {}
    if pop:
        rows.append(["TopPopular", "-", *[f"{pop[m]:.4f}" if m in pop else "-" for m in names], *["-"] * len(names)])
    sel = summary.get("selection")  # a tuning study: each replicate's picks, chosen on validation, scored on test
    how = (f"picks by validation {sel['metric']}, {sel['budget']} trials per arm x {sel.get('replicates', 1)} "
           f"replicates; test, " if sel else "")
    ci = "replicates x seeds x queries" if sel and sel.get("replicates") else "seeds paired"
    out.print(table(f"{summary['spec']}: {summary['done']}/{summary['cells']} cells ({how}mean ± std over runs; "
                    f"vs baseline: bootstrap 95% CI, {ci})",
                    ["group", "runs" if sel else "seeds", *names, *[f"Δ{m}" for m in names]], rows, right=["seeds", "runs"]))
    metric = sel["metric"] if sel else None
    for c in summary.get("comparisons") or []:
        if c.get("metric") == metric and c.get("ci_abs"):
            p = "" if c.get("p_holm") is None else f", Holm p {c['p_holm']:.3f}"
            out.print(f"{c['arm']} vs {c['baseline']}: {c['verdict']} ({metric} {c['delta_abs']:+.4f} "
                      f"[{c['ci_abs'][0]:+.4f}, {c['ci_abs'][1]:+.4f}]{p}; beat it in {c['wins']} of "
                      f"{c['replicates']} replicates)")
    for w in summary.get("warnings") or []:
        out.print(f"warning: {w}")
