"""`sslkit init` reads the data right: query kind from how values relate to catalog ids, one role
per column, rating filters, composite keys, and what a chosen max_len truncates."""

from __future__ import annotations

import json
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
    roles = [inter["pairs"]["group"], *inter["item"], *inter["time_from"]]
    assert len(roles) == len(set(roles)) and "query" not in inter
    assert set(schema["items"]["features"]) == {"name", "size", "category", "price"}
    assert schema["items"]["aggregate"] == {"price": "mode"}  # its promotions: the usual price per item
    assert "# not item features (they vary within one item): quantity, status" in text


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


# ---- init reads tasks: the three shapes of log a new user brings, each proposal run by `profile`


def _profile_ok(tmp_path: Path, text: str, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    r = CliRunner().invoke(app, ["-q", "profile", str(path), "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["pairs"]["test"] > 0


def _pizza_shop(tmp_path: Path, order: str = "order_id") -> Path:
    """A pizza shop's order lines: order id, date, time, pizza name, size, type, price (no user column)."""
    rng = np.random.default_rng(3)
    rows = []
    for o in range(1, 600):
        day, clock = f"2015-{1 + o % 12:02d}-{1 + o % 28:02d}", f"{11 + o % 10:02d}:{o % 60:02d}:{o % 7:02d}"
        for _ in range(int(rng.integers(1, 5))):
            i, size = int(rng.integers(0, 24)), "SML"[int(rng.integers(0, 3))]
            rows.append((o, day, clock, f"pizza {i}", size, ["classic", "veggie", "chicken"][i % 3],
                         10 + i % 7 + {"S": 0, "M": 3.5, "L": 6.25}[size]))
    path = tmp_path / "pizza_orders.csv"
    pl.DataFrame(rows, schema=[order, "date", "time", "pizza_name", "size", "type", "price"], orient="row").write_csv(path)
    return path


@pytest.mark.parametrize("order", ["order_id", "id"])
def test_basket_log_proposes_co_purchase_never_the_order_as_a_user(tmp_path: Path, order: str) -> None:
    text, schema = _init(tmp_path, _pizza_shop(tmp_path, order))
    inter = schema["interactions"]
    assert "query" not in inter and schema["queries"] == {"kind": "item"}
    pairs = inter["pairs"]
    assert pairs["rule"] == "co_occurrence" and pairs["group"] == order and pairs["max_items"] == 10
    assert inter["item"] == ["pizza_name", "size"] and inter["time_from"] == ["date", "time"]
    assert schema["split"]["method"] == "time" and schema["split"]["group"] == order  # an order stays whole
    assert f"# task: item-to-item — '{order}' is a basket" in text
    assert "the other task" not in text  # no user column: no user-to-item reading to offer
    _profile_ok(tmp_path, text, "pizza")
    r = CliRunner().invoke(app, ["init", str(tmp_path / "pizza_orders.csv"), "--task", "user-to-item"])
    assert r.exit_code == 2 and "has no user-to-item reading" in r.stderr and len(r.stderr.splitlines()) == 1


def test_ratings_with_a_movies_table_propose_user_to_item_and_offer_next(tmp_path: Path) -> None:
    ratings, movies = _ratings(tmp_path, user="userId", item="movieId", correlated=False)
    text, schema = _init(tmp_path, ratings, "--items", str(movies))
    assert schema["interactions"]["query"] == "userId" and schema["queries"]["kind"] == "entity"
    assert schema["interactions"]["time"] == "timestamp" and schema["split"]["method"] == "leave_last_out"
    assert schema["items"]["features"]["genres"]["separator"] == "|"
    # the other reading is a commented block: item-to-item from each user's timeline
    alt = yaml.safe_load("\n".join(line[4:] for line in text.splitlines() if line.startswith("#   ")))
    assert alt["interactions"] == {"pairs": {"rule": "next", "group": "userId", "window": 1}}
    assert alt["queries"] == {"kind": "item"} and alt["split"]["method"] == "time"
    # the only edit a user makes: the rating filter
    liked = text.replace('  # where: "rating >= 4"', '  where: "rating >= 4"')
    assert liked != text
    _profile_ok(tmp_path, liked, "ratings")
    # --task item-to-item writes that block as the schema, and the user-to-item reading as the comment
    text2, schema2 = _init(tmp_path, ratings, "--items", str(movies), "--task", "item-to-item")
    assert schema2["interactions"]["pairs"] == alt["interactions"]["pairs"] and "query" not in schema2["interactions"]
    assert schema2["queries"] == {"kind": "item"} and "#     query: userId" in text2
    _profile_ok(tmp_path, text2.replace('  # where: "rating >= 4"', '  where: "rating >= 4"'), "ratings_i2i")


@pytest.mark.parametrize("timed", [True, False])
def test_plain_click_log_user_to_item_with_the_split_its_time_allows(tmp_path: Path, timed: bool) -> None:
    rng = np.random.default_rng(5)
    log = pl.DataFrame({"user_id": [f"u{k:03d}" for k in rng.integers(0, 150, 4000)],
                        "item_id": [f"i{k:04d}" for k in rng.integers(0, 300, 4000)]})
    if timed:
        log = log.with_columns(pl.Series("ts", np.sort(rng.integers(1_600_000_000, 1_700_000_000, 4000))))
    log.write_csv(tmp_path / "clicks.csv")
    text, schema = _init(tmp_path, tmp_path / "clicks.csv")
    assert schema["interactions"]["query"] == "user_id" and schema["queries"]["kind"] == "entity"
    assert schema["split"]["method"] == ("leave_last_out" if timed else "random")
    alt = yaml.safe_load("\n".join(line[4:] for line in text.splitlines() if line.startswith("#   ")))
    assert alt["interactions"]["pairs"] == ({"rule": "next", "group": "user_id", "window": 1} if timed else
                                           {"rule": "co_occurrence", "group": "user_id", "max_items": 50})
    _profile_ok(tmp_path, text, "clicks")
    text2, _ = _init(tmp_path, tmp_path / "clicks.csv", "--task", "item-to-item")
    _profile_ok(tmp_path, text2, "clicks_i2i")


def test_one_column_and_headerless_logs_are_refused(tmp_path: Path) -> None:
    run = CliRunner()
    (tmp_path / "one.csv").write_text("item\n" + "\n".join(f"i{k % 7}" for k in range(50)) + "\n")
    r = run.invoke(app, ["init", str(tmp_path / "one.csv")])
    assert r.exit_code == 1 and "one.csv: one column ('item')" in r.stderr and "query:" not in r.stdout
    (tmp_path / "semi.csv").write_text("user;item\n" + "\n".join(f"u{k % 5};i{k % 7}" for k in range(50)) + "\n")
    r = run.invoke(app, ["init", str(tmp_path / "semi.csv")])
    assert r.exit_code == 1 and "';'-delimited" in r.stderr
    (tmp_path / "time_only.csv").write_text("item,ts\n" + "\n".join(f"i{k % 7},{k}" for k in range(50)) + "\n")
    r = run.invoke(app, ["init", str(tmp_path / "time_only.csv")])
    assert r.exit_code == 1 and "no column for the query besides the item" in r.stderr
    rng = np.random.default_rng(0)
    body = "\n".join(f"u{rng.integers(1, 60)},i{rng.integers(1, 90)},{rng.integers(1, 6)}" for _ in range(300))
    for name, head in (("numbers.csv", "1,31,2.5\n"), ("values.csv", "u7,i12,3\n")):
        (tmp_path / name).write_text(head + body + "\n")
        r = run.invoke(app, ["init", str(tmp_path / name)])
        assert r.exit_code == 1 and "the header row looks like data" in r.stderr, (name, r.stderr)
    (tmp_path / "ok.csv").write_text("user,item,rating\n" + body + "\n")
    assert run.invoke(app, ["init", str(tmp_path / "ok.csv")]).exit_code == 0


def test_init_is_capped_in_columns_with_a_message(tmp_path: Path) -> None:
    from sslkit.data.infer import MAX_COLUMNS

    wide = pl.DataFrame({f"c{j}": [j % 3, 1, 2] for j in range(MAX_COLUMNS + 1)})
    wide.write_csv(tmp_path / "wide.csv")
    r = CliRunner().invoke(app, ["init", str(tmp_path / "wide.csv")])
    assert r.exit_code == 1 and f"{MAX_COLUMNS + 1:,} columns; `sslkit init` reads at most {MAX_COLUMNS}" in r.stderr
