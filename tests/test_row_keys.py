"""NDJSON rows given to `recommend` / `embed` with a key the run does not know ("titel") are errors
for that line: one stderr line with its number and a did-you-mean, the other lines answered, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslkit.cli import app

ROW = {"item_id": "new-1", "category": "cat03", "subcategory": "cat03_s01", "brand": "brand001",
       "tags": "tag001|tag002", "title": "a brand new title", "price": 12.5, "year": 2030}


@pytest.fixture(scope="module")
def run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rowkeys") / "run"
    r = CliRunner().invoke(app, ["-q", "train", str(tiny_dir / "schema.yaml"), "--steps", "2", "--batch-size", "64",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


def _lines(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_recommend_reports_unknown_keys_per_line(run: Path) -> None:
    typo = {k if k != "title" else "titel": v for k, v in ROW.items()}
    stdin = _lines(ROW | {"item_id": "a"}, typo | {"item_id": "b"}) + "i000001\n" + _lines({**ROW, "item_id": "c", "colour": "red"})
    r = CliRunner().invoke(app, ["-q", "recommend", str(run), "--k", "3"], input=stdin)
    assert r.exit_code == 1
    assert [json.loads(line)["query"] for line in r.stdout.splitlines()] == ["a", "i000001"]
    err = r.stderr.splitlines()
    assert "line 2: unknown key 'titel' — did you mean 'title'?" in err
    assert any(line.startswith("line 4: unknown key 'colour' — known keys: brand, category") for line in err)
    assert err[-1] == "Error: 2 input line(s) could not be answered (see above)"


def test_embed_ndjson_rows_with_unknown_keys(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.ndjson"
    path.write_text(_lines(ROW, {**ROW, "item_id": "new-2", "bran": "brand002"}, {**ROW, "item_id": "new-3"}))
    r = CliRunner().invoke(app, ["-q", "embed", str(run), "--items", str(path), "--format", "ndjson"])
    assert r.exit_code == 1
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == ["new-1", "new-3"]
    assert f"{path}: line 2: unknown key 'bran' — did you mean 'brand'?" in r.stderr
    assert "1 input line(s) could not be embedded" in r.stderr


def test_embed_csv_extra_columns_stay_allowed(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text(",".join([*ROW, "notes"]) + "\n" + ",".join(str(v) for v in ROW.values()) + ",anything\n")
    r = CliRunner().invoke(app, ["-q", "embed", str(run), "--items", str(path), "--format", "ndjson"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["id"] == "new-1"
