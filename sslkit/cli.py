"""The `sslkit` command line: one thin function per subcommand.

Each command parses, calls one library function and prints. Data goes to stdout, logs to stderr.
`SslkitError` becomes one `Error: …` line and its exit code (2 config/usage, 1 data/checkpoint);
Ctrl-C exits 130. torch and hnswlib are imported inside commands so `sslkit --help` stays instant.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

try:  # typer ≥ 0.20 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[no-redef]

from sslkit import __version__, console, runtime
from sslkit.errors import ConfigError, SslkitError

app = typer.Typer(
    name="sslkit",
    help="Two-tower retrieval with self-supervised feature masking for any tabular dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])

SchemaArg = Annotated[Path, typer.Argument(help="The dataset's YAML schema.", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a schema key: --set ssl.alpha=0.3 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
AllowDataOpt = Annotated[bool, typer.Option("--allow-data-change", help="Use the run even if its data changed since training (warns loudly).")]


def handle_errors(fn: F) -> F:
    """The one error boundary: anything a user or the machine causes ends as one `Error:` line.

    SslkitError → its exit code (2 config/usage, 1 otherwise); Ctrl-C → 130; disk full, read-only
    or unwritable paths, out of memory → 1 with the fix. An unexpected exception is a bug: one line
    that says so (SSLKIT_DEBUG=1 shows the traceback).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except SslkitError as e:
            _fail(e.line(), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            _stdout_closed()
            raise typer.Exit(0)  # downstream closed the pipe (`| head`): not an error
        except OSError as e:
            from sslkit.data.io import os_error

            err = os_error(e)
            _fail(err.line(), err.exit_code)
        except (MemoryError, RecursionError) as e:
            _fail(_resource_line(e), 1)
        except UnicodeDecodeError as e:  # a text input that is not UTF-8, read outside the checked readers
            _fail(f"an input file is not UTF-8 (byte 0x{e.object[e.start]:02x} at position {e.start + 1}) — "
                  "save it as UTF-8", 1)
        except Exception as e:
            if _out_of_memory(e):
                _fail(_resource_line(e), 1)
            if os.environ.get("SSLKIT_DEBUG"):
                raise
            first = (str(e).strip().splitlines() or [""])[0][:200]
            _fail(f"internal error ({type(e).__name__}: {first}) — this is a bug in sslkit; "
                  "rerun with SSLKIT_DEBUG=1 for the traceback and report it", 1)

    return wrapper  # type: ignore[return-value]


def _fail(message: str, code: int) -> None:
    text = " ".join(message.split())  # one line, whatever the message held
    console.error(text if len(text) <= 2000 else text[:2000] + "…")
    raise typer.Exit(code)


def _stdout_closed() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return type(e).__name__ == "OutOfMemoryError" or (
        isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower()))


def _resource_line(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "the input is nested too deeply to process — simplify it"
    return ("out of memory — use smaller settings (model.hidden, model.embedding_dim, --batch-size) "
            "or a machine with more memory")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sslkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or log lines on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """sslkit: profile, init, mi, train, eval, embed, recommend, sweep, report — see `sslkit COMMAND --help`."""
    console.set_quiet(quiet)
    runtime.passive_wait_policy()  # before torch loads OpenMP: idle workers sleep (sslkit.runtime, "Threads")
    runtime.keep_freed_memory()  # the tool owns its process: reuse freed tensor memory (sslkit.runtime)


def _config(schema: Path, overrides: Optional[list[str]], flags: Optional[dict[str, str]] = None) -> Any:
    from sslkit.config import load_config

    return load_config(schema, overrides or [], flags=flags)


def _store(cfg: Any) -> Any:
    from sslkit.data.store import load_or_build

    return load_or_build(cfg, log=console.log)


def _print_json(obj: Any) -> None:
    from sslkit.data.io import dumps

    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


@app.command()
@handle_errors
def profile(
    schema: SchemaArg,
    json_out: JsonOpt = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the popularity CDF to this PNG.")] = None,
    set_: SetOpt = None,
) -> None:
    """Sizes, per-feature statistics, popularity (Gini, TopPopular recall) and head/tail/cold counts."""
    from sslkit.data.profile import composite_id_features, plot_popularity, profile as run_profile

    cfg = _config(schema, set_)
    store = _store(cfg)
    result = run_profile(store, ks=tuple(cfg.eval.k), head_fraction=cfg.eval.head_fraction,
                         exclude_seen=cfg.eval.exclude_seen, composite_ids=composite_id_features(cfg))
    if plot:
        plot_popularity(store, str(plot))
        console.log(f"wrote {plot}")
    for warning in result["warnings"]:
        console.warn(f"warning: {warning}")
    if json_out:
        _print_json(result)
    else:
        console.render_profile(result)


@app.command()
@handle_errors
def init(
    data: Annotated[str, typer.Argument(help="Interactions file (CSV/Parquet/NDJSON).", show_default=False)],
    items: Annotated[Optional[str], typer.Option("--items", help="Items (catalog) file.")] = None,
    queries: Annotated[Optional[str], typer.Option("--queries", help="Queries (e.g. users) file.")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="item-to-item | user-to-item: which reading of the log to write [the one init proposes]; the other follows as a commented block.")] = None,
) -> None:
    """Infer a starting schema — the task (item-to-item or user-to-item), pair rule and split too — and print it as commented YAML."""
    from sslkit.data.infer import TASKS, infer_schema

    if task is not None and task not in TASKS:
        raise typer.BadParameter("use item-to-item or user-to-item", param_hint="--task")
    sys.stdout.write(infer_schema(data, items=items, queries=queries, task=task))


@app.command()
@handle_errors
def mi(
    schema: SchemaArg,
    json_out: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the JSON here (for train's ssl.mi_path).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write an MI heatmap to this PNG.")] = None,
    normalized: Annotated[Optional[bool], typer.Option("--normalized/--raw", help="Rank CFM sets by normalized or raw MI (default: ssl.mi).")] = None,
    mask_size: Annotated[Optional[int], typer.Option("--mask-size", min=1, help="|F_m| (default: ssl.mask_size or floor(k/2)).")] = None,
    set_: SetOpt = None,
) -> None:
    """Mutual information between item features over the catalog, and the CFM masking sets.

    Exact, from counts over the catalog's items. A row with no value (null, empty list) counts as one
    value of its own, "missing", and every out-of-vocabulary value (below min_count / max_size) as one
    value "OOV": to match mi with your own computation, count them that way rather than dropping them.
    Multi-valued features spread each item's unit mass evenly over its value pairs."""
    from sslkit.data.mi import catalog_mi

    cfg = _config(schema, set_)
    store = _store(cfg)
    use_nmi = normalized if normalized is not None else cfg.ssl.mi == "nmi"
    result, obj = catalog_mi(store, mask_size=mask_size or cfg.ssl.mask_size, normalized=use_nmi)
    if out:
        from sslkit.data.io import write_json

        write_json(out, obj)
        console.log(f"wrote {out}")
    if plot:
        from sslkit.data.mi import plot_heatmap

        plot_heatmap(result, str(plot), normalized=use_nmi)
        console.log(f"wrote {plot}")
    if json_out:
        _print_json(obj)
    else:
        console.render_mi(obj)


_TRAIN_FLAGS = {"aug": "ssl.aug", "alpha": "ssl.alpha", "dropout": "ssl.dropout", "epochs": "train.epochs",
                "steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr",
                "optimizer": "train.optimizer", "fraction": "split.fraction", "seed": "train.seed",
                "device": "train.device", "precision": "train.precision", "mi": "ssl.mi_path",
                "threads": "train.threads",
                "early_stopping": "train.early_stopping.patience"}


@app.command()
@handle_errors
def train(
    schema: SchemaArg,
    aug: Annotated[Optional[str], typer.Option("--aug", help="none fd so cfm rfm rfm_no_compl cfm_no_dropout no_mask")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="SSL loss weight (ssl.alpha).")] = None,
    dropout: Annotated[Optional[float], typer.Option("--dropout", help="Value dropout rate dr (ssl.dropout).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Passes over the training pairs.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Stop after this many steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Training batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate.")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="adagrad | adam")] = None,
    fraction: Annotated[Optional[float], typer.Option("--fraction", help="Use this share of training pairs.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for init, batches and augmentation.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="auto | fp32 | bf16 (auto: bf16 on CUDA and on CPUs with avx512_bf16 or amx_bf16).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads (train.threads; default: 1 for a small model, else the idle usable CPUs).")] = None,
    mi_path: Annotated[Optional[Path], typer.Option("--mi", help="MI JSON from `sslkit mi --out` (else computed).")] = None,
    early_stopping: Annotated[Optional[int], typer.Option("--early-stopping", min=0, metavar="ROUNDS", help="Stop after ROUNDS validation rounds without improvement and keep the best round's weights; 0 = off [train.early_stopping.patience].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory [runs/NAME-AUG-sSEED].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")] = False,
    nproc: Annotated[Optional[int], typer.Option("--nproc", min=1, help="Train on N local processes (launches torchrun; see docs/scaling.md).")] = None,
    json_out: JsonOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train a two-tower model with the chosen augmentation; Ctrl-C saves a checkpoint (exit 130)."""
    from sslkit.training import distributed
    from sslkit.training.train import Interrupted, run_training

    if nproc and nproc > 1 and not distributed.launched():
        raise typer.Exit(distributed.launch(nproc, sys.argv[1:]))

    flags = {"aug": aug, "alpha": alpha, "dropout": dropout, "epochs": epochs, "steps": steps,
             "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "fraction": fraction, "seed": seed,
             "device": device, "precision": precision, "mi": str(mi_path.resolve()) if mi_path else None,
             "threads": threads, "early_stopping": early_stopping}
    given = {k: v for k, v in flags.items() if v is not None}
    explicit = [f"{_TRAIN_FLAGS[k]}={v}" for k, v in given.items()]
    cfg = _config(schema, [*(set_ or []), *explicit], flags={_TRAIN_FLAGS[k]: "--" + k.replace("_", "-") for k in given})
    run_dir = out or Path("runs") / default_run_name(cfg.name, cfg.ssl.aug, cfg.train.seed)
    display = console.TrainDisplay()
    try:
        with distributed.joined(cfg.train.device) as world:  # under torchrun; rank 0 alone reports
            console.set_quiet(console.quiet() or not world.is_main)
            result = run_training(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite, argv=sys.argv,
                                  log=console.log, on_event=display, stop_on_signals=True)
    except Interrupted as e:
        display.close()  # end the progress bar before printing below it
        if not console.quiet():
            console.warn(str(e))
        raise typer.Exit(130)
    finally:
        display.close()
    if not world.is_main:
        return
    summary = {"run": str(run_dir), "steps": result.steps, "examples_per_s": round(result.examples_per_s, 1),
               **result.validation}
    if json_out:
        _print_json(summary)
    else:
        console.out.print(console.table(None, ["run", *list(summary)[1:]], [list(summary.values())]))


RunsArg = Annotated[list[Path], typer.Argument(help="Run directories made by `sslkit train`.", show_default=False)]


@app.command("eval")
@handle_errors
def eval_(
    runs: RunsArg,
    k: Annotated[Optional[str], typer.Option("--k", help="Cutoffs, comma-separated [eval.k: 10,50].")] = None,
    index: Annotated[Optional[str], typer.Option("--index", help="exact | hnsw [eval.index].")] = None,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Run to compare against; with its other seeds given too, their group is the baseline (bootstrap CIs).")] = None,
    exclude_seen: Annotated[Optional[bool], typer.Option("--exclude-seen/--include-seen", help="Drop each query's training positives.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Queries per retrieval block.")] = None,
    ann_queries: Annotated[Optional[int], typer.Option("--ann-queries", min=1, help="hnsw: queries sampled to measure ANN recall vs exact [eval.ann_queries].")] = None,
    split: Annotated[str, typer.Option("--split", help="test (the final table) | validation (tuning: the pairs train validates on).")] = "test",
    allow_data_change: AllowDataOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Recall@K / MAP@K over the whole catalog, head/tail/cold slices, TopPopular, comparisons."""
    from sslkit.evaluation.evaluate import check_same_options, compare, evaluate_run

    ks = _parse_ks(k)
    if index not in (None, "exact", "hnsw"):
        raise typer.BadParameter("use exact or hnsw", param_hint="--index")
    if split not in ("test", "validation"):
        raise typer.BadParameter("use test or validation", param_hint="--split")
    paths = list(dict.fromkeys([*runs, *([baseline] if baseline else [])]))
    results = []
    for path in paths:
        console.log(f"evaluating {path}")
        results.append(evaluate_run(path, ks=ks, index=index, exclude_seen=exclude_seen, batch_size=batch_size,
                                    ann_queries=ann_queries, log=console.log, split=split,
                                    allow_data_change=allow_data_change))
    check_same_options(results)
    base = results[paths.index(baseline)] if baseline else None
    comparison = compare(results, base)
    if json_out:
        _print_json({"runs": [r.to_json() for r in results], "comparison": comparison})
    else:
        console.render_eval([r.to_json() for r in results], comparison)


def default_run_name(name: str, aug: str, seed: int) -> str:
    """`runs/NAME-AUG-sSEED` with NAME reduced to a safe file name: no path separators, no `..`,
    at most 64 characters (a schema `name: ../../x` must not write outside runs/)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._-")[:64] or "dataset"
    return f"{safe}-{aug}-s{seed}"


def _parse_ks(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint="--k")
    if not ks or min(ks) < 1:
        raise typer.BadParameter("cutoffs must be positive", param_hint="--k")
    return ks


@app.command()
@handle_errors
def embed(
    run: Annotated[Path, typer.Argument(help="Run directory.", show_default=False)],
    items: Annotated[Optional[str], typer.Option("--items", help="Embed these item rows (file or -) instead of the catalog.")] = None,
    queries: Annotated[Optional[str], typer.Option("--queries", help="Embed these query rows (file or -).")] = None,
    out: Annotated[str, typer.Option("--out", help="Output file, or - for stdout.")] = "-",
    fmt: Annotated[str, typer.Option("--format", help="parquet | npy | ndjson | csv")] = "ndjson",
    input_format: Annotated[Optional[str], typer.Option("--input-format", help="csv | parquet | ndjson: the --items/--queries rows [from the extension; stdin: csv].")] = None,
    index: Annotated[Optional[Path], typer.Option("--index", help="Also build an HNSW index here (items).")] = None,
    allow_data_change: AllowDataOpt = False,
) -> None:
    """Item (or query) embeddings with their ids; new rows are encoded with the run's vocabularies."""
    from sslkit.retrieval.embed import FORMATS, build_index, embed as run_embed, load_run, recall_line, write_vectors

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if input_format not in (None, "csv", "parquet", "ndjson"):
        raise typer.BadParameter("use one of csv, parquet, ndjson", param_hint="--input-format")
    r = load_run(run, allow_data_change=allow_data_change)
    bad: list[str] = []
    ids, vectors, entity = run_embed(r, items=items, queries=queries, input_format=input_format, log=console.log,
                                     warn=lambda m: (bad.append(m), console.warn(m)))
    if index:
        if entity != "items":
            raise typer.BadParameter("an index is built over items", param_hint="--index")
        built = build_index(vectors, str(index), r, console.log, exclude_self=items is None)
        console.log(f"wrote HNSW index {index} ({len(ids):,} items; {recall_line(built.meta)})")
    write_vectors(ids, vectors, out, fmt)
    console.log(f"embedded {len(ids):,} {entity} (d={vectors.shape[1]})" + ("" if out == "-" else f" → {out}"))
    if bad:
        console.error(f"{len(bad)} input line(s) could not be embedded (see above)")
        raise typer.Exit(1)


@app.command()
@handle_errors
def recommend(
    run: Annotated[Path, typer.Argument(help="Run directory.", show_default=False)],
    k: Annotated[int, typer.Option("--k", min=1, help="Items per query.")] = 10,
    queries: Annotated[str, typer.Option("--queries", help="Query ids or NDJSON feature rows, one per line (file or -).")] = "-",
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen/--include-seen", help="Leave out items a query id already has a pair with in the run's data.")] = False,
    index: Annotated[str, typer.Option("--index", help="hnsw (the run's cached graph; its recall vs exact is logged) | exact (blocked matmul over the catalog).")] = "hnsw",
    allow_data_change: AllowDataOpt = False,
) -> None:
    """Top-K items per query from the run's HNSW index (or exact search), one NDJSON line per query (stdin → stdout)."""
    from sslkit.retrieval.recommend import recommend_lines

    if index not in ("exact", "hnsw"):
        raise typer.BadParameter("use hnsw or exact", param_hint="--index")

    problems: list[str] = []
    try:
        failed = recommend_lines(run, queries, k, write=lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()),
                                 warn=lambda m: (problems.append(m), console.warn(m)), log=console.log,
                                 exclude_seen=exclude_seen, allow_data_change=allow_data_change, index=index)
    except BrokenPipeError:  # `| head` closed the pipe: lines already reported as failed still count
        _stdout_closed()
        raise typer.Exit(1 if problems else 0)
    if failed:
        console.error(f"{failed} input line(s) could not be answered (see above)")
        raise typer.Exit(1)


@app.command()
@handle_errors
def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (YAML): schema, set, and a grid + baseline, or arms + tune + seeds + baseline (a tuning study).", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells and their status; train nothing.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory of the cell runs [the spec's out].")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", min=1, help="A study's trials per arm and replicate (tune.budget, and backbone.budget) [the spec's].")] = None,
    replicates: Annotated[Optional[int], typer.Option("--replicates", min=1, help="A study's tuning replicates (tune.replicates) [the spec's].")] = None,
    json_out: JsonOpt = False,
    set_: SetOpt = None,
) -> None:
    """Train and score every cell of a grid (resumable), or run a tuning study and compare each arm with the baseline.

    A study (spec with arms) tunes on the validation split and reads test once. Two-stage (the
    default): stage 1 tunes the backbone (backbone.space: lr, τ, ...) on the baseline; stage 2
    tunes each SSL arm's own knobs (its space: α, dropout, SSL τ, ...) at the backbone's pick, the
    same number of trials per SSL arm. protocol: joint tunes every arm's shared and own knobs
    together ("what a user with N runs gets"). Trials are the first B points of one seeded Sobol
    sequence per (arm, replicate), so budget B's trials are budget B+1's first B. Each of R tuning
    replicates (own sequence and seed) picks its best trial on validation; each pick trains with
    the final seeds (disjoint from tuning seeds) on test, after the spec's hash and commit are
    recorded ({spec}.preregistration.json). Intervals resample replicates x seeds x queries;
    verdicts are Holm-corrected over the arms. See docs/studies.md.
    """
    from sslkit.study.cells import cell_status
    from sslkit.study.sweep import load_sweep, run_sweep, summarize_sweep, write_summary
    from sslkit.training.train import Interrupted

    if (budget is not None or replicates is not None) and not _is_study(spec):
        raise ConfigError(f"{spec}: --budget and --replicates are for a tuning study (a spec with arms)")
    sw = load_sweep(spec, overrides=set_ or [], out=out, budget=budget, replicates=replicates)
    if dry_run:
        from sslkit.study.tuning import planned_cells  # a study: its picks' cells too, once they are known

        rows = [(c.label, cell_status(c), str(c.dir)) for c in (planned_cells(sw) if sw.tuned else sw.cells)]
        if json_out:
            _print_json([dict(zip(("cell", "status", "dir"), r)) for r in rows])
        else:
            console.out.print(console.table(f"{spec}: {len(rows)} cells", ["cell", "status", "run directory"], rows))
        return
    display = console.SweepDisplay()
    started = time.perf_counter()
    try:
        results, failed = run_sweep(sw, log=console.log, on_event=display, stop_on_signals=True)
    except Interrupted as e:
        display.close()
        console.warn(f"{e}; rerun `sslkit sweep {spec}` to continue")
        raise typer.Exit(130)
    finally:
        display.close()
    summary = summarize_sweep(sw, results)
    summary["failed"] = [{"cell": c.label, "error": msg} for c, msg in failed]
    summary["wall_s"] = round(time.perf_counter() - started, 1)  # this invocation (cells already done are reused)
    path = write_summary(sw, summary)
    console.log(f"wrote {path}")
    if json_out:
        _print_json(summary)
    else:
        console.render_sweep(summary)
    if failed:
        console.error(f"{len(failed)} of {len(sw.cells)} cells failed: " + "; ".join(f"{c.label}: {m}" for c, m in failed))
        raise typer.Exit(1)


@app.command()
@handle_errors
def report(
    inputs: Annotated[list[Path], typer.Argument(help="Run directories, sweep out directories (their *.sweep.json) or summary JSON files.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file [report.html, or report.md with --format md]; - for stdout.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html (one self-contained file, charts inline) | md (charts as .svg files beside it)")] = "html",
    title: Annotated[Optional[str], typer.Option("--title", help="Page title [the run's or study's name].")] = None,
) -> None:
    """One page for runs and studies: curves, metrics with TopPopular, slices, budgets, every comparison with its interval."""
    from sslkit.study.report import build_reports, render_html, write_html, write_markdown

    if fmt not in ("html", "md"):
        raise typer.BadParameter("use html or md", param_hint="--format")
    reports = build_reports(inputs)
    if str(out) == "-":
        if fmt == "md":
            raise typer.BadParameter("Markdown writes its charts beside the file: give a path", param_hint="--out")
        sys.stdout.write(render_html(reports, title=title))
        return
    path = out or Path(f"report.{fmt}")
    if fmt == "md":
        write_markdown(reports, path, title=title)
        console.log(f"wrote {path} (charts in {path.stem}_figures/)")
    else:
        write_html(reports, path, title=title)
        console.log(f"wrote {path}")


def _is_study(spec: Path) -> bool:
    import yaml

    try:
        raw = yaml.safe_load(spec.read_text())
    except (OSError, yaml.YAMLError):
        return True  # load_sweep reports the unreadable spec
    return isinstance(raw, dict) and raw.get("arms") is not None


def main() -> None:
    """Console-script entry point."""
    app()
