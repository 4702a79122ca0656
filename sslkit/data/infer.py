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

import polars as pl

from sslkit.data import io

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


def infer_schema(data: str, items: str | None = None, queries: str | None = None) -> str:
    """Commented YAML for a starting schema (paths written as given)."""
    inter = io.read_table(data)
    items_df = io.read_table(items) if items else None
    queries_df = io.read_table(queries) if queries else None
    item_key = _entity_key(items_df, prefer="item") if items_df is not None else None
    roles = infer_roles(inter, items_df, item_key, queries_df)
    if items_df is not None and item_key and len(item_key) > 1:
        roles.why["items_id"] = f"  # composite id: '{item_key[0]}' repeats, with '{item_key[1]}' each row is unique"
    lines = ["# sslkit schema inferred by `sslkit init` — check every line; see schemas/reference.yaml",
             f"name: {Path(data).stem}", "interactions:", f"  path: {json.dumps(data)}"]
    lines += _interaction_lines(inter, roles)
    if roles.kind == "item":
        lines += ["queries:", f"  kind: item  # item-to-item: {roles.why['kind']}"]
    else:
        lines += ["queries:", f"  kind: entity  # {roles.why['kind']}"]
        if queries_df is not None:
            qid = _entity_key(queries_df, prefer=roles.query or "")
            lines += [f"  path: {json.dumps(queries)}", f"  id: {_yaml_columns(qid)}"]
            lines += _features(queries_df, indent=2)
        else:
            lines += [f"  id: {roles.query}", "  features:", f"    {roles.query}: {{type: categorical}}"]
    lines.append("items:")
    if items_df is not None and item_key is not None:
        lines += [f"  path: {json.dumps(items)}", f"  id: {_yaml_columns(item_key)}{roles.why.get('items_id', '')}"]
        lines += _features(items_df, indent=2)
    else:
        lines += _derived_items(inter, roles)
    lines += ["split:", "  method: random      # random | time | column | leave_last_out", "  test_fraction: 0.1",
              "  seed: 0"]
    return "\n".join(lines) + "\n"


def _interaction_lines(inter: pl.DataFrame, roles: Roles) -> list[str]:
    lines = []
    if roles.query:
        lines.append(f"  query: {roles.query}")
    lines.append(f"  item: {_yaml_columns(roles.item)}{roles.why.get('item', '')}")
    if roles.time:
        lines.append(f"  time: {roles.time}        # enables split.method: time / leave_last_out")
        if roles.time_from:
            lines.append(f"  time_from: {json.dumps(roles.time_from)}  # joined with a space")
        if roles.time_format:
            lines.append(f"  time_format: {json.dumps(roles.time_format)}")
    if roles.rating:
        lines.append(roles.why["rating"])
    if roles.query and re.search(r"order|basket|cart|transaction|invoice", roles.query, re.I):
        lines.append(f"  # baskets? item-to-item pairs within one {roles.query} instead: "
                     f"pairs: {{rule: co_occurrence, group: {roles.query}}} (drop query; queries.kind: item)")
    lines.append("  on_unknown_item: drop  # or error")
    return lines


def infer_roles(inter: pl.DataFrame, items_df: pl.DataFrame | None, item_key: list[str] | None,
                queries_df: pl.DataFrame | None) -> Roles:
    """Time, rating, item and query columns of the interactions — each column in one role at most."""
    roles = Roles(item=[])
    _time_role(inter, roles)
    roles.rating = next((c for c in inter.columns if c not in roles.used() and _RATING.search(c)
                         and inter.schema[c].is_numeric()), None)
    if roles.rating:
        roles.why["rating"] = _rating_filter(inter[roles.rating])
    roles.item = _pick_item(inter, items_df, item_key, roles)
    others = [c for c in inter.columns if c not in roles.used()]
    if not others:
        roles.query, roles.kind, roles.why["kind"] = roles.item[0], "item", "no other column"
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
    temporal = [c for c in inter.columns if inter.schema[c].is_temporal()]
    named = [c for c in inter.columns if _TIME.search(c) and c not in temporal]
    date = next((c for c in named if re.search(r"date|day", c, re.I) and inter.schema[c] == pl.String), None)
    clock = next((c for c in named if re.search(r"(?i)(^|_)(time|hour|clock)$", c) and inter.schema[c] == pl.String), None)
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
    if inter.schema[col] == pl.String:
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
    text = [c for c in free if inter.schema[c] == pl.String and 1 < inter[c].n_unique() < inter.height]
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
    for other in [c for c in rest if c not in fixed and not inter.schema[c].is_float()
                  and 1 < inter[c].n_unique() <= 100]:
        if inter.select([col, other]).n_unique() > 0.5 * inter.height:  # near one row per pair: proves nothing
            continue
        gained = [c for c in _attributes(inter, [col, other], rest) if c not in fixed and c != other]
        if len(gained) > len(gain):
            best, gain = [col, other], gained
    return best + gain


def _attributes(df: pl.DataFrame, key: list[str], columns: list[str]) -> dict[str, float]:
    """The columns that are attributes of `key`, with the share of rows holding their key's usual
    value: ≥ 80% of rows do (a price with occasional promotions stays in), and the key explains at
    least half of the column's variation (a mostly constant `status` is not an item attribute)."""
    out = {}
    for c in columns:
        if c in key:
            continue
        usual = df.group_by([*key, c]).len().group_by(key).agg(pl.col("len").max())["len"].sum() / max(df.height, 1)
        overall = df[c].value_counts()["count"].max() / max(df.height, 1)  # type: ignore[operator]
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
        if df.schema[col].is_temporal():
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
    if (exact := [c for c in unique if not table.schema[c].is_float()]):
        return [exact[0]]
    text = [c for c in table.columns if table.schema[c] == pl.String]
    first = (likely or text or table.columns)[0]
    for other in table.columns:
        if other != first and not table.schema[other].is_float() and \
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
