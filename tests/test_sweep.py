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
    assert set(cfm["slices"]) == {"head", "tail", "cold", "novel"}
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
    assert "eval.json fails its checksum" in " ".join(r.stderr.split()) and cell.dir.name in err
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
    """A two-stage study: backbone (lr, τ) on the baseline, then CFM's own knobs at its pick."""
    spec = {"schema": str(schema), "out": "runs",
            "set": {"train.steps": 3, "train.batch_size": 256, "train.eval_queries": 20, "model.hidden": [16],
                    "split.validation_fraction": 0.2},
            "backbone": {"space": {"lr": {"log_uniform": [0.02, 0.3]}, "temperature": [0.1, 0.2]}},
            "arms": {"none": {"set": {"aug": "none"}},
                     "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": {"log_uniform": [0.01, 1.0]},
                                                              "dropout": {"uniform": [0.1, 0.7]}}},
                     "cfm_pop": {"from": "cfm", "set": {"ssl.item_sampling": "popularity"}},
                     "none_no_logq": {"from": "none", "set": {"logq": False}}},
            "tune": {"budget": 3, "metric": "recall@10", "replicates": 3},
            "seeds": [0, 1], "baseline": "none", **extra}
    path.write_text(json.dumps(spec))
    return path


def joint_spec(path: Path, schema: Path, **extra: object) -> Path:
    spec = json.loads(study_spec(path, schema).read_text())
    del spec["backbone"]
    spec.update(protocol="joint", tune={"budget": 3, "metric": "recall@10", "replicates": 2,
                                        "space": {"lr": [0.05, 0.1, 0.2]}}, **extra)
    path.write_text(json.dumps(spec))
    return path


def _trials(sw: object, arm: str) -> dict[int, list[tuple[str, dict]]]:
    return {r: [(str(c.dir), c.values) for c in cells] for r, cells in sw.arms[arm].trials.items()}  # type: ignore[attr-defined]


def test_budgets_are_nested_per_arm_and_replicate(data: Path, tmp_path: Path) -> None:
    """Budget B's trials are budget B + 1's first B, for every arm and replicate (the same cells, so a
    larger budget reuses them and best-so-far is monotone); replicates draw different sequences."""
    from sslkit.study.tuning import ssl_trials

    def plan(budget: int) -> object:
        sw = load_sweep(study_spec(tmp_path / "s.yaml", data / "schema.yaml"), budget=budget)
        sw.picks = {("none", r): {"aug": "none", "lr": 0.05, "temperature": 0.1} for r in range(3)}
        ssl_trials(sw)  # stage 2 at a given backbone pick
        return sw

    small, big = plan(2), plan(3)
    for arm in ("none", "cfm"):
        a, b = _trials(small, arm), _trials(big, arm)
        assert set(a) == set(b) == {0, 1, 2}
        for r in a:
            assert len(a[r]) == 2 and len(b[r]) == 3 and b[r][:2] == a[r]
        assert a[0] != a[1] != a[2]  # each replicate its own sequence
    joint2 = load_sweep(joint_spec(tmp_path / "j.yaml", data / "schema.yaml"), budget=2)
    joint3 = load_sweep(joint_spec(tmp_path / "j.yaml", data / "schema.yaml"), budget=3)
    for arm in ("none", "cfm"):
        assert all(_trials(joint3, arm)[r][:2] == _trials(joint2, arm)[r] for r in (0, 1))
    # continuous knobs stay inside their ranges; a list knob takes its values; derived arms are not tuned
    vals = [v for cells in _trials(big, "cfm").values() for _, v in cells]
    assert all(0.01 <= v["alpha"] <= 1.0 and 0.1 <= v["dropout"] <= 0.7 and v["lr"] == 0.05 for v in vals)
    assert {v["temperature"] for cells in _trials(big, "none").values() for _, v in cells} == {0.1, 0.2}
    assert (big.arms["cfm_pop"].stage, big.arms["cfm_pop"].trials) == ("derived", {})


def test_sequences_are_seeded_nested_and_distinct() -> None:
    from sslkit.study.tuning import trial_values

    space = {"lr": {"log_uniform": [0.01, 0.3]}, "temperature": [0.05, 0.1, 0.2], "hidden": {"int": [16, 64]},
             "dropout": {"uniform": [0.1, 0.7]}}
    ten = trial_values("cfm", 0, space, 10, 0)
    assert all(trial_values("cfm", 0, space, b, 0) == ten[:b] for b in range(1, 10))
    assert trial_values("cfm", 1, space, 10, 0) != ten and trial_values("so", 0, space, 10, 0) != ten
    assert trial_values("cfm", 0, space, 10, 1) != ten
    assert len({json.dumps(v, sort_keys=True) for v in ten}) == 10
    assert all(isinstance(v["hidden"], int) and 16 <= v["hidden"] <= 64 for v in ten)
    assert {v["temperature"] for v in ten} == {0.05, 0.1, 0.2}  # a scrambled Sobol sequence spreads a list's values
    small = {"lr": [0.05, 0.1], "logq": [True, False]}  # 4 cells: budget 4 is the whole grid, without repeats
    assert sorted(json.dumps(v, sort_keys=True) for v in trial_values("x", 0, small, 4, 0)) == sorted(
        json.dumps({"lr": a, "logq": b}, sort_keys=True) for a in (0.05, 0.1) for b in (True, False))
    with pytest.raises(ValueError, match="4 cells, fewer than the budget 5"):
        trial_values("x", 0, small, 5, 0)


def test_final_seeds_are_disjoint_from_tuning_seeds(data: Path, tmp_path: Path) -> None:
    sw = load_sweep(study_spec(tmp_path / "s.yaml", data / "schema.yaml"))
    tuning = {c.cfg.train.seed for c in sw.cells}
    assert tuning == {1000, 1001, 1002}  # one tuning seed per replicate
    for r in range(3):
        assert {c.cfg.train.seed for c in sw.arms["none"].trials[r]} == {1000 + r}
    sw.picks = {(a, r): {"aug": "none", "lr": 0.05, "temperature": 0.1} for a in ("none",) for r in range(3)}
    from sslkit.study.tuning import later_cells, ssl_trials

    for c in ssl_trials(sw):
        sw.picks[(c.arm, c.replicate)] = {k: v for k, v in c.values.items() if k != "seed"}
    finals = later_cells(sw)
    assert {c.stage for c in finals} == {"final"} and len(finals) == 4 * 3 * 2  # arms x replicates x seeds
    assert {c.cfg.train.seed for c in finals} == {0, 1} and not tuning & {c.cfg.train.seed for c in finals}
    for seeds, extra in (([0, 1000], {}), ([0, 1], {"null_seeds": [2, 1001]}),
                         ([0, 1], {"tune": {"budget": 3, "seeds": [7, 8, 1], "replicates": 3}})):
        with pytest.raises(ConfigError, match="is also a final seed .* disjoint from every tuning seed"):
            load_sweep(study_spec(tmp_path / "bad.yaml", data / "schema.yaml", seeds=seeds, **extra))


def test_cells_are_shared_between_specs_and_budgets(data: Path, tmp_path: Path) -> None:
    """An arm's trials depend on its name, space, replicate and sample_seed: another spec with the same
    arm trains the same cells (their directories are reused)."""
    sw = load_sweep(study_spec(tmp_path / "s.yaml", data / "schema.yaml"))
    other = load_sweep(study_spec(tmp_path / "o.yaml", data / "schema.yaml",
                                  arms={"none": {"set": {"aug": "none"}}}))
    assert _trials(other, "none") == _trials(sw, "none")
    moved = load_sweep(study_spec(tmp_path / "m.yaml", data / "schema.yaml",
                                  tune={"budget": 3, "metric": "recall@10", "sample_seed": 1}))
    assert _trials(moved, "none") != _trials(sw, "none")


@pytest.mark.parametrize("extra, message", [
    ({"set": {"train.steps": 3, "split.validation_fraction": 0}}, "selection would have to read the test split"),
    ({"tune": {"budget": 3, "split": "test"}}, "selection always reads the validation"),
    ({"tune": {"budget": 3, "seed": 0}}, "tune.seed is now tune.seeds"),
    ({"tune": {"budget": 3, "replicates": 2, "seeds": [5]}}, "tune: seeds: 2 distinct seeds, one per replicate"),
    ({"tune": {"budget": 3, "search": "grid"}}, "'grid' is not one of sequence, successive-halving"),
    ({"tune": {"budget": 3, "metric": "recall@7"}}, "tune.metric: 'recall@7' is not computed"),
    ({"tune": {"budget": 3, "space": {"lr": [0.1, 0.2, 0.3]}}}, "tune.space: the joint protocol's shared space"),
    ({"backbone": {"space": {"lr": [0.05, 0.1]}}}, "backbone.space: its search space has 2 cells, fewer than the budget 3"),
    ({"backbone": {"space": {"lr": {"log_uniform": [0, 1]}}}}, "backbone.space: lr: log_uniform: lo must be > 0"),
    ({"backbone": {"space": {"lr": {"uniform": [0.3, 0.1]}}}}, "lr: uniform: lo 0.3 must be below hi 0.1"),
    ({"backbone": {"space": {"lr": {"normal": [0, 1]}}}}, "lr: expected a list of values or one of"),
    ({"backbone": {"space": {"lr": [0.1, 0.2, 0.3]}, "budjet": 2}}, "backbone.budjet: Extra inputs are not permitted"),
    ({"backbone": None}, "a two-stage study needs backbone"),
    ({"protocol": "nested"}, "protocol: 'nested' is not one of two-stage, joint"),
    ({"protocol": "joint"}, "backbone: only for protocol: two-stage"),
    ({"arms": {"none": {"set": {"aug": "none"}, "space": {"dropout": [0.1, 0.2, 0.3]}}}}, "the baseline is tuned in backbone.space"),
    ({"arms": {"none": {"set": {"aug": "none"}}, "cfm": {"set": {"aug": "cfm"}, "space": {"lr": [1, 2, 3]}}}},
     "arms.cfm.space: lr is a backbone knob"),
    ({"arms": {"none": {"set": {"aug": "none"}}, "cfm": {"set": {"aug": "cfm"}, "space": {"alpha": [0.1, 1.0]}}}},
     "arms.cfm: its search space has 2 cells, fewer than the budget 3"),
    ({"baseline": "fd"}, "baseline: name one of the arms"),
    ({"arms": {"none": {"set": {"aug": "none"}}, "x": {"set": {"aug": "cfm"}, "space": {"fraction": [0.5, 1.0, 0.2]}}}},
     "fraction cannot vary"),
    ({"arms": {"none": {"set": {"aug": "none"}}, "x": {"from": "y"}}}, "arms.x.from: name a tuned arm"),
    ({"grid": {"aug": ["none"]}}, "give either 'grid'"),
    ({"null_seeds": [1]}, "null_seeds: distinct seeds not among 'seeds'"),
])
def test_bad_studies_name_the_field(extra: dict, message: str, data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_sweep(study_spec(tmp_path / "bad.yaml", data / "schema.yaml", **extra))
    assert message in e.value.line() and "bad.yaml" in e.value.line()
    assert "\n" not in e.value.line()


def _fake_training(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, str]], score: object) -> None:
    """Training that writes a summary and evaluation that scores a run by `score(cfg, split)`."""
    import types

    import sslkit.evaluation.evaluate
    import sslkit.training.train

    def fake_train(cfg: object, *, run_dir: Path, **_: object) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps({"train_seconds": 0.1, "steps": 3}))
        (run_dir / "config.json").write_text(json.dumps({"lr": cfg.train.lr, "seed": cfg.train.seed,
                                                         "aug": cfg.ssl.aug, "alpha": cfg.ssl.alpha}))

    def fake_eval(run_dir: Path, *, split: str, **_: object) -> object:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        calls.append((split, Path(run_dir).name))
        v = score(cfg, split)  # type: ignore[operator]
        noise = 0.001 * cfg["seed"] if split == "test" else 0.0
        per_query = {m: np.full(10, v) + noise for m in ("recall@10", "recall@50", "map@10", "map@50")}
        metrics = {m: float(x.mean()) for m, x in per_query.items()}
        body = {"split": split, "metrics": metrics, "slices": {}, "toppop": {"recall@10": 0.01, "recall@50": 0.02}}
        (Path(run_dir) / ("eval.json" if split == "test" else "eval.validation.json")).write_text(json.dumps(body))
        return types.SimpleNamespace(queries=np.arange(10), per_query=per_query, slice_per_query={})

    monkeypatch.setattr(sslkit.training.train, "run_training", fake_train)
    monkeypatch.setattr(sslkit.evaluation.evaluate, "evaluate_run", fake_eval)


def test_selection_reads_validation_only(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation prefers lr 0.05, test prefers lr 0.2: each replicate picks lr 0.05, no trial is scored
    on test before the picks, the preregistration is written before test is read, and select_best
    refuses test results outright."""
    from sslkit.study.tuning import planned_cells, prereg_path, select_best

    calls: list[tuple[str, str]] = []
    prereg_seen: list[bool] = []
    _fake_training(monkeypatch, calls, lambda cfg, split: (0.3 - cfg["lr"]) if split == "validation" else cfg["lr"])
    sw = load_sweep(joint_spec(tmp_path / "s.yaml", data / "schema.yaml", arms={"none": {"set": {"aug": "none"}}},
                               null_seeds=[2, 3]))
    assert len(planned_cells(sw)) == 6  # 2 replicates x 3 trials; the picks are unknown before tuning
    results, failed = run_sweep(sw, on_event=lambda k, p: prereg_seen.append(prereg_path(sw).exists())
                                if p["split"] == "test" and p["status"] == "new" else None)
    assert not failed and prereg_seen and all(prereg_seen)
    assert sw.picks[("none", 0)]["lr"] == sw.picks[("none", 1)]["lr"] == 0.05
    again = load_sweep(sw.path, null_seeds=[2, 3])
    plan = planned_cells(again)  # --dry-run: the picks' seeds and null seeds once tuning is done
    assert [c.stage for c in plan] == ["tune"] * 6 + ["final"] * 2 + ["null"] * 2 + ["final"] * 2
    assert {c.values["lr"] for c in plan[6:]} == {0.05}
    first_test = [s for s, _ in calls].index("test")
    assert all(s == "validation" for s, _ in calls[:first_test]) and len(calls[:first_test]) == 6
    assert all(s == "test" for s, _ in calls[first_test:])
    summary = summarize_sweep(sw, results, n_boot=50)
    reps = summary["arms"]["none"]["replicates"]
    assert [r["pick"] for r in reps] == [{"lr": 0.05}, {"lr": 0.05}]
    assert reps[0]["validation"] == pytest.approx(0.25)
    assert sorted(t["validation"]["recall@10"] for t in summary["tuning"]) == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.25, 0.25])
    assert summary["selection"]["split"] == "validation" and summary["null_check"]["comparisons"] >= 1
    assert summary["protocol"]["name"] == "joint" and "user with 3 runs" in summary["protocol"]["question"]
    pre = summary["preregistration"]
    assert not pre["rerun"] and len(pre["spec_sha256"]) == 64 and pre["recorded_at"]
    test_results = [r for r in results if r.split == "test"]
    with pytest.raises(ValueError, match="validation results only"):
        select_best({"none": test_results}, "recall@10")


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
