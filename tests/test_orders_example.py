"""examples/orders: a raw order log that the schemas alone turn into pairs (no preparation script)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sslkit.config import load_config
from sslkit.data.store import build

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/orders"


def generator():
    spec = importlib.util.spec_from_file_location("orders_generate", EXAMPLE / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture()
def example(tmp_path: Path) -> Path:
    for name in ("schema.yaml", "schema_customers.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    (tmp_path / "data").mkdir()
    shutil.copy(EXAMPLE / "data/orders.csv", tmp_path / "data/orders.csv")
    return tmp_path


def test_the_committed_log_is_the_generators_output() -> None:
    assert generator().generate().write_csv() == (EXAMPLE / "data/orders.csv").read_text()


def test_the_log_is_raw() -> None:
    log = pl.read_csv(EXAMPLE / "data/orders.csv")
    assert set(log["status"].unique()) == {"completed", "cancelled", "returned"}
    assert log.group_by("order_id").len()["len"].max() > 30  # party orders
    varies = log.group_by("pizza_name", "size").agg(pl.col("unit_price").n_unique())
    assert varies["unit_price"].max() > 1  # promotion prices: one item, several prices


def test_basket_schema_builds_pairs_from_the_log(example: Path) -> None:
    logged: list[str] = []
    store = build(load_config(example / "schema.yaml"), log=logged.append)
    r = store.report
    log = pl.read_csv(example / "data/orders.csv")
    completed = log.filter((pl.col("status") == "completed") & (pl.col("quantity") > 0))
    assert r["where_kept"] == completed.height and r["events_read"] == log.height
    assert store.items.rows == log.select(pl.struct("pizza_name", "size").n_unique()).item()
    assert "margherita|L" in set(store.items.ids)
    assert r["groups_capped"] > 0 and r["largest_group"] > 12 and r["pairs_built"] == r["pairs_read"]
    distinct = completed.unique(["order_id", "pizza_name", "size"]).group_by("order_id").len()["len"]
    capped = distinct.clip(upper_bound=12)
    assert r["pairs_built"] == int((capped * (capped - 1)).sum())
    assert any("groups have more than max_items 12" in line for line in logged)
    test_share = len(store.splits["test"]) / r["pairs_read"]
    assert abs(test_share - 0.15) < 0.02 and r["test_groups"] < r["split_groups"]


def test_customer_schema_leaves_each_customers_latest_lines_out(example: Path) -> None:
    store = build(load_config(example / "schema_customers.yaml"))
    test_customers = np.unique(np.asarray(store.splits["test"])[:, 0])
    log = pl.read_csv(example / "data/orders.csv")
    lines = log.filter(pl.col("status") == "completed")["customer_id"]
    several = lines.value_counts().filter(pl.col("count") > 1).height  # one line only: it stays in training
    assert len(test_customers) == several == store.report["test_groups"]
    assert store.queries.rows == log["customer_id"].n_unique()  # every customer of the log, also one who only cancelled


def test_generator_is_deterministic_and_sized() -> None:
    a, b = generator().generate(orders=50, customers=10, seed=3), generator().generate(orders=50, customers=10, seed=3)
    assert a.equals(b) and a["order_id"].n_unique() == 50
    assert a.columns[:4] == ["order_id", "order_date", "order_time", "customer_id"]


def test_new_items_with_a_composite_id_embed_from_their_columns(example: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sslkit.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    trained = runner.invoke(app, ["-q", "train", str(example / "schema.yaml"), "--steps", "2", "--out", str(run),
                                  "--set", "train.batch_size=256", "--set", "train.eval_queries=20"])
    assert trained.exit_code == 0, trained.output
    (tmp_path / "new.csv").write_text('pizza_name,size,category,ingredients,unit_price\n'
                                      'margherita,XXL,classic,"tomato, mozzarella, basil",24.0\n')
    out = runner.invoke(app, ["-q", "embed", str(run), "--items", str(tmp_path / "new.csv"), "--format", "ndjson",
                              "--out", "-"])
    assert out.exit_code == 0, out.output
    assert '"id":"margherita|XXL"' in out.stdout
