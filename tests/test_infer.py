"""`sslkit init` reads the data right: query kind from how values relate to catalog ids, one role
per column, rating filters, composite keys, and what a chosen max_len truncates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from sslkit.cli import app
from sslkit.config import load_config


def _init(tmp_path: Path, data: Path, *args: str) -> tuple[str, dict]:
    r = CliRunner().invoke(app, ["init", str(data), *args])
    assert r.exit_code == 0, r.stderr
    schema = tmp_path / "schema.yaml"
    schema.write_text(r.stdout)
    load_config(schema)  # what init writes is a valid schema
    return r.stdout, yaml.safe_load(r.stdout)


def _ratings(tmp_path: Path, *, user: str, item: str, correlated: bool) -> tuple[Path, Path]:
    """Integer user ids 1–671 against integer movie ids drawn densely from 1–6000 (most users' ids
    are also movie ids); `correlated` makes the query column item-to-item: drawn like the items."""
    rng = np.random.default_rng(0)
    movies = np.sort(rng.choice(np.arange(1, 6001), 5000, replace=False))
    pop = rng.permutation(1.0 / np.arange(1, len(movies) + 1) ** 0.9)
    pop /= pop.sum()
    n = 20000
    items = rng.choice(movies, n, p=pop)
    if correlated:
        queries = rng.choice(movies, n, p=pop)
    else:
        act = rng.permutation(1.0 / np.arange(1, 672) ** 0.7)
        queries = rng.choice(np.arange(1, 672), n, p=act / act.sum())
    pl.DataFrame({user: queries, item: items, "rating": rng.choice(np.arange(1, 11) / 2, n),
                  "timestamp": rng.integers(900_000_000, 1_000_000_000, n)}).write_csv(tmp_path / "ratings.csv")
    genres = np.array(["Comedy", "Drama", "Action", "Thriller", "Romance", "Horror", "Sci-Fi", "Crime", "War"])
    lens = np.where(np.arange(len(movies)) % 200 == 0, 8, rng.integers(1, 4, len(movies)))
    pl.DataFrame({"movieId": movies, "title": [f"Movie {i}" for i in range(len(movies))],
                  "genres": ["|".join(rng.choice(genres, k, replace=False)) for k in lens]}).write_csv(tmp_path / "movies.csv")
    return tmp_path / "ratings.csv", tmp_path / "movies.csv"


@pytest.mark.parametrize("user, item", [("userId", "movieId"), ("a", "b")])
def test_integer_user_ids_overlapping_movie_ids_are_an_entity(tmp_path: Path, user: str, item: str) -> None:
    ratings, movies = _ratings(tmp_path, user=user, item=item, correlated=False)
    if user == "a":  # nothing named like an id in the catalog either
        pl.read_csv(movies).rename({"movieId": item}).write_csv(movies)
    share = pl.read_csv(ratings)[user].unique().is_in(pl.read_csv(movies)[item if user == "a" else "movieId"].implode()).mean()
    assert share > 0.7  # the trap: most user ids are also movie ids
    text, schema = _init(tmp_path, ratings, "--items", str(movies))
    assert schema["queries"]["kind"] == "entity"
    assert schema["interactions"]["query"] == user and schema["interactions"]["item"] == item
    if user == "a":  # no name to go by: the popularity of a value as query vs as item decides
        assert "overlap the catalog's integer ids by range only" in text


def test_integer_item_to_item_ids_stay_items(tmp_path: Path) -> None:
    ratings, movies = _ratings(tmp_path, user="source", item="target", correlated=True)
    text, schema = _init(tmp_path, ratings, "--items", str(movies))
    assert schema["queries"]["kind"] == "item" and "rank correlation" in text


def test_rating_column_becomes_a_proposed_filter_and_max_len_says_what_it_cuts(tmp_path: Path) -> None:
    ratings, movies = _ratings(tmp_path, user="userId", item="movieId", correlated=False)
    text, schema = _init(tmp_path, ratings, "--items", str(movies))
    keep = (pl.read_csv(ratings)["rating"] >= 4).mean()
    assert f'  # where: "rating >= 4"  # \'rating\' looks like a rating (0.5–5): keep the liked rows as positives ({keep:.0%} of rows)' in text
    assert "rating" not in schema["items"]["features"] and "where" not in schema["interactions"]
    genres = schema["items"]["features"]["genres"]
    lens = pl.read_csv(movies)["genres"].str.split("|").list.len()
    cut = int((lens > genres["max_len"]).sum())
    assert cut > 0 and f"max_len {genres['max_len']} (p99) truncates {cut:,} of {len(lens):,} rows" in text


def _orders(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    names = [f"pizza_{i}" for i in range(30)]
    rows = []
    for order in range(1, 800):
        day, clock = f"2015-{1 + order % 12:02d}-{1 + order % 28:02d}", f"{11 + order % 10:02d}:{order % 60:02d}:07"
        for _ in range(int(rng.integers(1, 5))):
            i, size = int(rng.integers(0, 30)), ["S", "M", "L"][int(rng.integers(0, 3))]
            promo = 0.8 if order % 10 == 0 else 1.0  # promotion days: the price varies now and then
            rows.append((order, day, clock, names[i], size, ["classic", "veggie"][i % 2],
                         promo * (10 + i % 7 + {"S": 0, "M": 3.5, "L": 6.25}[size]), int(rng.integers(1, 3)),
                         "completed" if rng.random() < 0.92 else "cancelled"))
    path = tmp_path / "orders.csv"
    pl.DataFrame(rows, schema=["order_id", "date", "time", "name", "size", "category", "price", "quantity", "status"],
                 orient="row").write_csv(path)
    return path


def test_orders_log_one_role_per_column_and_a_composite_item(tmp_path: Path) -> None:
    text, schema = _init(tmp_path, _orders(tmp_path))
    inter = schema["interactions"]
    assert inter["item"] == ["name", "size"]  # the price varies within a name, not within (name, size)
    assert inter["time_from"] == ["date", "time"] and inter["time_format"] == "%Y-%m-%d %H:%M:%S"
    roles = [inter["query"], *inter["item"], *inter["time_from"]]
    assert len(roles) == len(set(roles)) and inter["query"] == "order_id"
    assert set(schema["items"]["features"]) == {"name", "size", "category", "price"}
    assert schema["items"]["aggregate"] == {"price": "mode"}  # its promotions: the usual price per item
    assert "# not item features (they vary within one item): quantity, status" in text
    assert "pairs: {rule: co_occurrence, group: order_id}" in text


def test_items_table_with_repeated_ids_gets_a_composite_key(tmp_path: Path) -> None:
    items = pl.DataFrame({"name": [f"p{i // 3}" for i in range(30)], "size": ["S", "M", "L"] * 10,
                          "price": [float(i) for i in range(30)]})
    items.write_csv(tmp_path / "items.csv")
    rng = np.random.default_rng(0)
    pick = rng.integers(0, 30, 500)
    pl.DataFrame({"customer": rng.integers(0, 40, 500), "name": items["name"].gather(pick),
                  "size": items["size"].gather(pick)}).write_csv(tmp_path / "log.csv")
    text, schema = _init(tmp_path, tmp_path / "log.csv", "--items", str(tmp_path / "items.csv"))
    assert schema["items"]["id"] == ["name", "size"] and schema["interactions"]["item"] == ["name", "size"]
    assert "composite id: 'name' repeats, with 'size' each row is unique" in text
    assert schema["queries"]["kind"] == "entity"
