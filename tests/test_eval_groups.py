"""`sslkit eval RUN…` groups runs that differ only by seed and compares groups, saying what each CI covers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.cli import app
from sslkit.evaluation.evaluate import group_label


def ok(runner: CliRunner, *args: object) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.stderr + r.stdout
    return r.stdout


@pytest.fixture(scope="module")
def seed_runs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """none and cfm with seeds 0 and 1, plus a seed-0 none run on a catalog with 20 fewer items."""
    root = tmp_path_factory.mktemp("seedruns")
    shutil.copytree(tiny_dir, root / "ds", ignore=shutil.ignore_patterns(".sslkit-cache", "runs"))
    small = root / "small"
    shutil.copytree(root / "ds", small)
    lines = (small / "data/items.csv").read_text().splitlines(keepends=True)
    (small / "data/items.csv").write_text("".join(lines[:-20]))
    runner = CliRunner()
    long = "a-rather-long-experiment-name-that-a-narrow-table-would-cut-off"
    for schema, name, aug, seed in [(root / "ds", f"{long}-none-s0", "none", 0), (root / "ds", f"{long}-none-s1", "none", 1),
                                    (root / "ds", "cfm-s0", "cfm", 0), (root / "ds", "cfm-s1", "cfm", 1),
                                    (small, "small-none-s0", "none", 0)]:
        ok(runner, "-q", "train", schema / "schema.yaml", "--aug", aug, "--seed", seed, "--steps", "4",
           "--batch-size", "128", "--out", root / "runs" / name)
    return root / "runs"


def test_eval_groups_seeds_and_keeps_different_data_apart(seed_runs: Path, runner: CliRunner) -> None:
    long = "a-rather-long-experiment-name-that-a-narrow-table-would-cut-off"
    runs = [seed_runs / f"{long}-none-s0", seed_runs / f"{long}-none-s1", seed_runs / "cfm-s0",
            seed_runs / "cfm-s1", seed_runs / "small-none-s0"]
    obj = json.loads(ok(runner, "-q", "eval", *runs, "--json"))
    groups = {tuple(Path(r).name for r in g["runs"]): g for g in obj["comparison"]["groups"]}
    # the small-catalog run has seed 0 and config of the none group, but other data: its own group
    assert set(groups) == {(f"{long}-none-s0", f"{long}-none-s1"), ("cfm-s0", "cfm-s1"), ("small-none-s0",)}
    g = groups[("cfm-s0", "cfm-s1")]
    assert g["seeds"] == [0, 1] and g["group"].endswith("cfm-s{0,1}")
    per_run = {Path(r["run"]).name: r["metrics"]["recall@50"] for r in obj["runs"]}
    assert g["metrics"]["recall@50"]["mean"] == pytest.approx((per_run["cfm-s0"] + per_run["cfm-s1"]) / 2)
    assert g["metrics"]["recall@50"]["std"] == pytest.approx(np.std([per_run["cfm-s0"], per_run["cfm-s1"]], ddof=1))


def test_baseline_run_compares_against_its_seed_group(seed_runs: Path, runner: CliRunner,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--baseline names one run; the comparison is group vs group, paired seed by seed."""
    long = "a-rather-long-experiment-name-that-a-narrow-table-would-cut-off"
    monkeypatch.chdir(seed_runs.parent)
    seed_runs = Path("runs")
    args = [seed_runs / "cfm-s0", seed_runs / "cfm-s1", seed_runs / f"{long}-none-s1",
            "--baseline", seed_runs / f"{long}-none-s0"]
    obj = json.loads(ok(runner, "-q", "eval", *args, "--json"))["comparison"]
    assert len(obj["vs_baseline"]) == 1  # the other none seed is part of the baseline group, not a row
    row = obj["vs_baseline"][0]
    assert [Path(r).name for r in row["runs"]] == ["cfm-s0", "cfm-s1"]
    assert row["resamples"] == "queries+seeds" and row["paired_seeds"] == [0, 1]
    assert row["recall@50"]["seeds"] == 2 and row["recall@50"]["expansion"] >= 1  # metrics.paired_seeds_bootstrap_ci
    assert row["recall@50"]["low"] <= row["recall@50"]["relative"] <= row["recall@50"]["high"]
    assert "seed s of one group paired with seed s" in obj["ci_covers"]["queries+seeds"]
    assert "one-sided" in obj["p_value"] and "two-sided" in obj["p_value"]
    table = ok(runner, "-q", "eval", *args)
    assert "Seed groups" in table and "queries+seeds" in table and "± " in table
    assert "…" not in table  # long names wrap (fold) instead of being cut with an ellipsis
    assert f"{long}-none-s0" in table and f"{long}-none-s1" in table and "cfm-s{0,1}" in table


def test_single_seed_comparison_carries_the_caveat(seed_runs: Path, runner: CliRunner) -> None:
    base = seed_runs / "a-rather-long-experiment-name-that-a-narrow-table-would-cut-off-none-s0"
    obj = json.loads(ok(runner, "-q", "eval", seed_runs / "cfm-s0", "--baseline", base, "--json"))["comparison"]
    assert [r["resamples"] for r in obj["vs_baseline"]] == ["queries"]
    table = ok(runner, "-q", "eval", seed_runs / "cfm-s0", "--baseline", base)
    assert "queries: bootstrap over test queries only" in table and "NOT evidence" in table
    # runs on other data (another catalog, so other test queries) are refused, not compared
    r = runner.invoke(app, ["-q", "eval", str(seed_runs / "cfm-s0"), "--baseline", str(seed_runs / "small-none-s0")])
    assert r.exit_code == 1 and "evaluated on different test queries" in r.stderr


def test_group_label() -> None:
    assert group_label(["runs/ml-cfm-s0", "runs/ml-cfm-s1"]) == "runs/ml-cfm-s{0,1}"
    assert group_label(["runs/a"]) == "runs/a"
    assert group_label(["r/x-s3-fp32", "r/x-s12-fp32"]) == "r/x-s{3,12}-fp32"
