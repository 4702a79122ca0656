"""`sslkit profile` says what the schema loses: truncated rows per feature, lists hidden in a
categorical, and pairs dropped for unknown ids — each warning with its fix."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from sslkit.cli import app


def _profile(schema: Path, *args: str) -> tuple[dict, str]:
    r = CliRunner().invoke(app, ["-q", "profile", str(schema), "--json", *args])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def test_truncated_rows_per_feature(data: Path) -> None:
    obj, _ = _profile(data / "schema.yaml", "--set", "items.features.tags.max_len=2")
    feats = {f["feature"]: f for f in obj["item_features"]}
    tags = pl.read_csv(data / "data/items.csv")["tags"].str.split("|").list.len()
    assert feats["tags"]["truncated_rows"] == int((tags > 2).sum()) > 0
    assert feats["category"]["truncated_rows"] == 0
    r = CliRunner().invoke(app, ["profile", str(data / "schema.yaml"), "--set", "items.features.tags.max_len=2"])
    assert "truncated rows" in r.stdout
    tag_line = next(line for line in r.stdout.splitlines() if line.split("│")[0].strip() == "tags")
    assert f"{int((tags > 2).sum()):,}" in tag_line.split("│")[5]


def test_separator_inside_a_categorical_warns_with_the_fix(data: Path) -> None:
    obj, err = _profile(data / "schema.yaml", "--set", "items.features.tags={type: categorical}")
    share = pl.read_csv(data / "data/items.csv")["tags"].str.contains("|", literal=True).mean()
    assert share >= 0.5
    expected = (f"items.features.tags: {share:.0%} of values hold '|' inside one value (e.g. '")
    assert any(w.startswith(expected) and w.endswith("use type: multi_categorical with separator: '|'")
               for w in obj["warnings"])
    assert "warning: items.features.tags:" in err
    # the right type and separator: no warning; a wrong separator: told which one the data uses
    assert not _profile(data / "schema.yaml")[0]["warnings"]
    wrong, _ = _profile(data / "schema.yaml", "--set", "items.features.tags.separator=';'")
    assert any("its separator is not the one the data uses: use separator: '|'" in w for w in wrong["warnings"])


def test_titles_with_an_occasional_comma_do_not_warn(data: Path) -> None:
    items = pl.read_csv(data / "data/items.csv")
    items = items.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.col("title") + ", The")
                               .otherwise(pl.col("title")).alias("title"))
    items.write_csv(data / "data/items.csv")
    obj, _ = _profile(data / "schema.yaml", "--set", "items.features.title={type: categorical}")
    assert obj["warnings"] == []


def test_most_pairs_dropped_as_unknown_warns(data: Path) -> None:
    pairs = pl.read_csv(data / "data/pairs.csv")
    users = pl.Series([f"u{i % 60:05d}" for i in range(pairs.height)])
    mixed = pairs.with_columns(pl.when(pl.int_range(pl.len()) % 10 < 7).then(users).otherwise(pl.col("query_item"))
                               .alias("query_item"))
    mixed.write_csv(data / "data/pairs.csv")
    obj, err = _profile(data / "schema.yaml")
    dropped = obj["pairs"]["dropped_unknown_query"]
    assert dropped == (pl.int_range(pairs.height, eager=True) % 10 < 7).sum()
    [warning] = [w for w in obj["warnings"] if "dropped as unknown" in w]
    assert warning.startswith(f"{dropped:,} of {pairs.height:,} pairs (70%) were dropped as unknown (0 for their "
                              f"item id, {dropped:,} for their query id)")
    assert "set queries.kind: entity" in warning and "dropped as unknown" in err


def test_a_composite_id_feature_gets_no_separator_advice(tmp_path: Path) -> None:
    """`item_key: {column: "pizza_name+size"}` holds 'margherita|L': sslkit's own id separator, not a list."""
    import shutil

    import yaml

    root = Path(__file__).resolve().parents[1] / "examples/orders"
    shutil.copytree(root / "data", tmp_path / "data")
    schema = yaml.safe_load((root / "schema.yaml").read_text())
    schema["items"]["features"]["item_key"] = {"column": "pizza_name+size", "type": "categorical"}
    schema["items"]["features"]["combo"] = {"column": "ingredients", "type": "categorical"}  # a real list in disguise
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    r = CliRunner().invoke(app, ["-q", "profile", str(tmp_path / "schema.yaml"), "--json"])
    assert r.exit_code == 0, r.stderr
    warnings = json.loads(r.stdout)["warnings"]
    assert not [w for w in warnings if "item_key" in w], warnings
    assert [w for w in warnings if "items.features.combo" in w and "separator: ','" in w], warnings
