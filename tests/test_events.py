"""Interactions from event logs: where, pair rules, composite ids, derived catalogs, times, group splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from sslkit.data import store
from sslkit.cli import app
from sslkit.config import json_schema, validate
from sslkit.errors import ConfigError, DataError, SchemaError

RATINGS = """user,item,rating,ts,genre
1,10,5,100,a
1,11,2,101,b
1,12,4,102,c
1,13,4,102,d
2,13,5,50,d
2,10,4,60,a
3,12,3,1,c
"""


def config(tmp_path: Path, log: str | pl.DataFrame, *, items: dict[str, Any] | None = None,
           split: dict[str, Any] | None = None, queries: dict[str, Any] | None = None, **inter: Any) -> Any:
    path = tmp_path / "log.csv"
    if isinstance(log, str):
        path.write_text(log)
    else:
        log.write_csv(path)
    raw = {"base_dir": str(tmp_path), "interactions": {"path": "log.csv", "item": "item", **inter},
           "items": items or {"features": {"item": {"type": "categorical"}}},
           "split": {"validation_fraction": 0, "test_fraction": 0.34, **(split or {})}} | (
        {"queries": queries} if queries else {})
    return validate(raw, source="schema.yaml")


def pair_ids(s: store.FeatureStore, split: str | None = None) -> list[tuple[str, str]]:
    rows = np.concatenate([s.splits["train"], s.splits["test"]]) if split is None else s.splits[split]
    return sorted((str(s.queries.ids[q]), str(s.items.ids[i])) for q, i in rows)


NEXT = {"rule": "next", "group": "user", "tie_break": ["item"]}


# --- where ---------------------------------------------------------------------------------------

def test_where_keeps_matching_rows_and_reports(tmp_path: Path) -> None:
    logged: list[str] = []
    cfg = config(tmp_path, RATINGS, query="item", where="rating >= 4 AND genre <> 'd'")
    s = store.build(cfg, log=logged.append)
    assert s.report["where_kept"] == 3 and s.report["where_dropped"] == 4 and s.report["pairs_read"] == 3
    assert s.items.rows == 4  # the catalog is every item of the log, also those the filter drops
    assert any("kept 3 of 7 rows" in line for line in logged)


@pytest.mark.parametrize("where, message", [
    ("rating >>= 4", "not a valid condition: expected a column, a value or '(', got '>=' at character 9"),
    ("rating >= 4; DROP TABLE x", "';' (a second statement) at character 12 is not allowed"),
    ("SELECT 1", "a subquery (SELECT) is not allowed"), ("", "the condition is empty")])
def test_where_that_does_not_parse_is_a_config_error(tmp_path: Path, where: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"interactions\.where: ") as e:
        config(tmp_path, RATINGS, query="item", where=where)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("where, message", [("ratin >= 4", "has no column 'ratin' — did you mean 'rating'?"),
                                            ("rating + 1", "Boolean")])
def test_where_that_fails_on_the_data_names_the_key(tmp_path: Path, where: str, message: str) -> None:
    cfg = config(tmp_path, RATINGS, query="item", where=where)
    with pytest.raises(ConfigError, match=r"interactions\.where") as e:
        store.build(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_where_that_keeps_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="keeps none of the 7 rows"):
        store.build(config(tmp_path, RATINGS, query="item", where="rating > 5"))


def test_where_through_the_cli_exits_2_on_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    (tmp_path / "log.csv").write_text(RATINGS)
    (tmp_path / "s.yaml").write_text("interactions: {path: log.csv, item: item, query: user, where: 'ratng >= 4'}\n"
                                     "queries: {kind: entity, features: {user: {type: categorical}}}\n"
                                     "items: {features: {item: {type: categorical}}}\n")
    result = CliRunner().invoke(app, ["profile", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2
    assert "interactions.where 'ratng >= 4'" in result.output and "Traceback" not in result.output


# --- next ----------------------------------------------------------------------------------------

def test_next_pairs_consecutive_events_by_time_then_tie_break(tmp_path: Path) -> None:
    s = store.build(config(tmp_path, RATINGS, where="rating >= 4", time="ts", pairs=NEXT))
    # user 1: 10@100, 12@102, 13@102 (tie broken by item); user 2: 13@50, 10@60; user 3 has no positive
    assert pair_ids(s) == sorted([("10", "12"), ("12", "13"), ("13", "10")])
    assert s.report["pair_rule"] == "next" and s.report["groups"] == 2 and s.report["pairs_built"] == 3


def reference_next(log: pl.DataFrame, window: int, max_seconds: float | None) -> list[tuple[str, str]]:
    """A plain loop over each user's timeline: the definition the vectorized rule must match."""
    out = []
    for _, g in log.sort("user", "ts", "item").group_by("user", maintain_order=True):
        items, times = g["item"].to_list(), g["ts"].to_list()
        for i in range(len(items)):
            for j in range(i + 1, min(i + window, len(items) - 1) + 1):
                if (max_seconds is None or times[j] - times[i] <= max_seconds) and items[i] != items[j]:
                    out.append((str(items[i]), str(items[j])))
    return sorted(out)


@pytest.mark.parametrize("window, max_seconds", [(1, None), (3, None), (50, 5.0), (2, 0.5)])
def test_next_matches_a_reference_loop(tmp_path: Path, window: int, max_seconds: float | None) -> None:
    rng = np.random.default_rng(window)
    n = 400
    log = pl.DataFrame({"user": rng.integers(0, 30, n), "item": rng.permutation(n) % 120,
                        "ts": rng.integers(0, 40, n)})
    rule = dict(NEXT, window=window) | ({"max_seconds": max_seconds} if max_seconds else {})
    s = store.build(config(tmp_path, log, time="ts", pairs=rule, split={"test_fraction": 0.1}))
    assert pair_ids(s) == reference_next(log, window, max_seconds)


def test_next_drops_and_counts_pairs_of_an_item_with_itself(tmp_path: Path) -> None:
    log = "user,item,ts\n1,a,1\n1,a,2\n1,b,3\n2,c,1\n2,d,2\n"
    s = store.build(config(tmp_path, log, time="ts", pairs={"rule": "next", "group": "user"},
                           split={"test_fraction": 0.5}))
    assert pair_ids(s) == [("a", "b"), ("c", "d")] and s.report["self_pairs_dropped"] == 1


def test_next_within_seconds_on_parsed_datetimes(tmp_path: Path) -> None:
    log = "user,item,when\n1,a,2024-01-01 10:00:00\n1,b,2024-01-01 10:00:30\n1,c,2024-01-01 11:00:00\n" \
          "1,d,2024-01-01 11:00:10\n"
    s = store.build(config(tmp_path, log, time="when", time_format="%Y-%m-%d %H:%M:%S",
                           pairs={"rule": "next", "group": "user", "window": 3, "max_seconds": 60},
                           split={"test_fraction": 0.5}))
    assert pair_ids(s) == [("a", "b"), ("c", "d")]


def test_a_huge_timeline_with_a_wide_window_stays_linear(tmp_path: Path) -> None:
    n = 20_000
    log = pl.DataFrame({"user": np.zeros(n, int), "item": np.arange(n), "ts": np.arange(n)})
    s = store.build(config(tmp_path, log, time="ts", split={"test_fraction": 0.1},
                           pairs={"rule": "next", "group": "user", "window": 1000, "max_seconds": 2}))
    assert s.report["pairs_built"] == 2 * n - 3  # each event pairs with the next two seconds only


def test_events_without_a_group_or_time_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"1 events have no group .*\"user IS NOT NULL\""):
        store.build(config(tmp_path, "user,item,ts\n1,a,1\n,b,2\n1,c,3\n", time="ts", pairs=NEXT))
    with pytest.raises(DataError, match=r"1 events have no time \(interactions.time\).*\"ts IS NOT NULL\""):
        store.build(config(tmp_path, "user,item,ts\n1,a,1\n1,b,\n1,c,3\n", time="ts", pairs=NEXT))


# --- co_occurrence -------------------------------------------------------------------------------

ORDERS = "order,item,qty\n1,a,1\n1,b,2\n1,a,1\n1,c,1\n2,a,1\n2,d,1\n3,e,1\n"


def test_co_occurrence_all_distinct_pairs_both_ways(tmp_path: Path) -> None:
    s = store.build(config(tmp_path, ORDERS, pairs={"rule": "co_occurrence", "group": "order"},
                           split={"test_fraction": 0.25}))
    expected = [(x, y) for x in "abc" for y in "abc" if x != y] + [("a", "d"), ("d", "a")]
    assert pair_ids(s) == sorted(expected)
    assert s.report["groups_capped"] == 0 and s.report["groups"] == 3


def test_co_occurrence_caps_a_huge_basket_and_reports_it(tmp_path: Path) -> None:
    big = pl.DataFrame({"order": ["big"] * 5000, "item": [f"i{k}" for k in range(5000)]})
    small = pl.DataFrame({"order": ["s1", "s1", "s2", "s2"], "item": ["i1", "i2", "i3", "i4"]})
    logged: list[str] = []
    cfg = config(tmp_path, pl.concat([small, big]), split={"test_fraction": 0.2},
                 pairs={"rule": "co_occurrence", "group": "order", "max_items": 10})
    s = store.build(cfg, log=logged.append)
    assert s.report["pairs_built"] == 10 * 9 + 2 + 2  # not 5000 * 4999
    assert (s.report["groups_capped"], s.report["items_capped"], s.report["largest_group"]) == (1, 4990, 5000)
    assert any("1 groups have more than max_items 10" in line and "4,990 items left out" in line for line in logged)
    kept = {i for p in pair_ids(s) for i in p}
    assert {f"i{k}" for k in range(10)} <= kept and "i10" not in kept  # the first 10 in file order


def test_co_occurrence_time_is_the_later_event(tmp_path: Path) -> None:
    log = "order,item,ts\n1,a,5\n1,b,9\n2,c,1\n2,d,2\n"
    s = store.build(config(tmp_path, log, time="ts", pairs={"rule": "co_occurrence", "group": "order"},
                           split={"method": "time", "test_fraction": 0.5}))
    assert pair_ids(s, "test") == [("a", "b"), ("b", "a")]


# --- composite ids -------------------------------------------------------------------------------

PIZZAS = "order,name,size,price\n1,margherita,L,12\n1,hawaiian,M,10\n2,margherita,M,9\n2,hawaiian,M,10\n" \
         "3,margherita,L,12\n3,veggie,S,8\n"


def test_composite_item_ids_joined_with_the_separator(tmp_path: Path) -> None:
    items = {"id_separator": "/", "features": {"name": {"type": "categorical"}, "size": {"type": "categorical"},
                                               "price": {"type": "numeric", "buckets": 2}}}
    cfg = config(tmp_path, PIZZAS, item=["name", "size"], items=items,
                 pairs={"rule": "co_occurrence", "group": "order"})
    s = store.build(cfg)
    assert list(s.items.ids) == ["margherita/L", "hawaiian/M", "margherita/M", "veggie/S"]
    assert ("margherita/L", "hawaiian/M") in pair_ids(s) and cfg.item_id() == "name+size"


def test_composite_ids_in_an_items_table(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("name,size,price\nmargherita,L,12\nhawaiian,M,10\nmargherita,M,9\n")
    items = {"path": "items.csv", "id": ["name", "size"], "features": {"price": {"type": "numeric", "buckets": 2}}}
    s = store.build(config(tmp_path, PIZZAS, item=["name", "size"], items=items,
                           pairs={"rule": "co_occurrence", "group": "order"}))
    assert list(s.items.ids) == ["margherita|L", "hawaiian|M", "margherita|M"]
    assert s.report["unknown_item_pairs"] > 0  # veggie|S is not in the table


def test_composite_id_with_an_empty_part_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"column 'name\+size' \(interactions\.item\) has 1 empty id"):
        store.build(config(tmp_path, PIZZAS + "4,veggie,,8\n", item=["name", "size"], query="order",
                           items={"features": {"name": {"type": "categorical"}}}))


@pytest.mark.parametrize("item, message", [(["name"], "composite key"), (["name", "name"], "composite key")])
def test_composite_id_needs_two_distinct_columns(tmp_path: Path, item: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, PIZZAS, item=item, query="order")


def test_id_separator_must_not_be_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"items\.id_separator"):
        config(tmp_path, PIZZAS, query="order",
               items={"id_separator": "", "features": {"item": {"type": "categorical"}}})


# --- catalog derived from the log ----------------------------------------------------------------

def test_a_feature_that_varies_within_an_id_is_an_error_naming_it(tmp_path: Path) -> None:
    log = "user,item,price,brand\n1,a,10,x\n2,a,12,x\n3,b,5,y\n3,b,,y\n"
    items = {"features": {"price": {"type": "numeric", "buckets": 2}, "brand": {"type": "categorical"}}}
    with pytest.raises(DataError, match=r"items\.features\.price \(column 'price'\) differs within one id: 'a' "
                                        r"has 10 and 12 \(1 ids vary\)") as e:
        store.build(config(tmp_path, log, query="user", items=items))
    assert "items.aggregate: {price: first}" in e.value.hint and "mean" in e.value.hint


@pytest.mark.parametrize("how, value", [("first", 10.0), ("last", 12.0), ("mean", 12.5), ("max", 14.0),
                                        ("min", 10.0), ("mode", 14.0)])
def test_a_stated_aggregation_picks_one_value_per_id(tmp_path: Path, how: str, value: float) -> None:
    log = "user,item,price\n1,a,10\n2,a,14\n3,a,14\n3,b,5\n4,b,\n5,a,12\n"
    items = {"aggregate": {"price": how}, "features": {"price": {"type": "numeric", "dense": True}}}
    cfg = config(tmp_path, log, query="user", items=items)
    frame, _ = store._entity_frame(cfg, pl.read_csv(tmp_path / "log.csv", schema_overrides={"item": pl.String}),
                                   "log.csv", entity="items")
    assert frame.rows() == [("a", value), ("b", 5.0)]  # an empty value never counts as a difference


@pytest.mark.parametrize("aggregate, message", [("mean", "numeric features only"),
                                                ({"brand": "mean"}, "needs a numeric feature"),
                                                ({"colour": "first"}, "not a feature here"),
                                                ("average", "Input should be")])
def test_bad_aggregations_are_config_errors(tmp_path: Path, aggregate: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, RATINGS, query="user",
               items={"aggregate": aggregate, "features": {"brand": {"type": "categorical"}}})


# --- time ----------------------------------------------------------------------------------------

def test_time_built_from_several_columns_with_a_format(tmp_path: Path) -> None:
    log = "user,item,date,clock\n1,a,03/01/2024,10:00\n1,b,02/01/2024,09:00\n2,c,01/01/2024,08:00\n2,d,01/01/2024,07:00\n"
    s = store.build(config(tmp_path, log, time="when", time_from=["date", "clock"], time_format="%d/%m/%Y %H:%M",
                           pairs={"rule": "next", "group": "user"}, split={"test_fraction": 0.5}))
    assert pair_ids(s) == [("b", "a"), ("d", "c")]  # ordered by the parsed time, not the file


def test_a_time_that_does_not_match_the_format(tmp_path: Path) -> None:
    log = "user,item,date\n1,a,2024-01-03\n1,b,03.01.2024\n"
    with pytest.raises(DataError, match=r"1 of 2 times cannot be read with interactions.time_format '%Y-%m-%d', "
                                        r"e.g. '03.01.2024'"):
        store.build(config(tmp_path, log, query="user", time="date", time_format="%Y-%m-%d"))


@pytest.mark.parametrize("inter, message", [
    ({"time_format": "%Y"}, "need 'time'"),
    ({"time": "t", "time_format": "YYYY-MM-DD"}, "no %-directive"),
    ({"time": "t", "time_from": []}, "at least 1"),
])
def test_time_keys_validated(tmp_path: Path, inter: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, RATINGS, query="user", **inter)


def test_time_from_must_not_overwrite_a_column(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="column 'ts' exists"):
        store.build(config(tmp_path, RATINGS, query="user", time="ts", time_from=["rating", "genre"]))


# --- pair rule keys ------------------------------------------------------------------------------

@pytest.mark.parametrize("inter, extra, message", [
    ({"query": "user", "pairs": NEXT, "time": "ts"}, {}, "interactions.query: .*drop 'query'"),
    ({}, {}, "interactions.query: required key is missing"),
    ({"pairs": NEXT}, {}, "orders events by time"),
    ({"pairs": {"rule": "co_occurrence", "group": "u", "window": 2}}, {}, "apply to rule next"),
    ({"pairs": {"rule": "next", "group": "u", "max_items": 9}, "time": "ts"}, {}, "applies to rule co_occurrence"),
    ({"pairs": {"rule": "next", "group": "u", "window": 0}, "time": "ts"}, {}, "greater than or equal to 1"),
    ({"pairs": {"rule": "co_occurrence", "group": "u", "max_items": 1}}, {}, "greater than or equal to 2"),
    ({"pairs": {"rule": "after", "group": "u"}}, {}, "'next' or 'co_occurrence'"),
    ({"pairs": {"rule": "co_occurrence", "group": "u", "windw": 2}}, {}, "did you mean 'window'"),
    ({"pairs": {"rule": "co_occurrence", "group": "u"}},
     {"queries": {"kind": "entity", "features": {"u": {"type": "categorical"}}}}, "needs queries.kind: item"),
])
def test_pair_rule_keys_validated(inter: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    raw = {"interactions": {"path": "x.csv", "item": "item", **inter},
           "items": {"features": {"item": {"type": "categorical"}}}, **extra}
    with pytest.raises(ConfigError, match=message):
        validate(raw, source="schema.yaml")


def test_pair_rule_column_missing_from_the_log(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"column 'usr' \(interactions.pairs.group\) not found"):
        store.build(config(tmp_path, RATINGS, time="ts", pairs={"rule": "next", "group": "usr"}))


# --- splits --------------------------------------------------------------------------------------

def sessions(n_groups: int = 40, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, n_groups)
    group = np.repeat(np.arange(n_groups), sizes)
    return pl.DataFrame({"session": group, "item": rng.integers(0, 50, len(group)),
                         "ts": group * 100 + np.arange(len(group))})


@pytest.mark.parametrize("method", ["random", "time"])
def test_group_split_keeps_each_group_on_one_side(tmp_path: Path, method: str) -> None:
    log = sessions()
    cfg = config(tmp_path, log, query="session", time="ts",
                 split={"method": method, "group": "session", "test_fraction": 0.25},
                 queries={"kind": "entity", "features": {"session": {"type": "categorical"}}})
    s = store.build(cfg)
    train_q = {s.queries.ids[q] for q, _ in s.splits["train"]}
    test_q = {s.queries.ids[q] for q, _ in s.splits["test"]}
    assert train_q and test_q and not train_q & test_q
    assert abs(len(s.splits["test"]) / log.height - 0.25) < 0.05
    if method == "time":
        assert min(int(q) for q in test_q) > max(int(q) for q in train_q)  # the latest sessions are test
    assert s.report["test_groups"] == len(test_q)


def test_group_split_of_next_pairs_by_user(tmp_path: Path) -> None:
    log = sessions(60).rename({"session": "user"})
    cfg = config(tmp_path, log, time="ts", pairs={"rule": "next", "group": "user"},
                 split={"group": "user", "test_fraction": 0.2, "seed": 3})
    s = store.build(cfg)
    assert 0 < s.report["test_groups"] < s.report["split_groups"]
    assert abs(len(s.splits["test"]) / s.report["pairs_read"] - 0.2) < 0.06


def test_one_group_cannot_be_split(tmp_path: Path) -> None:
    cfg = config(tmp_path, "o,item\n1,a\n1,b\n1,c\n", pairs={"rule": "co_occurrence", "group": "o"},
                 split={"group": "o"})
    with pytest.raises(DataError, match="one group"):
        store.build(cfg)


def test_leave_last_out_holds_out_each_users_latest(tmp_path: Path) -> None:
    rows = [(u, f"i{u}_{k}", 100 - k) for u, n in ((1, 10), (2, 3), (3, 1)) for k in range(n)]
    log = pl.DataFrame(rows, schema=["user", "item", "ts"], orient="row")
    s = store.build(config(tmp_path, log, query="user", time="ts",
                           split={"method": "leave_last_out", "test_fraction": 0.2},
                           queries={"kind": "entity", "features": {"user": {"type": "categorical"}}}))
    test = pair_ids(s, "test")
    # user 1: 10 pairs → the latest 2 (smallest k has the largest ts); user 2: 3 → 1; user 3: one pair stays in train
    assert test == [("1", "i1_0"), ("1", "i1_1"), ("2", "i2_0")]
    assert (s.report["split_groups"], s.report["test_groups"]) == (3, 2)


def test_split_keys_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="applies to methods random, time and leave_last_out"):
        config(tmp_path, RATINGS, query="user", split={"method": "column", "column": "c", "group": "user"})
    with pytest.raises(ConfigError, match="leave_last_out needs interactions.time"):
        config(tmp_path, RATINGS, query="user", split={"method": "leave_last_out"})


def test_json_schema_documents_the_new_keys() -> None:
    props = json_schema()["$defs"]
    assert {"where", "pairs", "time_from", "time_format"} <= set(props["Interactions"]["properties"])
    assert {"rule", "group", "window", "max_seconds", "max_items", "tie_break"} <= set(props["PairRule"]["properties"])
    assert {"id_separator", "aggregate"} <= set(props["Items"]["properties"])
    assert "group" in props["Split"]["properties"]


@pytest.mark.parametrize("pairs", [NEXT | {"window": 2, "max_seconds": 60}, {"rule": "co_occurrence", "group": "o"},
                                   {"rule": "co_occurrence", "group": ["o", "day"], "max_items": 9}])
def test_the_resolved_config_of_a_run_validates_again(pairs: dict[str, Any]) -> None:
    from sslkit.config import dump_config

    raw = {"interactions": {"path": "x.csv", "item": ["name", "size"], "time": "t", "time_from": ["d", "h"],
                            "time_format": "%d/%m/%Y %H:%M", "where": "qty > 0", "pairs": pairs},
           "items": {"aggregate": {"price": "mode"}, "features": {"price": {"type": "numeric"}}},
           "split": {"method": "time", "group": "o"}}
    cfg = validate(raw, source="schema.yaml")
    assert validate(dump_config(cfg), source="run.json") == cfg  # a run's saved config loads back


def test_leave_last_out_needs_every_time(tmp_path: Path) -> None:
    cfg = config(tmp_path, "user,item,ts\n1,a,1\n1,b,\n1,c,3\n", query="user", time="ts",
                 split={"method": "leave_last_out"}, queries={"kind": "entity", "features": {"user": {"type": "categorical"}}})
    with pytest.raises(DataError, match=r"1 pairs have no time .*\"ts IS NOT NULL\""):
        store.build(cfg)


def test_composite_query_ids_of_an_entity_from_the_log(tmp_path: Path) -> None:
    log = "shop,customer,item,age\ns1,7,a,30\ns1,7,b,30\ns2,7,a,41\ns2,8,c,25\ns1,8,b,25\n"
    cfg = config(tmp_path, log, query=["shop", "customer"], split={"test_fraction": 0.4},
                 queries={"kind": "entity", "id_separator": ":", "features": {"age": {"type": "numeric", "buckets": 2}}})
    s = store.build(cfg)
    assert list(s.queries.ids) == ["s1:7", "s2:7", "s2:8", "s1:8"]  # the same customer in two shops: two queries
    assert pair_ids(s) == sorted([("s1:7", "a"), ("s1:7", "b"), ("s2:7", "a"), ("s2:8", "c"), ("s1:8", "b")])
