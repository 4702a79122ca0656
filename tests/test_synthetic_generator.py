"""Tests for the offline example dataset generator (examples/synthetic/generate.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "synthetic"
SMALL = {"items": 2000, "pairs": 30_000, "users": 500, "user_pairs": 20_000}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("synthetic_generate", EXAMPLE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return gen.make_tables(**SMALL, seed=0)


def _joined(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    items = tables["items"].select("item_id", "category", "subcategory")
    query = items.rename({"item_id": "query_item", "category": "q_cat", "subcategory": "q_sub"})
    return tables["pairs"].join(query, on="query_item").join(items, on="item_id")


def test_same_seed_same_frames() -> None:
    a = gen.make_tables(600, 5000, 50, 1000, seed=3)
    b = gen.make_tables(600, 5000, 50, 1000, seed=3)
    assert a.keys() == b.keys() == {"items", "pairs", "users", "user_pairs"}
    for key in a:
        assert_frame_equal(a[key], b[key])


def test_different_seed_different_frames() -> None:
    a = gen.make_tables(600, 5000, 50, 1000, seed=3)
    b = gen.make_tables(600, 5000, 50, 1000, seed=4)
    for key in a:
        assert not a[key].equals(b[key]), key


def test_item_to_item_data_independent_of_users() -> None:
    a = gen.make_tables(400, 2000, 0, 0, seed=1)
    b = gen.make_tables(400, 2000, 30, 300, seed=1)
    assert_frame_equal(a["items"], b["items"])
    assert_frame_equal(a["pairs"], b["pairs"])


def test_items_shape_and_columns(tables: dict[str, pl.DataFrame]) -> None:
    items = tables["items"]
    assert items.columns == ["item_id", "category", "subcategory", "brand", "tags", "title", "price", "year"]
    assert items.height == SMALL["items"]
    assert items["item_id"].is_unique().all()
    assert items["item_id"].str.contains(r"^i\d{6}$").all()
    assert items["category"].str.contains(r"^cat\d{2}$").all()
    assert 15 <= items["category"].n_unique() <= 20
    assert 100 <= items["subcategory"].n_unique() <= 200
    assert 300 <= items["brand"].n_unique() <= 500
    assert items["year"].min() >= 1990 and items["year"].max() <= 2024
    assert items.null_count().select(pl.all().exclude("tags", "price")).sum_horizontal().item() == 0


def test_hierarchy_is_nested_and_brands_follow_it(tables: dict[str, pl.DataFrame]) -> None:
    items = tables["items"]
    cats_per_sub = items.group_by("subcategory").agg(pl.col("category").n_unique())["category"]
    assert (cats_per_sub == 1).all()
    top_sub = items.group_by("brand").agg(pl.col("subcategory").mode().first().alias("home"))
    purity = items.join(top_sub, on="brand").select((pl.col("home") == pl.col("subcategory")).mean()).item()
    assert purity > 0.8


def test_tags_titles_prices(tables: dict[str, pl.DataFrame]) -> None:
    items = tables["items"]
    tags = items["tags"]
    assert 0.015 < tags.null_count() / items.height < 0.05
    present = tags.drop_nulls()
    assert present.str.contains("|", literal=True).mean() > 0.5
    assert not present.str.contains(r"[,; ]").any()
    n_tags = present.str.split("|").list.len()
    assert n_tags.min() >= 1 and n_tags.max() <= 5
    assert present.str.split("|").explode().n_unique() <= 300
    n_words = items["title"].str.split(" ").list.len()
    assert n_words.min() >= 3 and n_words.max() <= 8
    assert items["title"].str.contains(r"[A-Z]").any() and items["title"].str.contains(r"^[a-z]").any()
    price = items["price"]
    assert 0.005 < price.null_count() / items.height < 0.04
    assert price.drop_nulls().min() > 0
    by_cat = items.group_by("category").agg(pl.col("price").log().mean())["price"]
    assert by_cat.max() - by_cat.min() > 1.0  # category-dependent mean


def test_about_ten_percent_catalog_only_items(tables: dict[str, pl.DataFrame]) -> None:
    pairs, items = tables["pairs"], tables["items"]
    seen = pl.concat([pairs["query_item"], pairs["item_id"], tables["user_pairs"]["item_id"]]).unique()
    cold = 1 - seen.len() / items.height
    assert 0.08 <= cold <= 0.13
    assert set(seen) <= set(items["item_id"])


def test_no_self_pairs(tables: dict[str, pl.DataFrame]) -> None:
    pairs = tables["pairs"]
    assert pairs.columns == ["query_item", "item_id", "ts"]
    assert pairs.height == SMALL["pairs"]
    assert (pairs["query_item"] != pairs["item_id"]).all()


def test_popularity_is_power_law(tables: dict[str, pl.DataFrame]) -> None:
    counts = tables["pairs"]["item_id"].value_counts(sort=True)["count"]
    top = counts.head(SMALL["items"] // 10).sum() / counts.sum()
    assert top > 0.4


def test_pairs_carry_feature_signal(tables: dict[str, pl.DataFrame]) -> None:
    joined = _joined(tables)
    same_sub = (joined["q_sub"] == joined["subcategory"]).mean()
    same_cat = (joined["q_cat"] == joined["category"]).mean()
    q_share = joined["q_sub"].value_counts(normalize=True).rename({"q_sub": "s", "proportion": "q"})
    t_share = joined["subcategory"].value_counts(normalize=True).rename({"subcategory": "s", "proportion": "t"})
    chance = q_share.join(t_share, on="s").select((pl.col("q") * pl.col("t")).sum()).item()
    assert 0.5 < same_sub < 0.8 and same_cat > same_sub
    assert same_sub > 10 * chance


def test_timestamps_increase(tables: dict[str, pl.DataFrame]) -> None:
    ts = tables["pairs"]["ts"].to_numpy()
    assert ts.dtype.kind == "i" and ts.min() >= 0
    assert np.corrcoef(np.arange(len(ts)), ts)[0, 1] > 0.99


def test_user_tables(tables: dict[str, pl.DataFrame]) -> None:
    users, up, items = tables["users"], tables["user_pairs"], tables["items"]
    assert users.columns == ["user_id", "age", "gender", "occupation", "zip"]
    assert up.columns == ["user_id", "item_id", "ts"]
    assert users.height == SMALL["users"] and up.height == SMALL["user_pairs"]
    assert users["user_id"].is_unique().all() and users["user_id"].str.contains(r"^u\d{5}$").all()
    assert set(users["gender"]) == {"F", "M"}
    assert users["age"].str.contains(r"^\d+(-\d+|\+)$").all()
    assert 15 <= users["occupation"].n_unique() <= 21
    assert users["zip"].str.contains(r"^\d{3}$").all()
    assert set(up["user_id"]) == set(users["user_id"])
    cats = up.join(items.select("item_id", "category"), on="item_id")
    top = cats.group_by("user_id").agg(pl.col("category").mode().first().alias("fav"))
    share = cats.join(top, on="user_id").select((pl.col("category") == pl.col("fav")).mean()).item()
    assert share > 0.5  # each user mostly picks from a preferred category
    fav_by_occ = top.join(users, on="user_id").group_by("occupation", "fav").len()
    concentration = fav_by_occ.group_by("occupation").agg(pl.col("len").max() / pl.col("len").sum())
    assert concentration["len"].mean() > 3 / 20  # occupation predicts the preferred category


def test_committed_data_matches_generator(tmp_path: Path) -> None:
    written = gen.generate(tmp_path, preset="small")
    for key in ("items", "pairs", "users", "user_pairs"):
        fresh = pl.read_csv(written[key], infer_schema_length=0)
        committed = pl.read_csv(EXAMPLE / "data" / f"{key}.csv", infer_schema_length=0)
        assert_frame_equal(fresh, committed)
    for name in ("schema.yaml", "schema_users.yaml"):
        assert (tmp_path / name).read_text() == (EXAMPLE / name).read_text()


def test_committed_data_is_small() -> None:
    files = [*EXAMPLE.joinpath("data").glob("*.csv"), *EXAMPLE.glob("*.yaml")]
    assert sum(f.stat().st_size for f in files) <= 2 * 1024 * 1024


@pytest.mark.parametrize("name", ["schema.yaml", "schema_users.yaml"])
def test_committed_schemas_name_existing_columns(name: str) -> None:
    schema = yaml.safe_load((EXAMPLE / name).read_text())
    inter = schema["interactions"]
    header = pl.read_csv(EXAMPLE / inter["path"], n_rows=1).columns
    assert {inter["query"], inter["item"], inter["time"]} <= set(header)
    sections = [schema["items"]] + ([schema["queries"]] if schema["queries"]["kind"] == "entity" else [])
    for section in sections:
        columns = pl.read_csv(EXAMPLE / section["path"], n_rows=1).columns
        assert section["id"] in columns
        assert {f.get("column", key) for key, f in section["features"].items()} <= set(columns)
    assert schema["items"]["features"]["tags"] == {"type": "multi_categorical", "separator": "|", "max_len": 8}


@pytest.mark.parametrize("name", ["schema.yaml", "schema_users.yaml"])
def test_committed_schemas_validate(name: str) -> None:
    config = pytest.importorskip("sslkit.config")
    cfg = config.load_config(EXAMPLE / name)
    assert Path(cfg.resolve(cfg.items.path)).exists()
    assert cfg.item_to_item() == (name == "schema.yaml")


def test_wikipedia_preset_schema_and_parquet(tmp_path: Path) -> None:
    written = gen.generate(tmp_path, preset="wikipedia", items=500, pairs=2000, fmt="parquet")
    assert set(written) == {"items", "pairs", "schema"}
    schema = yaml.safe_load(written["schema"].read_text())
    assert list(schema["items"]["features"]) == ["item_id", "category", "tags", "title"]
    assert schema["interactions"]["path"] == "data/pairs.parquet"
    assert pl.read_parquet(tmp_path / schema["items"]["path"]).height == 500


def test_cli_writes_layout(tmp_path: Path) -> None:
    gen.main(["--out", str(tmp_path), "--items", "300", "--pairs", "900", "--users", "20", "--seed", "7"])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "items.csv", "pairs.csv", "user_pairs.csv", "users.csv"]
    assert (tmp_path / "schema.yaml").exists() and (tmp_path / "schema_users.yaml").exists()
    assert pl.read_csv(tmp_path / "data" / "user_pairs.csv").height == 20 * 40
    schema = yaml.safe_load((tmp_path / "schema_users.yaml").read_text())
    assert schema["queries"]["path"] == "data/users.csv"
    assert re.match(r"^# sslkit schema", (tmp_path / "schema.yaml").read_text())
