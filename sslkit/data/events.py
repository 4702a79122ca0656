"""Interactions from an event log, as the schema declares them (DESIGN §1).

A log has one row per event — a rating, a view, an order line — not one per positive pair. This
module turns it into the pairs the store encodes: composite ids (`item: [name, size]`), a time
column built from several columns or parsed with a format, a row filter (`where`, parsed by
`sslkit.data.where` into a Polars expression), item-to-item pair rules (`next` in a timeline, `co_occurrence` in a basket), a
catalog derived from the log when there is no items file, and group-aware / leave-last-out splits.
Everything is Polars or numpy on whole columns; nothing loops over rows in Python.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Callable

import numpy as np
import polars as pl

from sslkit.config import Aggregation, Columns, Config, Feature, Interactions, PairRule, id_column
from sslkit.errors import ConfigError, DataError, ResourceError, SchemaError
from sslkit.data.schema import check_ids, require_columns
from sslkit.data.where import WhereError, columns_of, parse, to_polars

Log = Callable[[str], None]


def columns(value: Columns | None) -> list[str]:
    """A column spec as a list (a composite key's parts, or the one column)."""
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def id_parts(cfg: Config, entity: str) -> tuple[list[str], str]:
    """(source columns, separator) of the items' (or queries') id in its own table."""
    if entity == "items":
        return columns(cfg.items.id or cfg.interactions.item), cfg.items.id_separator
    return columns(cfg.queries.id or cfg.interactions.query), cfg.queries.id_separator


def id_sources(cfg: Config) -> list[str]:
    """Log columns read as text, so that ids keep their leading zeros ('007')."""
    ic = cfg.interactions
    return list(dict.fromkeys(columns(ic.item) + columns(ic.query)))


def with_id(df: pl.DataFrame, parts: list[str], separator: str, *, path: str = "the table",
            key: str = "items.id_separator") -> pl.DataFrame:
    """Add the composite id column ('name+size' holding 'Margherita|L'); a single column stays as it is.

    A row with an empty part gets no id (null), which `check_ids` reports. A part that holds the
    separator is refused: ('hawaiian|XL', 'L') and ('hawaiian', 'XL|L') would join to one id.

    Raises:
        DataError: a part holds the separator (naming the row, the column and `key`).
    """
    if len(parts) < 2 or not set(parts) <= set(df.columns) or id_column(parts) in df.columns:
        return df  # one column, or a table that lacks a part (its id column is reported missing later)
    text = [pl.col(c).cast(pl.String) for c in parts]
    clash = df.select(pl.any_horizontal([t.str.contains(separator, literal=True) for t in text]).arg_true().head(1))
    if clash.height:
        row = int(clash.item())
        col = next(c for c in parts if separator in str(df[c][row] or ""))
        value = str(df[col][row])
        raise DataError(f"{path}: row {row + 1}: column '{col}' of the composite id {parts} holds the separator "
                        f"{separator!r} ({value[:60]!r}), so two different ids could join to one",
                        hint=f"set {key} to a string that no id column holds, e.g. '#'")
    return df.with_columns(pl.concat_str(text, separator=separator).alias(id_column(parts)))


def read_log(raw: pl.DataFrame, cfg: Config, *, path: str, log: Log) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """The interactions file as (events, pairs, report).

    `events` is every row of the file with its ids and time column built (the source of a catalog
    derived from the log); `pairs` holds the rows `where` keeps, or the pairs `pairs` builds from them.

    Raises:
        SchemaError: a column the schema names is missing. ConfigError: `where` fails on this file.
        DataError: empty ids, unparsable times, nothing left after the filter or the pair rule.
    """
    ic = cfg.interactions
    if ic.time_from and ic.time in raw.columns:
        raise SchemaError(f"{path}: column '{ic.time}' exists, and interactions.time_from would build it",
                          hint="give interactions.time a new name for the built column")
    require_columns(raw, _needed(cfg), path=path)
    q_key = "items.id_separator" if cfg.item_to_item() else "queries.id_separator"
    q_sep = cfg.items.id_separator if cfg.item_to_item() else cfg.queries.id_separator
    events = with_id(raw, columns(ic.item), cfg.items.id_separator, path=path)
    events = with_id(events, columns(ic.query), q_sep, path=path, key=q_key)
    events = _with_time(events, ic, path=path)
    report: dict[str, Any] = {"events_read": raw.height}
    kept = _where(events, ic, path=path, report=report, log=log)
    ids = {ic.item_column(): "interactions.item"} | ({ic.query_column(): "interactions.query"} if ic.query else {})
    for col, key in ids.items():
        check_ids(kept, col, path=path, key=key, unique=False)
    pairs = kept if ic.pairs is None else build_pairs(kept, cfg, path=path, report=report, log=log)
    return events, pairs, report


def _needed(cfg: Config) -> dict[str, str]:
    """Every log column the schema names → the key naming it."""
    ic, sp = cfg.interactions, cfg.split
    need = {c: "interactions.item" for c in columns(ic.item)} | {c: "interactions.query" for c in columns(ic.query)}
    if ic.time_from:
        need |= {c: "interactions.time_from" for c in ic.time_from}
    elif ic.time:
        need[ic.time] = "interactions.time"
    if ic.pairs:
        need |= {c: "interactions.pairs.group" for c in columns(ic.pairs.group)}
        need |= {c: "interactions.pairs.tie_break" for c in ic.pairs.tie_break}
    if sp.method == "column":
        need[sp.column or ""] = "split.column"
    return need | {c: "split.group" for c in columns(sp.group)}


def _with_time(df: pl.DataFrame, ic: Interactions, *, path: str) -> pl.DataFrame:
    """Build `time` from `time_from` (joined with a space) and parse it with `time_format`."""
    if not ic.time or not (ic.time_from or ic.time_format):
        return df
    text = (pl.concat_str([pl.col(c).cast(pl.String) for c in ic.time_from], separator=" ") if ic.time_from
            else pl.col(ic.time).cast(pl.String))
    fmt, key = ic.time_format, "interactions.time_format" if ic.time_format else "interactions.time_from"
    parsed = text.str.strptime(pl.Datetime, fmt, strict=False) if fmt else text.str.to_datetime(strict=False)
    try:
        out = df.with_columns(text.alias("_text"), parsed.alias("_time"))
    except pl.exceptions.PolarsError as e:
        raise ConfigError(f"{key}: {fmt!r} is not a usable time format ({str(e).splitlines()[0]})",
                          hint="use strftime codes, e.g. '%Y-%m-%d %H:%M:%S'")
    bad = out.filter(pl.col("_time").is_null() & pl.col("_text").is_not_null())
    if bad.height:
        how = f"with interactions.time_format {fmt!r}" if fmt else "as a date/time"
        raise DataError(f"{path}: {bad.height:,} of {df.height:,} times cannot be read {how}, e.g. {bad['_text'][0]!r}",
                        hint="fix interactions.time_format (strftime codes, e.g. '%d/%m/%Y %H:%M')")
    return out.drop("_text", *([] if ic.time_from else [ic.time])).rename({"_time": ic.time})


def _where(df: pl.DataFrame, ic: Interactions, *, path: str, report: dict[str, Any], log: Log) -> pl.DataFrame:
    """The rows where `interactions.where` holds (evaluated by Polars, never by Python)."""
    if ic.where is None:
        return df
    try:
        tree = parse(ic.where)  # validated with the config already; the tree is what runs
    except WhereError as e:
        raise ConfigError(f"interactions.where: {e}")
    for name in columns_of(tree):
        if name not in df.columns:
            close = difflib.get_close_matches(name, df.columns, n=1)
            raise ConfigError(f"interactions.where {ic.where!r}: {path} has no column '{name}'",
                              hint=f"did you mean '{close[0]}'?" if close else f"columns are: {', '.join(df.columns[:12])}")
    try:
        kept = df.filter(to_polars(tree))
    except pl.exceptions.PolarsError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"interactions.where {ic.where!r} on {path}: {first}",
                          hint="write a condition over this file's columns, e.g. \"rating >= 4\"")
    report.update(where_kept=kept.height, where_dropped=df.height - kept.height)
    log(f"interactions.where {ic.where!r}: kept {kept.height:,} of {df.height:,} rows")
    if kept.height == 0:
        raise DataError(f"{path}: interactions.where {ic.where!r} keeps none of the {df.height:,} rows",
                        hint="loosen the condition")
    return kept


def _sort_keys(df: pl.DataFrame, cols: list[str]) -> list[pl.Expr]:
    """Sort keys; text that holds numbers sorts as numbers ('2' < '10'), other text before them.

    A text column whose values are all integers sorts by the integers alone (about 3x faster).
    """
    keys: list[pl.Expr] = []
    for c in cols:
        if df.schema[c] == pl.String:
            as_int = pl.col(c).cast(pl.Int64, strict=False)
            keys.append(as_int)
            if df.select(as_int.null_count() > pl.col(c).null_count()).item():
                keys.append(pl.col(c))
        else:
            keys.append(pl.col(c))
    return keys


def build_pairs(kept: pl.DataFrame, cfg: Config, *, path: str, report: dict[str, Any], log: Log) -> pl.DataFrame:
    """Item-to-item pairs from the events of each group, in group order (ids numerically), then time.

    Returns:
        A frame with the query item (`query_<item>`), the item, and the time, group and split
        columns of the pair's target event (co_occurrence: the later time of the two events).
    """
    ic = cfg.interactions
    rule: PairRule = ic.pairs  # type: ignore[assignment]
    item, query, group = ic.item_column(), ic.query_column(), columns(rule.group)
    if query in kept.columns:
        raise SchemaError(f"{path}: column '{query}' exists; interactions.pairs names its query column so",
                          hint="rename that column in the file")
    timed = [ic.time] if ic.time and rule.rule == "next" else []
    for cols, key in ((group, f"group (interactions.pairs.group: {rule.group})"), (timed, "time (interactions.time)")):
        nulls = kept.select(pl.any_horizontal(pl.col(cols).is_null()).sum()).item() if cols else 0
        if nulls:
            raise DataError(f"{path}: {nulls:,} events have no {key}",
                            hint=f"drop them with interactions.where: \"{cols[0]} IS NOT NULL\"")
    carry = list(dict.fromkeys([*group, *columns(cfg.split.group)] + [c for c in (ic.time, cfg.split.column) if c]))
    carry = [c for c in carry if c != item]
    ev = kept.select(list(dict.fromkeys([item, *carry, *rule.tie_break]))).with_row_index("_event")
    order = [*group] + ([ic.time] if ic.time else []) + rule.tie_break + ["_event"]  # _event: unique, so no ties
    ev = ev.sort(_sort_keys(ev, order))  # (nulls_last would be ~4x slower)
    if rule.rule == "next":
        pairs = _next_pairs(ev, rule, item=item, query=query, time=ic.time, carry=carry, path=path)
    else:
        pairs = _co_occurrence(ev, rule, item=item, query=query, time=ic.time, carry=carry, report=report, log=log,
                               path=path)
    self_pairs = pairs.filter(pl.col(query) == pl.col(item)).height
    pairs = pairs.filter(pl.col(query) != pl.col(item))
    groups = ev.select(pl.struct(group).n_unique()).item()
    report.update(pair_rule=rule.rule, groups=groups, pairs_built=pairs.height, self_pairs_dropped=self_pairs)
    log(f"interactions.pairs ({rule.rule}): {pairs.height:,} pairs from {ev.height:,} events in {groups:,} groups"
        + (f"; {self_pairs:,} pairs of an item with itself dropped" if self_pairs else ""))
    if pairs.height == 0:
        raise DataError(f"{path}: interactions.pairs ({rule.rule}) built no pairs: no group has two events",
                        hint="check interactions.pairs.group (and interactions.where)")
    return pairs.select(query, item, *carry)


def _next_pairs(ev: pl.DataFrame, rule: PairRule, *, item: str, query: str, time: str | None,
                carry: list[str], path: str) -> pl.DataFrame:
    """Each event → the next `window` events of its group (within `max_seconds` when set)."""
    group = columns(rule.group)
    ev = _group_bounds(ev, group)
    pos = pl.int_range(pl.len(), dtype=pl.Int64) - pl.col("_start")
    count = pl.min_horizontal(pl.lit(rule.next_window(), pl.Int64), pl.col("_end") - pl.int_range(pl.len(), dtype=pl.Int64))
    if rule.max_seconds is not None and time is not None:
        secs = _seconds(ev, time, path=path)
        end = secs.search_sorted(secs + rule.max_seconds, side="right").over(group).cast(pl.Int64)
        count = pl.min_horizontal(count, end - pos - 1)
    seeds = ev.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_seed"), count.alias("_count"))
    check_pair_budget(int(seeds["_count"].sum() or 0), ev.select(item, *carry), rule=f"next, window {rule.next_window():,}",
                      hint="lower interactions.pairs.window, or set interactions.pairs.max_seconds", path=path)
    seeds = (seeds.filter(pl.col("_count") > 0)
             .select("_seed", pl.int_ranges(pl.col("_seed") + 1, pl.col("_seed") + 1 + pl.col("_count"))
                     .alias("_target"))
             .explode("_target"))
    targets = ev.select(item, *carry)[seeds["_target"].to_numpy()]
    return targets.with_columns(ev[item].gather(seeds["_seed"]).alias(query))


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_pair_budget(pairs: int, rows: pl.DataFrame, *, rule: str, hint: str, path: str) -> None:
    """Refuse, before building them, more pairs than this machine's memory holds (an allocator abort
    would end the process with no message). A pair costs two int64 row numbers while it is built,
    then its gathered row (item and carried columns) and the query id."""
    have = physical_memory()
    per_pair = 16 + 2 * max(rows.estimated_size() / max(rows.height, 1), 8)
    need = pairs * per_pair
    if have is not None and need > have / 2:
        raise ResourceError(f"{path}: interactions.pairs ({rule}) would build {pairs:,} pairs, about "
                            f"{need / 2**30:,.1f} GiB — more than half this machine's {have / 2**30:,.1f} GiB", hint=hint)


def _group_bounds(df: pl.DataFrame, group: list[str]) -> pl.DataFrame:
    """Add `_start` / `_end`: the row index of the first / last row of each row's group (df sorted by group).

    Boundaries from comparing neighbours: linear, and ~10x faster than window expressions over groups.
    """
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    first = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in group]).fill_null(True)
    last = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(-1)) for c in group]).fill_null(True)
    return df.with_columns(pl.when(first).then(idx).forward_fill().alias("_start"),
                           pl.when(last).then(idx).backward_fill().alias("_end"))


def _seconds(ev: pl.DataFrame, time: str, *, path: str) -> pl.Expr:
    dtype = ev.schema[time]
    if dtype.is_temporal():
        return pl.col(time).dt.epoch("ms").cast(pl.Float64) / 1000.0
    if dtype.is_numeric():
        return pl.col(time).cast(pl.Float64)
    raise SchemaError(f"{path}: column '{time}' (interactions.time) holds text, so max_seconds cannot compare it",
                      hint="set interactions.time_format to parse it, e.g. '%Y-%m-%d %H:%M:%S'")


def _co_occurrence(ev: pl.DataFrame, rule: PairRule, *, item: str, query: str, time: str | None,
                   carry: list[str], report: dict[str, Any], log: Log, path: str) -> pl.DataFrame:
    """Every two distinct items of a group, both ways; a group keeps its first `max_items` items."""
    group, cap = columns(rule.group), rule.item_cap()
    first = _group_bounds(ev.unique(subset=[*group, item], keep="first", maintain_order=True), group)
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    first = first.with_columns((idx - pl.col("_start")).alias("_rank"), (pl.col("_end") - pl.col("_start") + 1).alias("_n"))
    over = first.filter((pl.col("_rank") == 0) & (pl.col("_n") > cap))
    left_out = int((over["_n"] - cap).sum()) if over.height else 0
    report.update(max_items=cap, groups_capped=over.height, items_capped=left_out,
                  largest_group=int(first["_n"].max() or 0))
    if over.height:
        log(f"warning: interactions.pairs: {over.height:,} groups have more than max_items {cap} distinct items "
            f"(largest {report['largest_group']:,}); {left_out:,} items left out of their pairs")
    sizes = first.filter(pl.col("_rank") == 0).select(pl.min_horizontal("_n", pl.lit(cap, pl.Int64)).cast(pl.Int64))
    check_pair_budget(int(sizes.select(pl.col("_n") * (pl.col("_n") - 1)).sum().item() or 0), ev.select(item, *carry),
                      rule=f"co_occurrence, max_items {cap:,}", hint="lower interactions.pairs.max_items", path=path)
    kept = first.filter(pl.col("_rank") < cap).with_row_index("_row")
    left = kept.select(*group, pl.col(item).alias(query), "_row", *([pl.col(time).alias("_tq")] if time else []))
    right = kept.select(*group, item, "_rank", *[c for c in carry if c not in group])
    pairs = left.join(right, on=group, how="inner").filter(pl.col(query) != pl.col(item)).sort("_row", "_rank")
    if time:
        pairs = pairs.with_columns(pl.max_horizontal("_tq", time).alias(time))
    return pairs


def catalog(df: pl.DataFrame, *, id_col: str, features: dict[str, Feature],
            aggregate: Aggregation | dict[str, Aggregation], path: str, section: str) -> pl.DataFrame:
    """One row per id from the rows of a log, in order of first appearance.

    A feature whose (non-empty) values differ within one id is an error naming the id, unless
    `aggregate` says how to choose: first / last (non-empty value in file order), mode (the most
    frequent; ties → the smallest), or min / max / mean for numeric features.

    Raises:
        DataError: a feature varies within an id and its aggregation is `error`.
    """
    how: dict[str, tuple[str, Aggregation]] = {}
    for name, feat in features.items():
        col = feat.source(name)
        if col != id_col and col not in how:
            how[col] = (name, aggregate if isinstance(aggregate, str) else aggregate.get(name, "error"))
    rows = df.filter(pl.col(id_col).is_not_null())
    strict = [c for c, (_, m) in how.items() if m == "error"]
    if strict:
        counts = rows.group_by(id_col, maintain_order=True).agg(pl.col(c).drop_nulls().n_unique() for c in strict)
        for col in strict:
            varies = counts.filter(pl.col(col) > 1)
            if varies.height:
                _varies_error(rows, varies, col=col, name=how[col][0], id_col=id_col, path=path, section=section,
                              numeric=features[how[col][0]].type == "numeric")
    return rows.group_by(id_col, maintain_order=True).agg(_aggregate(pl.col(c), m) for c, (_, m) in how.items())


def _aggregate(col: pl.Expr, how: Aggregation) -> pl.Expr:
    values = col.drop_nulls()
    if how == "last":
        return values.last()
    if how == "mode":
        return values.mode().sort().first()
    if how in ("min", "max", "mean"):
        return getattr(values, how)()
    return values.first()  # first, and error (the values agree)


def _varies_error(rows: pl.DataFrame, varies: pl.DataFrame, *, col: str, name: str, id_col: str, path: str,
                  section: str, numeric: bool) -> None:
    example = varies[id_col][0]
    values = rows.filter(pl.col(id_col) == example)[col].drop_nulls().unique(maintain_order=True).to_list()[:2]
    choices = "first, last, mode" + (", min, max, mean" if numeric else "")
    raise DataError(f"{path}: {section}.features.{name} (column '{col}') differs within one id: '{example}' has "
                    f"{values[0]!r} and {values[1]!r} ({varies.height:,} ids vary)",
                    hint=f"set {section}.aggregate: {{{name}: first}} (one of {choices}), or give {section}.path "
                         "with one row per id")


def test_mask(pairs: pl.DataFrame, cfg: Config, report: dict[str, Any]) -> np.ndarray:
    """Which pairs are test (bool [n]) for a group-aware split or leave_last_out.

    random / time with `split.group`: whole groups go to test — in a seeded random order, or the
    latest groups (by their latest pair) first — until the test share is closest to test_fraction.
    leave_last_out: each group's (default: each query's) latest round(n·test_fraction) pairs, at
    least one, and never all (a group with one pair stays in training). Ties in time keep file order.
    """
    sp, ic = cfg.split, cfg.interactions
    unit = columns(sp.group) or [ic.query_column()]
    if sp.method == "leave_last_out":
        if nulls := pairs[ic.time or ""].null_count():
            raise DataError(f"split.method leave_last_out: {nulls:,} pairs have no time (interactions.time)",
                            hint=f"drop them with interactions.where: \"{ic.time} IS NOT NULL\"")
        return _leave_last_out(pairs, unit, time=ic.time or "", fraction=sp.test_fraction, report=report)
    by_time = sp.method == "time"
    rank = pl.col(ic.time or "").rank("ordinal")  # over all pairs, ties in file order
    frame = pairs.with_row_index("_i").with_columns(*([rank.alias("_r")] if by_time else [])).select(
        pl.col("_i").first().over(unit).alias("_g"), *([pl.col("_r").max().over(unit).alias("_t")] if by_time else []))
    groups, inverse, sizes = np.unique(frame["_g"].to_numpy(), return_inverse=True, return_counts=True)
    if len(groups) < 2:
        raise DataError(f"split.group: all {pairs.height:,} pairs are in one group, so a split cannot keep groups whole",
                        hint="choose a finer split.group, or drop it")
    if by_time:
        latest = np.zeros(len(groups), np.int64)
        latest[inverse] = frame["_t"].to_numpy()
        order = np.argsort(-latest, kind="stable")
    else:
        order = np.random.default_rng(sp.seed).permutation(len(groups))
    cum = np.concatenate([[0], np.cumsum(sizes[order])])
    target = int(round(pairs.height * sp.test_fraction))
    k = int(np.searchsorted(cum, target, side="right")) - 1  # groups whose total stays within the target
    if k + 1 < len(cum) and abs(cum[k + 1] - target) < abs(cum[k] - target):
        k += 1
    k = min(max(k, 1), len(groups) - 1)
    report.update(split_groups=len(groups), test_groups=k)
    return np.isin(inverse, order[:k])


def _leave_last_out(pairs: pl.DataFrame, unit: list[str], *, time: str, fraction: float,
                    report: dict[str, Any]) -> np.ndarray:
    ranked = pairs.select(pl.col(time).rank("ordinal").over(unit).alias("_pos"), pl.len().over(unit).alias("_n"))
    n = ranked["_n"].to_numpy().astype(np.int64)
    k = np.minimum(np.maximum(np.floor(n * fraction + 0.5), 1), n - 1)
    is_test = ranked["_pos"].to_numpy() > n - k
    units = pairs.select(pl.struct(unit).n_unique()).item()
    report.update(split_groups=units, test_groups=int(pairs.filter(pl.Series(is_test)).select(pl.struct(unit).n_unique()).item()))
    return is_test


def row_lookup(df: pl.DataFrame, id_col: str) -> pl.DataFrame:
    """(id as a string, row number) for every row of an entity table: how pairs find their rows.

    Shared by the in-memory build (`store`) and the streamed one (`pairstream`), so both map ids the same way.
    """
    return df.select(pl.col(id_col).cast(pl.String).alias("id"), pl.int_range(pl.len(), dtype=pl.Int64).alias("row"))
