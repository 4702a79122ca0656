"""Every input bounded: pair rules, sweep specs, composite ids — one line, never an allocator abort."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return " ".join(stderr.split())


def event_log(tmp_path: Path, pairs: dict, *, users: int = 1, events: int = 20_000) -> Path:
    """One long timeline per user over 300 items, and a schema building pairs from it."""
    rng = np.random.default_rng(0)
    n = users * events
    pl.DataFrame({"user_id": np.repeat([f"u{u}" for u in range(users)], events), "item_id": rng.integers(0, 300, n).astype(str),
                  "ts": np.arange(n)}).write_csv(tmp_path / "log.csv")
    schema = {"interactions": {"path": "log.csv", "item": "item_id", "time": "ts", "pairs": pairs},
              "items": {"features": {"item_id": {"type": "categorical"}}}}
    (tmp_path / "schema.yaml").write_text(json.dumps(schema))
    return tmp_path / "schema.yaml"


def test_huge_next_window_is_one_line_not_an_abort(tmp_path: Path) -> None:
    """window 100,000,000 on one 20,000-event user asked for ~2·10⁸ pairs and died in the allocator (exit 134)."""
    schema = event_log(tmp_path, {"rule": "next", "group": "user_id", "window": 100_000_000})
    proc = subprocess.run([sys.executable, "-m", "sslkit", "-q", "profile", str(schema)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-400:])
    assert "interactions.pairs.window: Input should be less than or equal to 1000" in one_line(proc.stderr)


@pytest.mark.parametrize("pairs, what", [
    ({"rule": "next", "group": "user_id", "window": 1000}, "interactions.pairs (next, window 1,000) would build 19,499,500 pairs"),
    ({"rule": "co_occurrence", "group": "user_id", "max_items": 100_000},
     "interactions.pairs (co_occurrence, max_items 100,000) would build 89,700 pairs"),
])
def test_pairs_beyond_memory_are_refused_before_they_are_built(pairs: dict, what: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sslkit.data import events

    monkeypatch.setattr(events, "physical_memory", lambda: 2 * 2**20)  # a 2 MiB machine
    schema = event_log(tmp_path, pairs)
    r = CliRunner().invoke(app, ["-q", "profile", str(schema)])
    assert r.exit_code == 1 and what in one_line(r.stderr) and "this machine's" in r.stderr, r.stderr
    assert not (tmp_path / ".sslkit-cache").exists()


BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    ("a: &a [64, 64, 64, 64, 64, 64, 64, 64, 64]\n" + BOMB + "schema: schema.yaml\ngrid: {aug: [none]}\nset: {model.hidden: *i}\n",
     "aliases expand to more than 100,000 values"),
    ("schema: schema.yaml\ngrid: {aug: [none]}\ngrid: {aug: [cfm]}\n", "duplicate key 'grid' at lines 2 and 3"),
    ("schema: schema.yaml\nset: " + "[" * 200, "nested deeper than 64 levels"),
    ("schema: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
])
def test_sweep_spec_is_read_by_the_bounded_loader(text: str, message: str, tmp_path: Path) -> None:
    """An alias bomb in `set:` took 75-82 s and 4.5 GB, then blamed model.hidden."""
    (tmp_path / "spec.yaml").write_text(text)
    r = CliRunner().invoke(app, ["-q", "sweep", str(tmp_path / "spec.yaml"), "--dry-run"])
    assert r.exit_code == 2 and message in one_line(r.stderr), r.stderr


def test_oversized_sweep_spec(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("schema: schema.yaml\n" + "#" * (1 << 20))
    r = CliRunner().invoke(app, ["-q", "sweep", str(tmp_path / "spec.yaml"), "--dry-run"])
    assert r.exit_code == 2 and "sweep spec is larger than 1024 KiB" in one_line(r.stderr)
