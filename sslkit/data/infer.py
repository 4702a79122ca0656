"""`sslkit init`: infer a starting schema from the data and write it as commented YAML.

Heuristics (each reported in a YAML comment so the user can check them):
* roles first, each column at most one role: a time column (temporal dtype or a time-like name; a
  date column and a time-of-day column become `time_from`), a rating/score column (proposed as a
  `where` filter, never a feature), the item column, then the query column;
* item-to-item or user-to-item from how the query column's values relate to the catalog ids: the
  share of distinct query values that are catalog ids (compared as text), the column name
  (user/customer/session… → entity) and, for numeric ids, whether a value's popularity as a query
  follows its popularity as an item — two ranges of integers overlap by chance (user 1 ≠ movie 1);
* composite keys when one column repeats but a pair of columns identifies the row (items table), or
  when item features vary within one id but not within a pair (a pizza's price per name and size);
* list columns → multi_categorical; strings where most rows contain one of `| ; ,` and the split
  values repeat across rows → multi_categorical with that separator; strings of several words with
  many distinct values → text; floats and wide-ranged integers → numeric; else categorical. A bag's
  `max_len` is its p99, and the comment says how many rows it truncates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from sslkit.data import io
from sslkit.errors import ConfigError, DataError

_SEPARATORS = ("|", ";", ",")
_TIME = re.compile(r"(^|_)(ts|time|timestamp|date|datetime|created|at)($|_)", re.I)
_RATING = re.compile(r"rating|score|stars?$|grade|preference", re.I)
_ENTITY = re.compile(r"user|customer|client|session|member|account|visitor|buyer|person|profile|order|basket", re.I)
_ITEM = re.compile(r"item|product|sku|movie|film|article|track|song|book|video|pizza|name|title", re.I)
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%d/%m/%Y %H:%M:%S",
                 "%m/%d/%Y %H:%M:%S", "%d/%m/%Y", "%m/%d/%Y")


@dataclass
class Roles:
    """What each column of the interactions is for, and why (the reasons become comments)."""

    item: list[str]
    query: str | None = None
    kind: str = "item"
    time: str | None = None
    time_from: list[str] = field(default_factory=list)
    time_format: str | None = None
    rating: str | None = None
    why: dict[str, str] = field(default_factory=dict)

    def used(self) -> set[str]:
        return {*self.item, *([self.query] if self.query else []), *([self.time] if self.time else []),
                *self.time_from, *([self.rating] if self.rating else [])}


def infer_feature(s: pl.Series) -> tuple[dict[str, object], str]:
    """(feature options, reason) for one column."""
    values = s.drop_nulls()
    n, distinct = max(len(values), 1), values.n_unique()
    if isinstance(s.dtype, (pl.List, pl.Array)):
        lens = values.list.len()
        return {"type": "multi_categorical", "max_len": _max_len(lens)}, "list column" + _truncates(lens)
    if s.dtype.is_float() or (s.dtype.is_integer() and distinct > 50 and distinct < 0.5 * n):
        return {"type": "numeric", "buckets": 20}, f"numbers, {distinct} distinct"
    if s.dtype != pl.String:
        return {"type": "categorical"}, f"{distinct} distinct values"
    text = values.head(20000)
    for sep in _SEPARATORS:
        has = text.str.contains(sep, literal=True).mean() or 0.0
        if has >= 0.2:
            parts = text.str.split(sep).explode().str.strip_chars()
            # the parts repeat across rows and are short (tags, genres, ingredients), not sentences
            if parts.n_unique() < 0.5 * len(parts) and (parts.str.count_matches(" ").mean() or 0.0) < 1:
                lens = values.str.split(sep).list.len()
                return ({"type": "multi_categorical", "separator": sep, "max_len": _max_len(lens)},
                        f"'{sep}'-separated values in {has:.0%} of rows" + _truncates(lens))
    words = text.str.count_matches(r"\s+").mean() or 0.0
    if words >= 2 and distinct > 0.3 * n:
        lens = values.str.count_matches(r"\w+")
        return ({"type": "text", "max_len": _max_len(lens)},
                f"free text, {words + 1:.1f} words per row" + _truncates(lens))
    return {"type": "categorical"}, f"{distinct} distinct values"


def _max_len(lengths: pl.Series) -> int:
    p99 = lengths.quantile(0.99) or 1
    return int(max(2, min(64, round(p99))))


def _truncates(lengths: pl.Series) -> str:
    """What max_len = p99 cuts: ', max_len 8 = p99 truncates 65 of 9,742 rows (0.7%)'."""
    cap, n = _max_len(lengths), len(lengths)
    cut = int((lengths > cap).sum())
    p99 = lengths.quantile(0.99) or 1
    rule = "p99" if cap >= round(p99) else f"the cap; p99 is {p99:g}"
    return (f"; max_len {cap} ({rule}) truncates {cut:,} of {n:,} rows ({cut / max(n, 1):.1%}): raise it to keep them"
            if cut else f"; max_len {cap} truncates no row")


TASKS = ("item-to-item", "user-to-item")
MAX_COLUMNS = 2000  # init reads at most this many columns of a file (the heuristics compare columns pairwise)
_COMPOSITE_CANDIDATES = 16  # columns tried as the second part of a composite item id
_BASKET = re.compile(r"order|basket|cart|transaction|txn|invoice|receipt|ticket|checkout|session|visit", re.I)
_USER = re.compile(r"user|customer|client|member|account|visitor|buyer|person|profile|shopper|subscriber", re.I)


@dataclass
class Task:
    """One way to read the log: its queries (a column or a pair rule), the queries section and the split."""

    name: str  # item-to-item | user-to-item
    why: str
    query: str | None = None  # direct pairs: the query column
    pairs: dict[str, object] | None = None  # built pairs: {rule, group, max_items | window}
    kind: str = "item"
    split: dict[str, object] = field(default_factory=dict)
    split_why: str = ""


def infer_schema(data: str, items: str | None = None, queries: str | None = None, task: str | None = None) -> str:
    """Commented YAML for a starting schema (paths written as given).

    `task` (item-to-item | user-to-item) picks which reading of the log is written as the schema; the
    other one, when the log allows it, follows as a commented block.
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task {task!r}: use item-to-item or user-to-item")
    inter = _read_checked(data)
    items_df = _read_checked(items) if items else None
    queries_df = _read_checked(queries) if queries else None
    item_key = _entity_key(items_df, prefer="item") if items_df is not None else None
    roles = infer_roles(inter, items_df, item_key, queries_df)
    if items_df is not None and item_key and len(item_key) > 1:
        roles.why["items_id"] = f"  # composite id: '{item_key[0]}' repeats, with '{item_key[1]}' each row is unique"
    tasks = plan_tasks(inter, roles, queries_df)
    if task is not None:
        chosen = [t for t in tasks if t.name == task]
        if not chosen:
            raise ConfigError(f"--task {task}: {data} has no {task} reading — its task is {tasks[0].name}: "
                              f"{tasks[0].why.split(':')[0]}",
                              hint="drop --task, or add the column it needs (a user column, or --queries FILE)")
        tasks = chosen + [t for t in tasks if t.name != task]
    main, alt = tasks[0], (tasks[1] if len(tasks) > 1 else None)
    lines = ["# sslkit schema inferred by `sslkit init` — check every line; see schemas/reference.yaml",
             f"# task: {main.name} — {main.why}"]
    if alt is not None:
        lines.append(f"# the other reading ({alt.name}) is the commented block at the end: switching is an edit, "
                     f"or `sslkit init ... --task {alt.name}`")
    lines += [f"name: {Path(data).stem}", "interactions:", f"  path: {json.dumps(data)}"]
    lines += _task_interaction_lines(main)
    lines += _interaction_lines(inter, roles)
    lines += _queries_lines(main, roles, queries, queries_df)
    lines.append("items:")
    if items_df is not None and item_key is not None:
        lines += [f"  path: {json.dumps(items)}", f"  id: {_yaml_columns(item_key)}{roles.why.get('items_id', '')}"]
        lines += _features(items_df, indent=2)
    else:
        lines += _derived_items(inter, roles)
    lines += _split_lines(main)
    if alt is not None:
        block = ["interactions:", *_task_interaction_lines(alt), *_queries_lines(alt, roles, queries, queries_df),
                 *_split_lines(alt)]
        lines += ["", f"# ---- the other task: {alt.name} — {alt.why}",
                  "# to switch, replace the lines above that differ (interactions' query/pairs, queries, split) "
                  "with these:"]
        lines += [f"#   {line}" for line in block]
    return "\n".join(lines) + "\n"


def _read_checked(path: str) -> pl.DataFrame:
    """The table, refused when init cannot read tasks from it: too many columns, one column, or a CSV
    whose header row looks like data (a headerless file)."""
    df = io.read_table(path)
    if df.width > MAX_COLUMNS:
        raise DataError(f"{path}: {df.width:,} columns; `sslkit init` reads at most {MAX_COLUMNS}",
                        hint="keep the columns a schema needs (ids, time, features), e.g. with "
                             "polars' select, then run init on that file")
    if df.width == 1:
        name = df.columns[0]
        delim = next((d for d in (";", "\t", "|") if d in name), None)
        raise DataError(f"{path}: one column ({name!r}); a log needs a query column (a user, a session, an order, "
                        "or a query item) beside the item",
                        hint=f"the file looks {delim!r}-delimited: save it comma-separated" if delim
                        else "add the column that says who or what each row's item goes with")
    looks = _header_looks_like_data(df)
    if looks and io.infer_format(path) == "csv":
        raise DataError(f"{path}: the header row looks like data ({', '.join(repr(c) for c in looks[:3])}): "
                        "the file seems to have no header",
                        hint="add a first line naming the columns, e.g. user_id,item_id,timestamp")
    return df


_SHAPE = str.maketrans("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                       "0000000000" + "a" * 52)


def _header_looks_like_data(df: pl.DataFrame) -> list[str]:
    """The column names that look like values of their column — numbers, or the shape of the column's
    values ('u17' among 'u3', 'u42'): [] unless at least half of the columns do."""
    looks = []
    for c in df.columns:
        name = c.strip()
        if re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", name):
            looks.append(c)
            continue
        if df[c].dtype != pl.String or not re.search(r"\d", name):
            continue
        sample = df[c].drop_nulls().head(200).cast(pl.String)
        shapes = sample.str.replace_all(r"\d", "0").str.replace_all(r"[A-Za-z]", "a")
        if len(shapes) and float((shapes == name.translate(_SHAPE)).mean() or 0.0) >= 0.5:
            looks.append(c)
    return looks if len(looks) * 2 >= df.width else []


def plan_tasks(inter: pl.DataFrame, roles: Roles, queries_df: pl.DataFrame | None) -> list[Task]:
    """The readings of the log, the proposed one first.

    * query column holds catalog items → item-to-item on the given pairs;
    * a basket column (an order, session or transaction id: several items per value, bought at one time)
      and no user column → item-to-item co-purchase (`co_occurrence` within the basket, capped); the
      order id is never proposed as a user;
    * a user column → user-to-item (leave-last-out with a time column), and item-to-item from each user's
      timeline (`next`, with a time column; else co-occurrence within the user) as the other reading;
      with a basket column too, the other reading is co-purchase within the basket.
    """
    if roles.query is None:
        raise DataError("the log has no column for the query besides the item"
                        + (f" ({', '.join(roles.item)})" if roles.item else ""),
                        hint="add the column that says who or what each row's item goes with (a user, session "
                             "or order id, or a query item)")
    if roles.kind == "item":
        return [Task("item-to-item", f"pairs of items: {roles.why['kind']}", query=roles.query,
                     split=_time_split(roles, None), split_why=_split_why(roles, None))]
    free = [c for c in inter.columns if c not in roles.used() or c == roles.query]
    users = [c for c in free if _USER.search(c) and not _ITEM.search(c)]
    if queries_df is not None:
        users = [roles.query] + [u for u in users if u != roles.query]
    named = [c for c in free if c == roles.query or _BASKET.search(c) or re.search(r"(^|_)id$|Id$|ID$", c)]
    baskets = [c for c in named if c not in users and _basket(inter, c, roles)]
    basket = baskets[0] if baskets else None
    user = users[0] if users else (roles.query if basket is None else None)
    tasks = []
    if basket is not None:
        sizes = inter.group_by(basket).agg(pl.col(roles.item[0]).n_unique().alias("n"))["n"]
        cap = int(min(50, max(10, round(sizes.quantile(0.99) or 2))))
        big = int((sizes > cap).sum())
        why = (f"'{basket}' is a basket ({sizes.mean():.1f} distinct items per value, "
               + ("one time per value" if roles.time else "named like an order or session") + "): "
               "items bought together; max_items " + str(cap) + " (p99 of basket sizes, at least 10) caps "
               + (f"{big:,} bigger baskets" if big else "no basket"))
        tasks.append(Task("item-to-item", why, pairs={"rule": "co_occurrence", "group": basket, "max_items": cap},
                          split=_time_split(roles, basket), split_why=_split_why(roles, basket)))
    if user is not None:
        why = (f"'{user}' names a user" if _USER.search(user) else f"'{user}': {roles.why['kind']}")
        ut = Task("user-to-item", f"{why}: recommend items to a {user}", query=user, kind="entity",
                  split={"method": "leave_last_out"} if roles.time else {"method": "random", "test_fraction": 0.1},
                  split_why=(f"each {user}'s latest pairs are the test set" if roles.time else
                             "no time column: a random tenth of the pairs"))
        tasks.insert(0, ut)  # a user column: recommending to users comes first
        if basket is None:
            if roles.time:
                tasks.append(Task("item-to-item", f"each {user}'s timeline: an item → the item they took next",
                                  pairs={"rule": "next", "group": user, "window": 1},
                                  split=_time_split(roles, None), split_why=_split_why(roles, None)))
            else:
                tasks.append(Task("item-to-item", f"items of the same {user} (no time column to order them)",
                                  pairs={"rule": "co_occurrence", "group": user, "max_items": 50},
                                  split={"method": "random", "test_fraction": 0.1, "group": user},
                                  split_why=f"a random tenth of the {user}s, whole"))
    return tasks


def _basket(inter: pl.DataFrame, col: str, roles: Roles) -> bool:
    """An order/session/transaction id: not unique per row, several distinct items per value on average,
    and — with a time column — one time per value (an order happens at once; a user's rows do not);
    without one, the column name must say so."""
    n = inter[col].n_unique()
    if n >= inter.height or n < 2 or inter[col].dtype.is_float():
        return False
    items_per = inter.group_by(col).agg(pl.col(roles.item[0]).n_unique())[roles.item[0]].mean() or 0.0
    if items_per < 1.5:
        return False
    time_cols = roles.time_from or ([roles.time] if roles.time and roles.time in inter.columns else [])
    if time_cols:
        per = inter.group_by(col).agg(pl.struct(time_cols).n_unique().alias("t"))["t"]
        return float((per == 1).mean() or 0.0) >= 0.9 or (bool(_BASKET.search(col)) and float((per == 1).mean() or 0) >= 0.5)
    return bool(_BASKET.search(col))


def _time_split(roles: Roles, group: str | None) -> dict[str, object]:
    if not roles.time:
        return {"method": "random", "test_fraction": 0.1, **({"group": group} if group else {})}
    return {"method": "time", "test_fraction": 0.1, **({"group": group} if group else {})}


def _split_why(roles: Roles, group: str | None) -> str:
    whole = f", and one {group} is never split between train and test" if group else ""
    return ("the latest tenth of the pairs is the test set" if roles.time else
            "no time column: a random tenth of the pairs") + whole


def _task_interaction_lines(task: Task) -> list[str]:
    if task.query:
        return [f"  query: {task.query}"]
    p = task.pairs or {}
    note = (f"every two distinct items of one {p['group']}, both ways" if p.get("rule") == "co_occurrence"
            else f"each event's item → the {p['group']}'s next item, by time")
    return ["  pairs:", f"    rule: {p['rule']}        # {note}", f"    group: {p['group']}",
            *[f"    {k}: {v}" for k, v in p.items() if k not in ("rule", "group")]]


def _queries_lines(task: Task, roles: Roles, queries: str | None, queries_df: pl.DataFrame | None) -> list[str]:
    if task.kind == "item":
        return ["queries:", "  kind: item   # item-to-item: the query is a catalog item"]
    lines = ["queries:", "  kind: entity  # user-to-item: the query is a user with its own features"]
    if queries_df is not None and task.query == roles.query:
        qid = _entity_key(queries_df, prefer=roles.query or "")
        return lines + [f"  path: {json.dumps(queries)}", f"  id: {_yaml_columns(qid)}"] + _features(queries_df, indent=2)
    return lines + [f"  id: {task.query}", "  features:", f"    {task.query}: {{type: categorical}}"]


def _split_lines(task: Task) -> list[str]:
    s = task.split
    lines = ["split:", f"  method: {s['method']}   # {task.split_why} (random | time | column | leave_last_out)"]
    lines += [f"  {k}: {v}" for k, v in s.items() if k != "method"]
    return lines + ["  seed: 0"]


def _interaction_lines(inter: pl.DataFrame, roles: Roles) -> list[str]:
    lines = [f"  item: {_yaml_columns(roles.item)}{roles.why.get('item', '')}"]
    if roles.time:
        lines.append(f"  time: {roles.time}        # orders the log: split.method time / leave_last_out, pairs.rule next")
        if roles.time_from:
            lines.append(f"  time_from: {json.dumps(roles.time_from)}  # joined with a space")
        if roles.time_format:
            lines.append(f"  time_format: {json.dumps(roles.time_format)}")
    if roles.rating:
        lines.append(roles.why["rating"])
    lines.append("  on_unknown_item: drop  # or error")
    return lines


def infer_roles(inter: pl.DataFrame, items_df: pl.DataFrame | None, item_key: list[str] | None,
                queries_df: pl.DataFrame | None) -> Roles:
    """Time, rating, item and query columns of the interactions — each column in one role at most."""
    roles = Roles(item=[])
    _time_role(inter, roles)
    roles.rating = next((c for c in inter.columns if c not in roles.used() and _RATING.search(c)
                         and inter[c].dtype.is_numeric()), None)
    if roles.rating:
        roles.why["rating"] = _rating_filter(inter[roles.rating])
    roles.item = _pick_item(inter, items_df, item_key, roles)
    others = [c for c in inter.columns if c not in roles.used()
              and inter[c].n_unique() < inter.height]  # a row id (unique per row) is no query
    if not others:
        roles.query, roles.kind, roles.why["kind"] = None, "item", "no other column"
        return roles
    if queries_df is not None:
        shared = [c for c in others if c in queries_df.columns]
        roles.query, roles.kind = (shared or others)[0], "entity"
        roles.why["kind"] = "a queries table was given"
        return roles
    named = [c for c in others if _ENTITY.search(c) or re.search(r"query|source|seed|anchor", c, re.I)]
    roles.query = (named or others)[0]
    ids = items_df.select(_key_expr(item_key)).to_series() if items_df is not None and item_key else \
        inter.select(_key_expr(roles.item)).to_series()
    roles.kind, roles.why["kind"] = query_kind(inter[roles.query], ids, inter.select(_key_expr(roles.item)).to_series())
    return roles


def query_kind(query: pl.Series, catalog_ids: pl.Series, pair_items: pl.Series) -> tuple[str, str]:
    """('item' | 'entity', reason): are the query column's values catalog items?

    Args:
        query: the query column of the interactions.
        catalog_ids: the catalog's ids.
        pair_items: the item column of the interactions (row-aligned with `query`).
    """
    name = query.name
    q = query.cast(pl.String)
    distinct = q.drop_nulls().unique()
    share = float(distinct.is_in(catalog_ids.cast(pl.String).implode()).mean() or 0.0) if len(distinct) else 0.0
    if _ENTITY.search(name) and not _ITEM.search(name):
        return "entity", f"the column name '{name}' names a user, session or order, not an item ({share:.0%} of its values are also catalog ids)"
    if share < 0.5:
        return "entity", f"only {share:.0%} of the {len(distinct):,} '{name}' values are catalog ids"
    numeric = bool(distinct.str.contains(r"^\d+$").all())
    if not numeric:
        return "item", f"{share:.0%} of the {len(distinct):,} '{name}' values are catalog ids"
    # integer ids overlap by range alone: ask whether a value popular as a query is popular as an item
    rho = _popularity_correlation(q, pair_items.cast(pl.String))
    if rho >= 0.3:
        return "item", (f"{share:.0%} of '{name}' values are catalog ids, and a value's popularity as a query "
                        f"follows its popularity as an item (rank correlation {rho:.2f})")
    return "entity", (f"'{name}' holds integers that overlap the catalog's integer ids by range only: a value's "
                      f"popularity as a query does not follow its popularity as an item (rank correlation {rho:.2f})")


def _popularity_correlation(query: pl.Series, items: pl.Series) -> float:
    """Spearman correlation, over values that occur in both columns, of their counts in each."""
    qc = query.value_counts(name="q").rename({query.name: "v"})
    ic = items.value_counts(name="i").rename({items.name: "v"})
    both = qc.join(ic, on="v")
    if both.height < 3:
        return 0.0
    r = both.select(pl.corr(pl.col("q").rank(), pl.col("i").rank())).item()
    return float(r) if r == r and r is not None else 0.0  # NaN (a constant column) → 0


def _time_role(inter: pl.DataFrame, roles: Roles) -> None:
    temporal = [c for c in inter.columns if inter[c].dtype.is_temporal()]
    named = [c for c in inter.columns if _TIME.search(c) and c not in temporal]
    date = next((c for c in named if re.search(r"date|day", c, re.I) and inter[c].dtype == pl.String), None)
    clock = next((c for c in named if re.search(r"(?i)(^|_)(time|hour|clock)$", c) and inter[c].dtype == pl.String), None)
    if not temporal and date and clock:  # two text columns that together are a timestamp
        joined = inter[date].head(1000) + " " + inter[clock].head(1000)
        fmt = _time_format(joined)
        if fmt:
            roles.time, roles.time_from, roles.time_format = "timestamp", [date, clock], fmt
            return
    col = (temporal or named or [None])[0]
    if col is None:
        return
    roles.time = col
    if inter[col].dtype == pl.String:
        roles.time_format = _time_format(inter[col].head(1000))


def _time_format(text: pl.Series) -> str | None:
    for fmt in _TIME_FORMATS:
        parsed = text.str.strptime(pl.Datetime, fmt, strict=False)
        if parsed.null_count() == 0:
            return fmt
    return None


def _rating_filter(rating: pl.Series) -> str:
    """A commented `where` proposal: positives are ratings in the top fifth of the scale."""
    values = rating.drop_nulls()
    top = float(values.max())  # type: ignore[arg-type]
    low = float(values.min())  # type: ignore[arg-type]
    cut = low + 0.75 * (top - low)
    step = 1.0 if values.cast(pl.Float64).round(0).eq(values.cast(pl.Float64)).all() else 0.5
    cut = round(cut / step) * step
    keep = float((values >= cut).mean() or 0.0)
    cut_text = f"{cut:g}"
    return (f"  # where: \"{rating.name} >= {cut_text}\"  # '{rating.name}' looks like a rating ({low:g}–{top:g}): "
            f"keep the liked rows as positives ({keep:.0%} of rows); without it every rated row is a positive")


def _pick_item(inter: pl.DataFrame, items_df: pl.DataFrame | None, item_key: list[str] | None,
               roles: Roles) -> list[str]:
    """The interactions column(s) holding item ids: most overlap with the catalog, else by name/shape."""
    free = [c for c in inter.columns if c not in roles.used()]
    if items_df is not None and item_key is not None:
        if len(item_key) > 1 and all(c in free for c in item_key):
            return list(item_key)
        ids = items_df.select(_key_expr(item_key)).to_series()
        scores = [(_overlap(inter[c], ids), c == item_key[0], "item" in c.lower(), i, c) for i, c in enumerate(free)]
        best = max(scores)  # ties: the later column (query, item order)
        if best[0] > 0:
            return [best[4]]
    item_named = [c for c in free if "item" in c.lower()]  # query_item, item_id → item_id (the later)
    named = [c for c in free if _ITEM.search(c) and not _ENTITY.search(c)]
    text = [c for c in free if inter[c].dtype == pl.String and 1 < inter[c].n_unique() < inter.height]
    col = item_named[-1] if item_named else (named or text or free[1:2] or free)[0]
    key = _composite_in_log(inter, col, roles)
    if len(key) > 1:
        roles.why["item"] = (f"  # composite id: '{key[1]}' with '{col}' fixes "
                             f"{', '.join(key[2:])} (varying within one '{col}')")
        return key[:2]
    return [col]


def _composite_in_log(inter: pl.DataFrame, col: str, roles: Roles) -> list[str]:
    """[col, other, gained…] when some columns vary within one `col` value but are attributes of
    (col, other): a pizza's price varies within its name and is fixed by name and size."""
    rest = [c for c in inter.columns if c not in roles.used() | {col}]
    fixed = _attributes(inter, [col], rest)
    best: list[str] = [col]
    gain: list[str] = []
    candidates = [c for c in rest if c not in fixed and not inter[c].dtype.is_float()
                  and 1 < inter[c].n_unique() <= 100][:_COMPOSITE_CANDIDATES]  # linear in columns
    for other in candidates:
        if inter.select([col, other]).n_unique() > 0.5 * inter.height:  # near one row per pair: proves nothing
            continue
        gained = [c for c in _attributes(inter, [col, other], rest) if c not in fixed and c != other]
        if len(gained) > len(gain):
            best, gain = [col, other], gained
    return best + gain


def _attributes(df: pl.DataFrame, key: list[str], columns: list[str]) -> dict[str, float]:
    """The columns that are attributes of `key`, with the share of rows holding their key's usual
    value: ≥ 80% of rows do (a price with occasional promotions stays in), and the key explains at
    least half of the column's variation (a mostly constant `status` is not an item attribute).
    Values are hashed once (a null is a value of its own), then counted per column in numpy: linear
    in columns."""
    cols = [c for c in columns if c not in key]
    if not cols or not df.height:
        return {}
    n = df.height
    hashed = df.select(pl.struct(key).hash().alias("\0key"), *[pl.col(c).hash() for c in cols])
    _, kc = np.unique(hashed["\0key"].to_numpy(), return_inverse=True)
    out = {}
    for c in cols:
        _, cc = np.unique(hashed[c].to_numpy(), return_inverse=True)
        m = int(cc.max()) + 1
        pairs, counts = np.unique(kc.astype(np.int64) * m + cc, return_counts=True)
        best = np.zeros(int(kc.max()) + 1, dtype=np.int64)
        np.maximum.at(best, pairs // m, counts)
        usual, overall = best.sum() / n, np.bincount(cc).max() / n
        if usual >= 0.8 and 1 - usual <= 0.5 * (1 - overall):
            out[c] = float(usual)
    return out


def _derived_items(inter: pl.DataFrame, roles: Roles) -> list[str]:
    """Item features read from the interaction rows: the item's attributes; those that vary now and
    then within one item get `aggregate: mode`."""
    rest = [c for c in inter.columns if c not in roles.used()]
    attrs = _attributes(inter, roles.item, rest)
    varying = [c for c in rest if c not in attrs]
    lines = [f"  id: {_yaml_columns(roles.item)}  # features read from the interaction rows (one row per id)"]
    if varying:
        lines.append(f"  # not item features (they vary within one item): {', '.join(varying)}")
    mostly = {c: v for c, v in attrs.items() if v < 1.0}
    if mostly:
        body = ", ".join(f"{c}: mode" for c in mostly)
        why = ", ".join(f"{c} in {1 - v:.0%} of rows" for c, v in mostly.items())
        lines.append(f"  aggregate: {{{body}}}  # differs within one item now and then ({why}): take the usual value")
    return lines + _features(inter.select([*roles.item, *attrs]), indent=2)


def _features(df: pl.DataFrame, indent: int) -> list[str]:
    pad = " " * indent
    out = [f"{pad}features:"]
    for col in df.columns:
        if df[col].dtype.is_temporal():
            continue
        opts, why = infer_feature(df[col])
        body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in opts.items())
        key = col if re.fullmatch(r"[A-Za-z_][\w-]*", col) else json.dumps(col)
        out.append(f"{pad}  {key}: {{{body}}}  # {why}")
    return out


def _entity_key(table: pl.DataFrame, prefer: str) -> list[str]:
    """The id column(s) of an entity table: a unique column named like `prefer` or '…id', else the
    first unique non-float column; with none, the likely id (or first text) column and the column
    that makes its rows unique (a composite key)."""
    named = [c for c in table.columns if prefer and prefer.lower() in c.lower()]
    ids = [c for c in table.columns if re.search(r"(^|_)id$|Id$|ID$", c)]
    likely = list(dict.fromkeys([*([prefer] if prefer in table.columns else []), *named, *ids]))
    unique = [c for c in table.columns if table[c].null_count() == 0 and table[c].n_unique() == table.height]
    if (found := [c for c in likely if c in unique]):
        return [found[0]]
    if (exact := [c for c in unique if not table[c].dtype.is_float()]):
        return [exact[0]]
    text = [c for c in table.columns if table[c].dtype == pl.String]
    first = (likely or text or table.columns)[0]
    for other in table.columns:
        if other != first and not table[other].dtype.is_float() and \
                table.select([first, other]).n_unique() == table.height:
            return [first, other]
    return [first]


def _key_expr(key: list[str]) -> pl.Expr:
    return pl.concat_str([pl.col(c).cast(pl.String) for c in key], separator="|").alias("+".join(key))


def _yaml_columns(key: list[str]) -> str:
    return key[0] if len(key) == 1 else json.dumps(key)


def _overlap(values: pl.Series, ids: pl.Series) -> float:
    vals = values.cast(pl.String).drop_nulls().head(5000)
    return float(vals.is_in(ids.cast(pl.String).implode()).mean() or 0.0) if len(vals) else 0.0
