"""What sslkit prints: logs that survive a pipe or a log file intact, and user text printed literally."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_logs_to_a_file_are_one_line_per_event_never_cut(data: Path, tmp_path: Path) -> None:
    deep = tmp_path / ("a-directory-with-a-long-name-" * 6) / "schema-dir"  # the cache path: > 200 characters
    deep.parent.mkdir(parents=True)
    data.rename(deep)
    log = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    with open(log, "w") as fh:
        r = subprocess.run([sys.executable, "-m", "sslkit", "profile", str(deep / "schema.yaml")], stderr=fh,
                           stdout=subprocess.DEVNULL, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0
    lines = log.read_text().splitlines()
    cache = next(line for line in lines if line.startswith("feature store:"))
    assert len(cache) > 200 and str(deep / ".sslkit-cache") in cache  # the whole path on the event's own line
    assert all(line.strip() for line in lines)  # no wrapped continuation or blank lines


def test_user_text_is_printed_literally_no_markup_no_emoji(data: Path, tmp_path: Path, runner: CliRunner) -> None:
    r = runner.invoke(app, ["report", str(tmp_path / "[bold]:x: runs")])
    assert r.exit_code == 1 and "[bold]:x: runs: no such file or directory" in r.stderr and "❌" not in r.stderr
    items = pl.read_csv(data / "data/items.csv")
    items.with_columns(pl.lit(":x: [red]odd[/red]").alias("category")).write_csv(data / "data/items.csv")
    r = runner.invoke(app, ["profile", str(data / "schema.yaml")])
    assert r.exit_code == 0, r.stderr
    assert ":x: [red]odd[/red]" in r.stdout and "❌" not in r.stdout
