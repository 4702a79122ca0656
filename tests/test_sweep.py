"""`sslkit sweep`: grid expansion, resumability, summaries, spec errors; the seeds bootstrap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.cli import app
from sslkit.errors import ConfigError
from sslkit.evaluation.metrics import (expansion_factor, null_false_positive_rate, paired_seeds_bootstrap_ci, seeds_bootstrap_ci,
                            t_quantile)
from sslkit.study.cells import cell_status
from sslkit.study.sweep import load_sweep, run_sweep, summarize_sweep


def write_spec(path: Path, schema: Path, **extra: object) -> Path:
    spec = {"schema": str(schema), "out": "runs", "set": {"train.steps": 4, "train.batch_size": 256,
                                                          "train.eval_queries": 20, "model.hidden": [32, 16]},
            "grid": {"aug": ["none", "cfm"], "seed": [0, 1]}, "baseline": {"aug": "none"}, **extra}
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_grid_expands_with_short_keys_and_baseline(data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml",
                      grid={"aug": ["none", "cfm"], "alpha": [0.1, 1.0], "seed": [0, 1, 2]})
    sw = load_sweep(spec)
    assert len(sw.cells) == 12
    c = sw.cells[-1]
    assert (c.values, c.cfg.ssl.aug, c.cfg.ssl.alpha, c.cfg.train.seed, c.cfg.train.steps) == (
        {"aug": "cfm", "alpha": 1.0, "seed": 2}, "cfm", 1.0, 2, 4)
    assert len({cell.dir for cell in sw.cells}) == 12
    assert sw.baseline_of["aug=cfm,alpha=1.0"] == "aug=none,alpha=1.0"
    assert len(sw.groups["aug=cfm,alpha=0.1"]) == 3
    assert all(c.dir.parent == tmp_path / "runs" for c in sw.cells)


@pytest.mark.parametrize("extra, message", [
    ({"grid": {"aug": []}}, "grid: aug: expected a non-empty list"),
    ({"grid": {"aug": ["none", "none"]}}, "grid: aug: repeated values"),
    ({"grid": {"aug": ["none", "bogus"]}}, "cell aug=bogus"),
    ({"baseline": {"aug": "fd"}}, "baseline aug=fd is not a cell of the grid"),
    ({"baseline": {"alpha": 0.3}}, "baseline: alpha is not a grid key"),
    ({"grdi": {"aug": ["none"]}}, "grdi: Extra inputs are not permitted"),
    ({"grid": {"ssl.alhpa": [0.1]}}, "ssl.alhpa"),
])
def test_bad_specs_name_the_field(extra: dict, message: str, data: Path, tmp_path: Path, runner: CliRunner) -> None:
    spec = write_spec(tmp_path / "bad.yaml", data / "schema.yaml", **extra)
    with pytest.raises(ConfigError) as e:
        load_sweep(spec)
    assert message in e.value.line() and "bad.yaml" in e.value.line()
    r = runner.invoke(app, ["sweep", str(spec)])
    assert r.exit_code == 2 and "Error:" in r.stderr and "Traceback" not in r.stderr


def test_missing_spec_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(app, ["sweep", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "sweep spec not found" in r.stderr


def test_sweep_runs_resumes_and_summarizes(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml")
    sw = load_sweep(spec)
    # a half-finished cell: trained with a checkpoint but no summary → resumed, not restarted
    first = runner.invoke(app, ["-q", "train", str(data / "schema.yaml"), "--out", str(sw.cells[0].dir),
                                "--set", "train.steps=2", "--set", "train.batch_size=256",
                                "--set", "train.eval_queries=20", "--set", "model.hidden=[32,16]"])
    assert first.exit_code == 0, first.stderr
    (sw.cells[0].dir / "summary.json").unlink()
    assert cell_status(sw.cells[0]) == "partial"

    r = runner.invoke(app, ["-q", "sweep", str(spec), "--json"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["done"] == 4 and summary["failed"] == []
    groups = {g["group"]: g for g in summary["groups"]}
    assert set(groups) == {"aug=none", "aug=cfm"} and groups["aug=cfm"]["seeds"] == 2
    cfm = groups["aug=cfm"]
    m = cfm["metrics"]["recall@50"]
    per_seed = [json.loads((Path(d) / "eval.json").read_text())["metrics"]["recall@50"] for d in cfm["runs"]]
    assert m["mean"] == pytest.approx(np.mean(per_seed)) and m["std"] == pytest.approx(np.std(per_seed, ddof=1))
    ci = cfm["vs_baseline"]["recall@50"]
    assert ci["low"] <= ci["relative"] <= ci["high"] and cfm["baseline"] == "aug=none"
    assert "vs_baseline" not in groups["aug=none"]
    assert set(cfm["slices"]) == {"head", "tail", "cold"}
    # the resumed cell finished its 4 steps
    assert json.loads((sw.cells[0].dir / "summary.json").read_text())["steps"] == 4
    assert (tmp_path / "runs" / "s.sweep.json").exists()

    # everything done: a second run trains nothing and gives the same table
    stamps = {c.dir: (c.dir / "checkpoint.pt").stat().st_mtime_ns for c in sw.cells}
    again = runner.invoke(app, ["-q", "sweep", str(spec), "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["groups"] == summary["groups"]
    assert stamps == {c.dir: (c.dir / "checkpoint.pt").stat().st_mtime_ns for c in sw.cells}
    dry = runner.invoke(app, ["sweep", str(spec), "--dry-run", "--json"])
    assert [c["status"] for c in json.loads(dry.stdout)] == ["done"] * 4


def test_cells_are_shared_between_specs_and_changed_settings_make_new_cells(data: Path, tmp_path: Path) -> None:
    a = load_sweep(write_spec(tmp_path / "a.yaml", data / "schema.yaml"))
    b = load_sweep(write_spec(tmp_path / "b.yaml", data / "schema.yaml", grid={"seed": [0], "aug": ["cfm"]}, baseline=None))
    assert b.cells[0].dir == a.cells[2].dir  # same resolved config → same cell
    c = load_sweep(write_spec(tmp_path / "c.yaml", data / "schema.yaml", set={"train.steps": 5}))
    assert not {x.dir for x in c.cells} & {x.dir for x in a.cells}


def test_seeds_bootstrap_covers_seed_variance() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((1, 2000))
    # treatment = baseline + 10% on average, but each seed is shifted by a large random offset
    treat = base * 1.1 + rng.normal(0, 0.05, size=(5, 1)) + np.zeros((5, 2000))
    wide = seeds_bootstrap_ci(np.repeat(base, 5, 0), treat)
    narrow = seeds_bootstrap_ci(np.repeat(base, 5, 0), np.repeat(treat.mean(0, keepdims=True), 5, 0))
    assert wide["relative"] == pytest.approx(narrow["relative"])
    assert (wide["high"] - wide["low"]) > 5 * (narrow["high"] - narrow["low"])
    assert narrow["low"] <= narrow["relative"] <= narrow["high"]
    same = seeds_bootstrap_ci(base, base)
    assert same["relative"] == 0 and same["low"] == same["high"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError):
        seeds_bootstrap_ci(base, rng.random((2, 10)))


def test_overrides_out_and_seeds_reshape_the_sweep(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml", grid={"aug": ["none", "cfm"], "logq": [True, False],
                                                                        "seed": [0, 1, 2]})
    sw = load_sweep(spec, overrides=["train.steps=2"], out=tmp_path / "quick", seeds=[7])
    assert len(sw.cells) == 4
    assert {c.cfg.train.steps for c in sw.cells} == {2} and {c.cfg.train.seed for c in sw.cells} == {7}
    assert {c.cfg.train.logq_correction for c in sw.cells} == {True, False}
    assert all(c.dir.parent == tmp_path / "quick" for c in sw.cells)
    # the same from the CLI: --set wins over the spec's set, --out moves the cells
    r = runner.invoke(app, ["sweep", str(spec), "--dry-run", "--json", "--out", str(tmp_path / "o"),
                            "--set", "train.steps=3"])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 12 and all(Path(row["dir"]).parent == tmp_path / "o" for row in rows)
    assert all(row["status"] == "new" for row in rows)
    bad = runner.invoke(app, ["sweep", str(spec), "--dry-run", "--set", "train.stpes=3"])
    assert bad.exit_code == 2 and "train.stpes" in bad.stderr


def test_ann_settings_name_a_new_cell_only_when_the_sweep_uses_hnsw(data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml")
    base = load_sweep(spec).cells[0].dir
    assert load_sweep(spec, overrides=["eval.hnsw.ef=50", "eval.ann_queries=7"]).cells[0].dir == base
    assert load_sweep(spec, overrides=["eval.k=[5]"]).cells[0].dir != base
    hnsw = write_spec(tmp_path / "h.yaml", data / "schema.yaml", index="hnsw")
    assert load_sweep(hnsw).cells[0].dir != base
    assert load_sweep(hnsw, overrides=["eval.hnsw.ef=50"]).cells[0].dir != load_sweep(hnsw).cells[0].dir


@pytest.mark.parametrize("amx", [True, False])
def test_precision_is_hashed_as_what_it_trains_in(data: Path, tmp_path: Path, amx: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """auto names the cell of the precision it resolves to; fp32 keeps the names from before the setting."""
    import sslkit.training.device

    monkeypatch.setattr(sslkit.training.device, "cpu_has_native_bf16", lambda: amx)
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml")
    dirs = {p: load_sweep(spec, overrides=["train.device=cpu", f"train.precision={p}"]).cells[0].dir
            for p in ("auto", "fp32", "bf16")}
    assert dirs["fp32"] != dirs["bf16"]
    assert dirs["auto"] == dirs["bf16" if amx else "fp32"]


def test_damaged_results_are_evaluated_again(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml", grid={"aug": ["none"]}, baseline=None)
    first = runner.invoke(app, ["-q", "sweep", str(spec), "--json"])
    assert first.exit_code == 0, first.stderr
    cell = load_sweep(spec).cells[0]
    (cell.dir / "per_query.npz").write_bytes(b"garbage")
    (cell.dir / "eval.json").write_text("{}")
    r = runner.invoke(app, ["sweep", str(spec), "--json"])
    assert r.exit_code == 0 and "Traceback" not in r.stderr
    err = r.stderr.replace("\n", "")  # the console wraps long paths
    assert "per_query.npz fails its checksum" in " ".join(r.stderr.split()) and cell.dir.name in err
    assert json.loads(r.stdout)["groups"] == json.loads(first.stdout)["groups"]
    assert cell_status(cell) == "done" and "metrics" in json.loads((cell.dir / "eval.json").read_text())


def test_done_cells_are_not_reused_when_the_data_changed(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    """Reordering the pairs file (same pairs) re-splits: a done cell's result stands for the old split."""
    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml", grid={"aug": ["none"]}, baseline=None)
    assert runner.invoke(app, ["-q", "sweep", str(spec), "--json"]).exit_code == 0
    cell = load_sweep(spec).cells[0]
    stamp = (cell.dir / "eval.json").stat().st_mtime_ns
    pairs = data / "data" / "pairs.csv"
    head, *rows = pairs.read_text().splitlines()
    pairs.write_text("\n".join([head, *reversed(rows)]) + "\n")
    r = runner.invoke(app, ["sweep", str(spec), "--json"])
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())
    assert "the data changed since this cell was trained" in err and "split" in err
    assert json.loads(r.stdout)["failed"][0]["cell"] == cell.label
    assert (cell.dir / "eval.json").stat().st_mtime_ns == stamp  # nothing rewritten
    pairs.write_text("\n".join([head, *rows]) + "\n")  # the original data: the cell is reused again
    assert runner.invoke(app, ["-q", "sweep", str(spec), "--json"]).exit_code == 0


def test_numerics_version_and_sslkit_version_name_new_cells(data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells trained by other training arithmetic are never reused: they get another name."""
    import sslkit

    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml")
    before = [c.dir for c in load_sweep(spec).cells]
    monkeypatch.setattr(sslkit, "NUMERICS_VERSION", sslkit.NUMERICS_VERSION + 1)
    bumped = [c.dir for c in load_sweep(spec).cells]
    monkeypatch.setattr(sslkit, "__version__", "99.0")
    other = [c.dir for c in load_sweep(spec).cells]
    assert len(set(before) | set(bumped) | set(other)) == 3 * len(before)


def test_run_json_records_numerics_and_source(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    import sslkit

    r = runner.invoke(app, ["-q", "train", str(data / "schema.yaml"), "--out", str(tmp_path / "run"),
                            "--set", "train.steps=1", "--set", "train.batch_size=64", "--set", "model.hidden=[8]"])
    assert r.exit_code == 0, r.stderr
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["numerics"] == sslkit.NUMERICS_VERSION
    src = meta["source"]
    if shutil.which("git") and (Path(sslkit.__file__).parents[1] / ".git").exists():  # a checkout
        assert len(src["commit"]) == 40 and isinstance(src["dirty"], bool)
    else:
        assert src is None


def _seed_shift_data(rng: np.random.Generator, *, seeds: int = 5, queries: int = 200, shift: float = 0.03,
                     gain: float = 0.0, shared: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-query metrics of two arms: a per-query level, a per-seed shift (shared by seed s of both
    arms when `shared`, as the same init and batch order make them), per-(seed, query) noise."""
    mu = rng.beta(1.0, 2.5, queries)
    a = rng.normal(0, shift, (seeds, 1))
    b = a if shared else rng.normal(0, shift, (seeds, 1))
    base = mu + a + rng.normal(0, 0.05, (seeds, queries))
    treat = mu * (1 + gain) + b + rng.normal(0, 0.05, (seeds, queries))
    return base, treat


def test_paired_seeds_bootstrap_null_false_positive_rate_is_nominal() -> None:
    """A null whose per-seed shifts dominate: 5 seeds per arm, no real difference. The old
    seeds+queries bootstrap calls a difference far more often than its stated 5%."""
    rng = np.random.default_rng(0)
    old = new = 0
    reps = 150
    for r in range(reps):
        base, treat = _seed_shift_data(rng)
        c = paired_seeds_bootstrap_ci(base, treat, n_boot=300, seed=r)
        new += c["low"] > 0 or c["high"] < 0
        o = seeds_bootstrap_ci(base, treat, n_boot=300, seed=r)
        old += o["low"] > 0 or o["high"] < 0
        assert c["seeds"] == 5 and c["expansion"] > 1.2  # seeds dominate: df near S − 1
    assert old / reps > 0.10
    assert 0.01 <= new / reps <= 0.09


def test_paired_seeds_bootstrap_covers_a_known_shift_and_pairing_narrows_it() -> None:
    rng = np.random.default_rng(1)
    covered, widths, unpaired = 0, [], []
    reps = 60
    for r in range(reps):
        base, treat = _seed_shift_data(rng, gain=0.1, shared=True)
        true = treat.mean() / base.mean() - 1  # differs from 0.1 by the noise only
        c = paired_seeds_bootstrap_ci(base, treat, n_boot=300, seed=r)
        covered += c["low"] <= 0.1 <= c["high"]
        assert c["relative"] == pytest.approx(true) and c["low"] <= c["relative"] <= c["high"]
        widths.append(c["high"] - c["low"])
        o = seeds_bootstrap_ci(base, treat, n_boot=300, seed=r)
        unpaired.append(o["high"] - o["low"])
    assert covered / reps >= 0.9
    assert np.median(widths) < 0.6 * np.median(unpaired)  # the shared seed shift cancels
    with pytest.raises(ValueError, match="same non-empty"):
        paired_seeds_bootstrap_ci(base, treat[:3])


def test_t_quantile_and_expansion() -> None:
    assert t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.95, 30) == pytest.approx(1.6973, abs=1e-4)
    assert expansion_factor(1e9) == 1.0 and expansion_factor(4) == pytest.approx(1.5838, abs=1e-3)
    one_seed = paired_seeds_bootstrap_ci(np.full((1, 50), 0.5), np.linspace(0.4, 0.7, 50)[None])
    assert one_seed["df"] == pytest.approx(49) and one_seed["expansion"] < 1.05  # queries only
    rng = np.random.default_rng(3)  # 2 seeds far apart: t_1 widens a lot, but recall cannot fall below -100%
    wide = paired_seeds_bootstrap_ci(rng.random((2, 50)), rng.random((2, 50)) * np.array([[0.1], [1.9]]))
    assert wide["expansion"] > 3 and wide["low"] == -1.0 and wide["high"] > 0  # clipped


def test_null_false_positive_rate_over_splits_of_runs() -> None:
    rng = np.random.default_rng(2)
    runs = rng.beta(1.0, 2.5, 100) + rng.normal(0, 0.03, (8, 1)) + rng.normal(0, 0.05, (8, 100))
    res = null_false_positive_rate(runs, n_boot=200)
    assert (res["runs"], res["arm_size"], res["replicates"]) == (8, 4, 35)  # C(8,4) / 2 splits
    assert res["false_positives"] == round(res["rate"] * 35) and res["nominal"] == pytest.approx(0.05)
    shifted = runs + np.where(np.arange(8) < 4, 0.3, 0.0)[:, None]  # not a null: some split sees it
    assert null_false_positive_rate(shifted, n_boot=200)["false_positives"] >= 1
    with pytest.raises(ValueError, match=">= 4 runs"):
        null_false_positive_rate(runs[:3])


def study_spec(path: Path, schema: Path, **extra: object) -> Path:
    spec = {"schema": str(schema), "out": "runs",
            "set": {"train.steps": 3, "train.batch_size": 256, "train.eval_queries": 20, "model.hidden": [16],
                    "split.validation_fraction": 0.2},
            "arms": {"none": {"set": {"aug": "none"}},
                     "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": [0.01, 0.1, 1.0], "dropout": [0.1, 0.5]}},
                     "cfm_pop": {"from": "cfm", "set": {"ssl.item_sampling": "popularity"}}},
            "tune": {"budget": 3, "metric": "recall@10", "space": {"lr": [0.05, 0.1, 0.2]}},
            "seeds": [0, 1], "baseline": "none", **extra}
    path.write_text(json.dumps(spec))
    return path


def test_study_plans_equal_budgets_and_draws_the_same_cells_in_every_spec(data: Path, tmp_path: Path) -> None:
    sw = load_sweep(study_spec(tmp_path / "s.yaml", data / "schema.yaml"))
    none, cfm, pop = (sw.arms[a] for a in ("none", "cfm", "cfm_pop"))
    assert (len(none.tuning), len(cfm.tuning), len(pop.tuning)) == (3, 3, 0)  # derived arms are not tuned
    assert (none.grid_size, none.sampled, cfm.grid_size, cfm.sampled) == (3, False, 18, True)
    assert {c.split for c in sw.cells} == {"validation"} and {c.stage for c in sw.cells} == {"tune"}
    assert [c.values["lr"] for c in none.tuning] == [0.05, 0.1, 0.2]
    assert all(c.cfg.ssl.aug == "cfm" and c.cfg.train.seed == 0 for c in cfm.tuning)
    assert len({c.dir for c in cfm.tuning}) == 3
    # another spec with the same arm draws the same subset (its cells are shared); another sample_seed does not
    other = load_sweep(study_spec(tmp_path / "o.yaml", data / "schema.yaml",
                                  arms={"cfm": {"set": {"aug": "cfm"}, "space": {"alpha": [0.01, 0.1, 1.0],
                                                                               "dropout": [0.1, 0.5]}}},
                                  baseline="cfm"))
    assert [c.dir for c in other.arms["cfm"].tuning] == [c.dir for c in cfm.tuning]
    small = load_sweep(study_spec(tmp_path / "r.yaml", data / "schema.yaml"), budget=2, seeds=[4, 5])
    assert [len(small.arms[a].tuning) for a in ("none", "cfm")] == [2, 2] and small.arms["none"].sampled
    assert {c.cfg.train.seed for c in small.cells} == {4}  # tuning seed: the first of seeds
    with pytest.raises(ConfigError, match="fewer than tune.budget 5"):
        load_sweep(study_spec(tmp_path / "r.yaml", data / "schema.yaml"), budget=5)


@pytest.mark.parametrize("extra, message", [
    ({"set": {"train.steps": 3, "split.validation_fraction": 0}}, "selection would have to read the test split"),
    ({"tune": {"budget": 3, "split": "test", "space": {"lr": [0.1, 0.2, 0.3]}}}, "selection always reads the validation"),
    ({"tune": {"budget": 4, "space": {"lr": [0.05, 0.1, 0.2]}}}, "arms.none: its search space has 3 cells, fewer than tune.budget 4"),
    ({"tune": {"budget": 3, "metric": "recall@7", "space": {"lr": [0.05, 0.1, 0.2]}}}, "tune.metric: 'recall@7' is not computed"),
    ({"baseline": "fd"}, "baseline: name one of the arms"),
    ({"arms": {"none": {"set": {"aug": "none"}, "space": {"fraction": [0.5, 1.0, 0.2]}}}}, "fraction cannot vary"),
    ({"arms": {"none": {"set": {"aug": "none"}}, "x": {"from": "y"}}}, "arms.x.from: name a tuned arm"),
    ({"grid": {"aug": ["none"]}}, "give either 'grid'"),
    ({"null_seeds": [1]}, "null_seeds: distinct seeds not among 'seeds'"),
])
def test_bad_studies_name_the_field(extra: dict, message: str, data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_sweep(study_spec(tmp_path / "bad.yaml", data / "schema.yaml", **extra))
    assert message in e.value.line() and "bad.yaml" in e.value.line()


def test_selection_reads_validation_only(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation prefers lr 0.05, test prefers lr 0.2: the pick is lr 0.05, no tuning cell is scored
    on test before the pick, and select_best refuses test results outright."""
    import types

    import sslkit.evaluation.evaluate
    import sslkit.training.train
    from sslkit.study.tuning import planned_cells, select_best

    calls: list[tuple[str, str]] = []

    def fake_train(cfg: object, *, run_dir: Path, **_: object) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps({"train_seconds": 0.1}))
        (run_dir / "config.json").write_text(json.dumps({"lr": cfg.train.lr, "seed": cfg.train.seed}))

    def fake_eval(run_dir: Path, *, split: str, **_: object) -> object:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        calls.append((split, Path(run_dir).name))
        score = (0.3 - cfg["lr"]) if split == "validation" else cfg["lr"]  # opposite preferences
        per_query = {m: np.full(10, score) + 0.001 * cfg["seed"] for m in ("recall@10", "recall@50", "map@10", "map@50")}
        metrics = {m: float(v.mean()) for m, v in per_query.items()}
        body = {"split": split, "metrics": metrics, "slices": {}, "toppop": {}}
        (Path(run_dir) / ("eval.json" if split == "test" else "eval.validation.json")).write_text(json.dumps(body))
        return types.SimpleNamespace(queries=np.arange(10), per_query=per_query, slice_per_query={})

    monkeypatch.setattr(sslkit.training.train, "run_training", fake_train)
    monkeypatch.setattr(sslkit.evaluation.evaluate, "evaluate_run", fake_eval)
    sw = load_sweep(study_spec(tmp_path / "s.yaml", data / "schema.yaml",
                               arms={"none": {"set": {"aug": "none"}}}, null_seeds=[2, 3]))
    assert len(planned_cells(sw)) == 3  # before tuning, the picks are unknown
    results, failed = run_sweep(sw)
    assert not failed
    assert sw.selected["none"]["lr"] == 0.05
    again = load_sweep(sw.path, null_seeds=[2, 3])
    plan = planned_cells(again)  # --dry-run: the picks' seeds and null seeds once tuning is done
    assert [c.stage for c in plan] == ["tune"] * 3 + ["final"] * 2 + ["null"] * 2
    assert {c.values["lr"] for c in plan[3:]} == {0.05}
    first_test = [s for s, _ in calls].index("test")
    assert all(s == "validation" for s, _ in calls[:first_test]) and len(calls[:first_test]) == 3
    assert all(s == "test" for s, _ in calls[first_test:])
    summary = summarize_sweep(sw, results, n_boot=50)
    assert summary["arms"]["none"]["selected"] == {"aug": "none", "lr": 0.05}
    assert summary["arms"]["none"]["selected_validation"] == pytest.approx(0.25)
    assert sorted(t["validation"]["recall@10"] for t in summary["tuning"]) == pytest.approx([0.1, 0.2, 0.25])
    assert summary["selection"]["split"] == "validation" and summary["null_check"]["runs"] == 4
    test_results = [r for r in results if r.split == "test"]
    with pytest.raises(ValueError, match="validation results only"):
        select_best({"none": test_results}, "recall@10")


def test_tuning_subsets_are_balanced_distinct_and_seeded() -> None:
    from sslkit.study.tuning import draw_cells as _draw

    space = {"lr": [0.02, 0.05, 0.1, 0.2], "temperature": [0.1, 0.2, 0.3], "logq": [True, False],
             "alpha": [0.01, 0.03, 0.1, 0.3, 1.0], "dropout": [0.1, 0.3, 0.5]}
    cells = _draw("cfm", space, 6, 0)
    assert len({json.dumps(c, sort_keys=True) for c in cells}) == 6
    assert sorted(sum(c["logq"] for c in cells) for _ in [0]) == [3]  # 2 values over 6 cells: 3 each
    assert all(sum(c["temperature"] == t for c in cells) == 2 for t in space["temperature"])
    assert len({c["alpha"] for c in cells}) == 5  # 5 values over 6 cells: each at least once
    assert _draw("cfm", space, 6, 0) == cells and _draw("so", space, 6, 0) != cells
    assert _draw("cfm", space, 6, 1) != cells
    assert len(_draw("x", {"a": [1, 2, 3]}, 3, 0)) == 3


def test_a_cell_locked_by_another_process_is_waited_for_not_failed(data: Path, tmp_path: Path) -> None:
    """Two sweeps of one spec share the work: a locked cell is skipped, then read once its holder ends."""
    import threading

    from sslkit.data import io

    spec = write_spec(tmp_path / "s.yaml", data / "schema.yaml", grid={"aug": ["none"], "seed": [0, 1]})
    sw = load_sweep(spec)
    held, release, order = threading.Event(), threading.Event(), []

    def other_process() -> None:  # a flock on another open file description conflicts like another process
        with io.dir_lock(sw.cells[0].dir):
            held.set()
            release.wait(30)
            order.append("released")

    t = threading.Thread(target=other_process)
    t.start()
    held.wait(10)

    def on_event(kind: str, p: dict) -> None:
        if kind == "cell":
            order.append(p["label"])
            if p["index"] == 1:  # cell 0 was skipped: let its holder finish now
                release.set()

    results, failed = run_sweep(sw, on_event=on_event)
    t.join()
    assert failed == []
    assert order[:3] == ["aug=none,seed=0", "aug=none,seed=1", "released"]
    assert sorted(r.cell.label for r in results) == ["aug=none,seed=0", "aug=none,seed=1"]
    assert all(cell_status(c) == "done" for c in sw.cells)
