"""`sslkit init`: infer a starting schema from the data and write it as commented YAML.

Heuristics (each reported in a YAML comment so the user can check them):
* list columns → multi_categorical; strings where most rows contain one of `| ; ,` and the split
  values repeat across rows → multi_categorical with that separator;
* strings of several words with many distinct values → text;
* floats and wide-ranged integers → numeric (quantile buckets); everything else → categorical.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from sslkit import io

_SEPARATORS = ("|", ";", ",")
_TIME = re.compile(r"(^|_)(ts|time|timestamp|date|datetime|created|at)($|_)", re.I)


def infer_feature(s: pl.Series) -> tuple[dict[str, object], str]:
    """(feature options, reason) for one column."""
    values = s.drop_nulls()
    n, distinct = max(len(values), 1), values.n_unique()
    if isinstance(s.dtype, (pl.List, pl.Array)):
        return {"type": "multi_categorical", "max_len": _max_len(values.list.len())}, "list column"
    if s.dtype.is_float() or (s.dtype.is_integer() and distinct > 50 and distinct < 0.5 * n):
        return {"type": "numeric", "buckets": 20}, f"numbers, {distinct} distinct"
    if s.dtype != pl.String:
        return {"type": "categorical"}, f"{distinct} distinct values"
    text = values.head(20000)
    for sep in _SEPARATORS:
        has = text.str.contains(sep, literal=True).mean() or 0.0
        if has >= 0.2:
            parts = text.str.split(sep).explode().str.strip_chars()
            if parts.n_unique() < 0.5 * len(parts) and text.str.count_matches(" ").mean() < 2:  # type: ignore[operator]
                lens = text.str.split(sep).list.len()
                return ({"type": "multi_categorical", "separator": sep, "max_len": _max_len(lens)},
                        f"'{sep}'-separated values in {has:.0%} of rows")
    words = text.str.count_matches(r"\s+").mean() or 0.0
    if words >= 2 and distinct > 0.3 * n:
        lens = text.str.count_matches(r"\w+")
        return {"type": "text", "max_len": _max_len(lens)}, f"free text, {words + 1:.1f} words per row"
    return {"type": "categorical"}, f"{distinct} distinct values"


def _max_len(lengths: pl.Series) -> int:
    p99 = lengths.quantile(0.99) or 1
    return int(max(2, min(64, round(p99))))


def infer_schema(data: str, items: str | None = None, queries: str | None = None) -> str:
    """Commented YAML for a starting schema (paths written as given)."""
    inter = io.read_table(data)
    items_df = io.read_table(items) if items else None
    queries_df = io.read_table(queries) if queries else None
    item_id_col = _pick_id(items_df, prefer="item") if items_df is not None else None
    item_col = _pick_item(inter, items_df, item_id_col)
    time_col = next((c for c in inter.columns if _TIME.search(c) or inter.schema[c].is_temporal()), None)
    query_col, kind = _pick_query(inter, item_col, items_df[item_id_col] if items_df is not None else None,
                                  queries_df, time_col)
    lines = ["# sslkit schema inferred by `sslkit init` — check every line; see schemas/reference.yaml",
             f"name: {Path(data).stem}", "interactions:", f"  path: {json.dumps(data)}",
             f"  query: {query_col}", f"  item: {item_col}"]
    if time_col:
        lines.append(f"  time: {time_col}        # enables split.method: time")
    lines.append("  on_unknown_item: drop  # or error")
    if kind == "item":
        lines += ["queries:", "  kind: item  # item-to-item: query ids are catalog items"]
    else:
        lines += ["queries:", "  kind: entity"]
        if queries_df is not None:
            qid = _pick_id(queries_df, prefer=query_col)
            lines += [f"  path: {json.dumps(queries)}", f"  id: {qid}"]
            lines += _features(queries_df, indent=2)
        else:
            lines += [f"  id: {query_col}", "  features:", f"    {query_col}: {{type: categorical}}"]
    lines.append("items:")
    if items_df is not None:
        lines += [f"  path: {json.dumps(items)}", f"  id: {item_id_col}"]
        lines += _features(items_df, indent=2)
    else:
        skip = {query_col, time_col}
        lines += [f"  id: {item_col}  # features read from the interaction rows"]
        lines += _features(inter.drop([c for c in skip if c]), indent=2)
    lines += ["split:", "  method: random      # random | time | column", "  test_fraction: 0.1", "  seed: 0"]
    return "\n".join(lines) + "\n"


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


def _pick_id(table: pl.DataFrame, prefer: str) -> str:
    """The id column of an entity table: the preferred name, a column containing it, or the first."""
    if prefer in table.columns:
        return prefer
    named = [c for c in table.columns if prefer.lower() in c.lower()]
    return (named or table.columns)[0]


def _overlap(values: pl.Series, ids: pl.Series) -> float:
    vals = values.cast(pl.String).drop_nulls().head(5000)
    return float(vals.is_in(ids.cast(pl.String).implode()).mean() or 0.0) if len(vals) else 0.0


def _pick_item(inter: pl.DataFrame, items_df: pl.DataFrame | None, item_id_col: str | None) -> str:
    """The interactions column holding item ids: most overlap with the catalog, else named like 'item'."""
    if items_df is not None and item_id_col is not None:
        scores = [(_overlap(inter[c], items_df[item_id_col]), "item" in c.lower(), i, c)
                  for i, c in enumerate(inter.columns)]  # ties: the later column (query, item order)
        best = max(scores)
        if best[0] > 0:
            return best[3]
    named = [c for c in inter.columns if "item" in c.lower()]
    return (named or inter.columns[1:2] or inter.columns)[-1]


def _pick_query(inter: pl.DataFrame, item_col: str, item_ids: pl.Series | None,
                queries_df: pl.DataFrame | None, time_col: str | None) -> tuple[str, str]:
    others = [c for c in inter.columns if c not in (item_col, time_col)]
    if not others:
        return item_col, "item"
    if queries_df is not None:
        shared = [c for c in others if c in queries_df.columns]
        return (shared or others)[0], "entity"
    ids = item_ids if item_ids is not None else inter[item_col]
    for c in others:
        if _overlap(inter[c], ids) >= 0.5:
            return c, "item"
    named = [c for c in others if re.search(r"user|query|session|customer", c, re.I)]
    return (named or others)[0], "entity"
