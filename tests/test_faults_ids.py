"""No silent wrong results from ids: composite parts holding the separator, ids holding a newline,
and rows on stdin read in the format asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest



from test_faults_lines import invoke, one_line  # the shared CLI helpers (one_line also refuses 'internal error')


ORDERS = """order_id,name,size,ts
1,hawaiian|XL,L,1
1,hawaiian,XL|L,2
1,margherita,S,3
2,margherita,S,4
2,hawaiian,M,5
"""


def test_composite_part_holding_the_separator_is_refused_naming_the_row(tmp_path: Path) -> None:
    """('hawaiian|XL', 'L') and ('hawaiian', 'XL|L') joined to one item, silently (129 keys → 128 items)."""
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "schema.yaml").write_text(json.dumps({
        "interactions": {"path": "orders.csv", "item": ["name", "size"], "time": "ts",
                         "pairs": {"rule": "co_occurrence", "group": "order_id"}},
        "items": {"features": {"name": {"type": "categorical"}, "size": {"type": "categorical"}}}}))
    code, _, err = invoke("profile", tmp_path / "schema.yaml")
    line = one_line(err)
    assert code == 1 and "orders.csv: row 1: column 'name'" in line and "holds the separator '|'" in line, line
    assert "items.id_separator" in line


def test_composite_items_file_part_holding_the_separator(tmp_path: Path) -> None:
    from sslkit.config import validate
    from sslkit.data import store
    from sslkit.errors import DataError

    (tmp_path / "orders.csv").write_text("order,name,size\n1,a,S\n1,b,S\n2,a,S\n2,b,M\n")
    (tmp_path / "items.csv").write_text("name,size,kind\na,S,x\nb,S,y\nb,M,y\na,S|M,z\n")
    cfg = validate({"base_dir": str(tmp_path), "interactions": {"path": "orders.csv", "item": ["name", "size"],
                                                                 "pairs": {"rule": "co_occurrence", "group": "order"}},
                    "items": {"path": "items.csv", "id_separator": "|", "features": {"kind": {"type": "categorical"}}}},
                   source="schema.yaml")
    with pytest.raises(DataError, match=r"items.csv: row 4: column 'size' .* holds the separator '\|' \('S\|M'\)"):
        store.build(cfg)


# --- a trained run for embed ------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ids") / "ds"
    shutil.copytree(tiny_dir, base, ignore=shutil.ignore_patterns(".sslkit-cache"))
    code, _, err = invoke("train", base / "schema.yaml", "--steps", "2", "--batch-size", "256", "--out", base / "run")
    assert code == 0, err
    return base


def new_items(run: Path, ids: list[str]) -> pl.DataFrame:
    return pl.read_csv(run / "data/items.csv", schema_overrides={"item_id": pl.String}).head(len(ids)).with_columns(
        pl.Series("item_id", ids))


def test_npy_ids_cannot_be_misaligned_by_a_newline(run: Path, tmp_path: Path) -> None:
    """`--format npy` wrote one id per line: an id with a newline made 2,001 lines for 2,000 vectors."""
    from sslkit.retrieval.embed import read_ids

    rows = tmp_path / "new.ndjson"
    new_items(run, ["first\nsecond", "plain", 'quote"d']).write_ndjson(rows)
    out = tmp_path / "v.npy"
    code, _, err = invoke("embed", run / "run", "--items", rows, "--format", "npy", "--out", out)
    assert code == 0, err
    vectors = np.load(out)
    ids = read_ids(str(out) + ".ids.ndjson")
    assert vectors.shape[0] == 3 and ids.tolist() == ["first\nsecond", "plain", 'quote"d']
    assert len((tmp_path / "v.npy.ids.ndjson").read_text().splitlines()) == 3


def test_embed_stdin_honours_the_input_format(run: Path) -> None:
    """`embed --items -` parsed stdin as CSV whatever it held."""
    rows = new_items(run, ["x1", "x2"])
    code, out, err = invoke("embed", run / "run", "--items", "-", "--input-format", "ndjson", stdin=rows.write_ndjson())
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["x1", "x2"]
    code, out_csv, err = invoke("embed", run / "run", "--items", "-", stdin=rows.write_csv())
    assert code == 0 and out_csv == out, err
    code, _, err = invoke("embed", run / "run", "--items", "-", "--input-format", "xml", stdin="x")
    assert code == 2 and "--input-format" in err
