"""Config errors: a misspelled section says "did you mean"; cross-key checks exit 2 and name the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _schema(tmp_path: Path, edit: str, new: str) -> Path:
    text = (ROOT / "examples/synthetic/schema.yaml").read_text().replace("data/", str(ROOT / "examples/synthetic/data") + "/")
    assert edit in text
    path = tmp_path / "schema.yaml"
    path.write_text(text.replace(edit, new))
    return path


@pytest.mark.parametrize("edit, new, expected", [
    ("interactions:", "interaction:", "interaction: unknown key 'interaction' — did you mean 'interactions'?"),
    ("\nitems:", "\nitem:", "item: unknown key 'item' — did you mean 'items'?"),
    ("  item: item_id ", "  itme: item_id ", "interactions.itme: unknown key 'itme' — did you mean 'item'?"),
    ("  query: query_item ", "  quer: query_item ", "interactions.quer: unknown key 'quer' — did you mean 'query'?"),
])
def test_misspelled_required_key_says_did_you_mean(tmp_path: Path, edit: str, new: str, expected: str) -> None:
    schema = _schema(tmp_path, edit, new)
    r = CliRunner().invoke(app, ["profile", str(schema)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.strip() == f"Error: {schema}: {expected}"


def test_missing_section_without_a_near_miss_says_missing(tmp_path: Path) -> None:
    text = _schema(tmp_path, "name: synthetic", "name: synthetic").read_text()
    schema = tmp_path / "noitems.yaml"
    schema.write_text(text.split("\nitems:")[0] + "\nsplit:" + text.split("\nsplit:")[1])
    r = CliRunner().invoke(app, ["profile", str(schema)])
    assert r.exit_code == 2 and f"{schema}: items: required key is missing" in r.stderr


@pytest.mark.parametrize("edit, new, expected", [
    ("method: random", "method: time\n  # no time column", "split.method: time needs interactions.time"),
    ("  seed: 0", "  seed: 0\nssl: {aug: cfm, mask_size: 8}", "ssl.mask_size: 8 must be below the number of item features (8)"),
])
def test_cross_key_checks_exit_2_and_name_the_file(tmp_path: Path, edit: str, new: str, expected: str) -> None:
    text = _schema(tmp_path, edit, new).read_text()
    if "method: time" in new:
        text = text.replace("  time: ts ", "  # time: ts ")
    schema = tmp_path / "cross.yaml"
    schema.write_text(text)
    r = CliRunner().invoke(app, ["train", str(schema), "--steps", "1", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith(f"Error: {schema}: {expected}") and "(top level)" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_cross_key_value_from_set_names_the_override(tmp_path: Path) -> None:
    schema = _schema(tmp_path, "name: synthetic", "name: synthetic")
    r = CliRunner().invoke(app, ["train", str(schema), "--aug", "cfm", "--set", "ssl.mask_size=9", "--steps", "1",
                                 "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.stderr.startswith("Error: --set: ssl.mask_size: 9 must be below")
