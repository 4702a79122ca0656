#!/usr/bin/env python
"""Deterministic synthetic catalog + interaction generator for the sslkit examples and benchmarks.

Models a tabular catalog whose categorical features carry real signal (Yao et al., CIKM 2021
setting): items nest in subcategories and categories, brands and tags follow the hierarchy, item
popularity is a power law, and co-engaged item pairs mostly stay within a subcategory. Optional
users have a preferred category that their demographics predict.

Usage:
    python examples/synthetic/generate.py                        # regenerate the committed example
    python examples/synthetic/generate.py --preset wikipedia --out /tmp/wiki --format parquet

Everything is vectorized numpy (loops only over categories); identical arguments give
byte-identical files.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent

N_CATEGORIES = 20
SUBS_PER_CATEGORY = 10
N_BRANDS = 500
N_TAGS = 300
TAG_POOL = 24  # tags in each category's pool
MAX_TAGS = 5
N_SUBS = N_CATEGORIES * SUBS_PER_CATEGORY
TITLE_POOL = 6  # words in each subcategory's (and category's) pool
ZIPF_EXPONENT = 1.1
COLD_FRACTION = 0.10  # catalog-only items: never in any pair
TARGET_MODES = (0.60, 0.25, 0.15)  # target from: same subcategory, same category, anywhere
USER_PREF_PROB = 0.7  # user picks from the preferred category
WEIGHT_SCALE = 1e9  # popularity weights are integers (exact cumulative sums)

ALL_FEATURES = ("item_id", "category", "subcategory", "brand", "tags", "title", "price", "year")
FEATURE_YAML = {  # schema line per item feature
    **dict.fromkeys(("item_id", "category", "subcategory", "brand"), "{type: categorical}"),
    "tags": '{type: multi_categorical, separator: "|", max_len: 8}',
    "title": "{type: text, max_len: 12}",
    "price": "{type: numeric, buckets: 10}",
    "year": "{type: numeric, buckets: 8}",
}
GENERIC_WORDS = (
    "the new classic pro deluxe ultimate edition guide best mini super original series vol "
    "collection premium essential complete modern vintage great little big world home life story "
    "art set kit plus max one two first black white red blue green gold silver"
).split()
AGES = ("0-17", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
AGE_P = (0.04, 0.20, 0.36, 0.20, 0.09, 0.06, 0.05)
OCCUPATIONS = (
    "administrator artist doctor educator engineer entertainment executive healthcare homemaker "
    "lawyer librarian marketing none other programmer retired salesman scientist student technician"
).split()


class Preset(NamedTuple):
    """Default sizes (and schema features) of a named dataset shape."""

    items: int
    pairs: int
    users: int
    user_pairs: int
    features: tuple[str, ...] = ALL_FEATURES


PRESETS: dict[str, Preset] = {
    "small": Preset(2_000, 30_000, 500, 20_000),
    "wikipedia": Preset(200_000, 5_000_000, 0, 0, ("item_id", "category", "tags", "title")),
    "ml100k": Preset(1_700, 20_000, 943, 100_000),
}


class Catalog(NamedTuple):
    """Integer codes of the generated items, needed to draw interactions."""

    ids: pl.Series
    cat: np.ndarray
    sub: np.ndarray
    weight: np.ndarray  # int64 popularity; 0 = catalog-only (cold)


class GroupSampler:
    """Draw items by popularity within a group: exact inverse CDF over items sorted by group."""

    def __init__(self, groups: np.ndarray, weight: np.ndarray, n_groups: int) -> None:
        self.weight = weight
        self.order = np.argsort(groups, kind="stable")
        self.rank = np.argsort(self.order)  # item -> its position in `order`
        self.cum = np.cumsum(weight[self.order])
        bounds = np.searchsorted(groups[self.order], np.arange(n_groups + 1))
        padded = np.concatenate([[0], self.cum])
        self.start = padded[bounds[:-1]]
        self.total = padded[bounds[1:]] - self.start

    def draw(self, group: np.ndarray, rng: np.random.Generator,
             exclude: np.ndarray | None = None) -> np.ndarray:
        """One item per entry of `group`, never `exclude` (an item of that group), if given.

        Groups with no weight left fall back to the whole catalog.
        """
        start, total = self.start[group], self.total[group]
        skip = skip_at = np.zeros(len(group), np.int64)
        if exclude is not None:  # remove the excluded item's segment from the group's CDF
            skip = self.weight[exclude]
            skip_at = self.cum[self.rank[exclude]] - skip
        total = total - skip
        empty = total <= 0
        start = np.where(empty, 0, start)
        total = np.where(empty, self.cum[-1] - skip, total)
        offset = np.minimum((rng.random(len(group)) * total).astype(np.int64), total - 1)
        u = start + offset
        u += np.where(u >= skip_at, skip, 0)
        return self.order[np.searchsorted(self.cum, u, side="right")]

    @classmethod
    def flat(cls, weight: np.ndarray) -> "GroupSampler":
        """A sampler over everything (one group)."""
        return cls(np.zeros(len(weight), np.int64), weight, 1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` draws from group 0 (the whole population of a `flat` sampler)."""
        return self.draw(np.zeros(n, np.int64), rng)


def _names(prefix: str, n: int, width: int) -> np.ndarray:
    """`prefix` + zero-padded 0..n-1 (at least `width` digits), e.g. i000123."""
    width = max(width, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width))


def _pseudo_words(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct pronounceable lowercase words (2-3 syllables)."""
    syllables = np.array([c + v for c in "bcdfghklmnprstvz" for v in "aeiou"])
    parts = syllables[rng.integers(0, len(syllables), (4 * n, 3))]
    third = np.where(rng.random(4 * n) < 0.5, parts[:, 2], "")
    cand = np.char.add(np.char.add(parts[:, 0], parts[:, 1]), third)
    _, first = np.unique(cand, return_index=True)
    return cand[np.sort(first)][:n]


def _join_tokens(vocab: np.ndarray, ids: np.ndarray, mask: np.ndarray, sep: str,
                 unique: bool = False) -> pl.Series:
    """Row-wise join of vocab[ids] where mask (with `unique`, repeated tokens kept once)."""
    n, width = ids.shape
    frame = pl.DataFrame({"w": pl.Series(vocab).gather(ids.ravel()), "m": mask.ravel()})
    words = frame.select(pl.when(pl.col("m")).then(pl.col("w"))).to_series()
    lists = words.reshape((n, width)).arr.to_list().list.drop_nulls()
    return (lists.list.unique(maintain_order=True) if unique else lists).list.join(sep)


def _hierarchy(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Category and (global) subcategory codes; uneven sizes at both levels."""
    cat = rng.choice(N_CATEGORIES, n, p=rng.dirichlet(np.full(N_CATEGORIES, 4.0)))
    sub_p = rng.dirichlet(np.full(SUBS_PER_CATEGORY, 2.0), N_CATEGORIES)
    u = rng.random(n)[:, None]
    local = (u > np.cumsum(sub_p[cat], axis=1)).sum(axis=1).clip(0, SUBS_PER_CATEGORY - 1)
    return cat, cat * SUBS_PER_CATEGORY + local


def _brands(sub: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each brand has a home subcategory; 90% of items take a brand from their subcategory."""
    home = rng.permutation(np.arange(N_BRANDS) % N_SUBS)
    order = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[order], np.arange(N_SUBS + 1))
    count = bounds[1:] - bounds[:-1]
    pick = bounds[:-1][sub] + (rng.random(len(sub)) * count[sub]).astype(np.int64)
    native = order[np.minimum(pick, N_BRANDS - 1)]
    noisy = (rng.random(len(sub)) < 0.1) | (count[sub] == 0)
    return np.where(noisy, rng.integers(0, N_BRANDS, len(sub)), native)


def _tags(cat: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """1-5 tags per item, 85% from the category's pool (head-heavy); ~3% of items untagged."""
    n = len(cat)
    pools = np.stack([rng.choice(N_TAGS, TAG_POOL, replace=False) for _ in range(N_CATEGORIES)])
    pool_p = 1.0 / np.arange(1, TAG_POOL + 1) ** 0.8
    slot = rng.choice(TAG_POOL, (n, MAX_TAGS), p=pool_p / pool_p.sum())
    ids = np.where(rng.random((n, MAX_TAGS)) < 0.85, pools[cat[:, None], slot],
                   rng.integers(0, N_TAGS, (n, MAX_TAGS)))
    k = rng.choice(MAX_TAGS, n, p=(0.3, 0.3, 0.2, 0.12, 0.08)) + 1
    k[rng.random(n) < 0.03] = 0
    mask = np.arange(MAX_TAGS) < k[:, None]
    joined = _join_tokens(_names("tag", N_TAGS, 3), ids, mask, "|", unique=True)
    return pl.select(pl.when(pl.lit(pl.Series(k > 0))).then(pl.lit(joined))).to_series()


def _titles(cat: np.ndarray, sub: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """3-8 words: subcategory pool 55%, category pool 15%, generic 30%; some Capitalized/UPPER."""
    n, width = len(cat), 8
    own = _pseudo_words((N_SUBS + N_CATEGORIES) * TITLE_POOL, rng)
    lower = np.concatenate([own, np.array(GENERIC_WORDS)])
    vocab = np.concatenate([lower, np.char.capitalize(lower), np.char.upper(lower)])
    slot = rng.integers(0, TITLE_POOL, (n, width))
    sub_word = sub[:, None] * TITLE_POOL + slot
    cat_word = (N_SUBS + cat[:, None]) * TITLE_POOL + slot
    generic = len(own) + rng.integers(0, len(GENERIC_WORDS), (n, width))
    source = rng.choice(3, (n, width), p=(0.55, 0.15, 0.30))
    word = np.choose(source, [sub_word, cat_word, generic])
    case = rng.choice(3, (n, width), p=(0.65, 0.30, 0.05))
    length = rng.integers(3, width + 1, n)
    return _join_tokens(vocab, word + case * len(lower), np.arange(width) < length[:, None], " ")


def _popularity(n: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights over a random permutation of the warm items; cold items get 0."""
    weight = np.zeros(n, dtype=np.int64)
    n_cold = int(round(COLD_FRACTION * n))
    warm = rng.permutation(n)[n_cold:]
    rank = np.arange(1, len(warm) + 1, dtype=np.float64)
    weight[warm] = np.maximum((WEIGHT_SCALE * rank**-ZIPF_EXPONENT).astype(np.int64), 1)
    return weight


def make_items(n: int, rng: np.random.Generator) -> tuple[pl.DataFrame, Catalog]:
    """The items table and the integer codes behind it."""
    cat, sub = _hierarchy(n, rng)
    brand = _brands(sub, rng)
    tags, title = _tags(cat, rng), _titles(cat, sub, rng)
    mu = rng.uniform(2.0, 5.5, N_CATEGORIES)[cat] + rng.normal(0, 0.3, N_SUBS)[sub]
    price = np.round(np.exp(mu + rng.normal(0, 0.5, n)), 2)
    year = 1990 + np.minimum((35 * rng.beta(2.0, 1.2, n)).astype(np.int64), 34)
    ids = pl.Series(_names("i", n, 6))
    df = pl.DataFrame({
        "item_id": ids,
        "category": _names("cat", N_CATEGORIES, 2)[cat],
        "subcategory": np.char.add(np.char.add(_names("cat", N_CATEGORIES, 2)[cat], "_s"),
                                   _names("", SUBS_PER_CATEGORY, 2)[sub % SUBS_PER_CATEGORY]),
        "brand": _names("brand", N_BRANDS, 3)[brand],
        "tags": tags,
        "title": title,
        "price": pl.Series(price).set(pl.Series(rng.random(n) < 0.02), None),
        "year": year,
    })
    return df, Catalog(ids, cat, sub, _popularity(n, rng))


def _timestamps(n: int, rng: np.random.Generator) -> np.ndarray:
    """Seconds since the start of the log: increasing, with local disorder."""
    return np.arange(n, dtype=np.int64) * 7 + rng.integers(0, 60, n)


def _draw_related(src: np.ndarray, cat: Catalog, rng: np.random.Generator) -> np.ndarray:
    """A partner for each item: same subcategory / same category / anywhere, by popularity; != src."""
    if np.count_nonzero(cat.weight) < 2:
        raise ValueError("need at least two items with interactions")
    anywhere = np.zeros(len(cat.cat), np.int64)
    mode = rng.choice(3, len(src), p=TARGET_MODES)
    out = np.empty_like(src)
    for m, (key, n_groups) in enumerate(((cat.sub, N_SUBS), (cat.cat, N_CATEGORIES), (anywhere, 1))):
        sel = mode == m
        out[sel] = GroupSampler(key, cat.weight, n_groups).draw(key[src[sel]], rng, exclude=src[sel])
    return out


def make_pairs(n_pairs: int, cat: Catalog, rng: np.random.Generator) -> pl.DataFrame:
    """Item-to-item pairs. Every warm item is a target at least once (if n_pairs allows)."""
    warm = np.flatnonzero(cat.weight > 0)
    cover = rng.permutation(warm)[: min(len(warm), n_pairs)]
    query = GroupSampler.flat(cat.weight).sample(n_pairs - len(cover), rng)
    target = _draw_related(query, cat, rng)
    query = np.concatenate([query, _draw_related(cover, cat, rng)])
    target = np.concatenate([target, cover])
    perm = rng.permutation(n_pairs)
    return pl.DataFrame({
        "query_item": cat.ids.gather(query[perm]),
        "item_id": cat.ids.gather(target[perm]),
        "ts": _timestamps(n_pairs, rng),
    })


def make_users(n: int, rng: np.random.Generator) -> tuple[pl.DataFrame, np.ndarray]:
    """The users table and each user's latent preferred category (driven by occupation and age)."""
    age = rng.choice(len(AGES), n, p=AGE_P)
    female = rng.random(n) < 0.29
    occ = rng.choice(len(OCCUPATIONS), n, p=rng.dirichlet(np.full(len(OCCUPATIONS), 3.0)))
    score = (rng.normal(0, 2.0, (len(OCCUPATIONS), N_CATEGORIES))[occ]
             + rng.normal(0, 1.5, (len(AGES), N_CATEGORIES))[age]
             + rng.normal(0, 0.7, (2, N_CATEGORIES))[female.astype(np.int64)]
             + rng.gumbel(0, 1, (n, N_CATEGORIES)))
    df = pl.DataFrame({
        "user_id": _names("u", n, 5),
        "age": np.array(AGES)[age],
        "gender": np.where(female, "F", "M"),
        "occupation": np.array(OCCUPATIONS)[occ],
        "zip": rng.integers(100, 1000, n).astype(str),
    })
    return df, score.argmax(axis=1)


def make_user_pairs(n_pairs: int, users: pl.DataFrame, pref: np.ndarray, cat: Catalog,
                    rng: np.random.Generator) -> pl.DataFrame:
    """User-to-item pairs: active users more often; 70% from the preferred category."""
    n_users = users.height
    activity = np.maximum((1000 * rng.lognormal(0, 1.0, n_users)).astype(np.int64), 1)
    extra = GroupSampler.flat(activity).sample(max(n_pairs - n_users, 0), rng)
    user = np.concatenate([rng.permutation(n_users), extra])[:n_pairs]  # every user at least once
    by_cat = GroupSampler(cat.cat, cat.weight, N_CATEGORIES)
    item = np.where(rng.random(n_pairs) < USER_PREF_PROB, by_cat.draw(pref[user], rng),
                    GroupSampler.flat(cat.weight).sample(n_pairs, rng))
    perm = rng.permutation(n_pairs)
    return pl.DataFrame({
        "user_id": users["user_id"].gather(user[perm]),
        "item_id": cat.ids.gather(item[perm]),
        "ts": _timestamps(n_pairs, rng),
    })


def make_tables(items: int, pairs: int, users: int = 0, user_pairs: int = 0,
                seed: int = 0) -> dict[str, pl.DataFrame]:
    """All tables as frames (no files). Independent random streams per table.

    Args:
        items: catalog size.
        pairs: item-to-item pairs.
        users: users (0 = no user tables).
        user_pairs: user-to-item pairs (used when users > 0).
        seed: random seed.

    Returns:
        {"items", "pairs"} and, with users, {"users", "user_pairs"}.
    """
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    items_df, catalog = make_items(items, rngs[0])
    tables = {"items": items_df, "pairs": make_pairs(pairs, catalog, rngs[1])}
    if users > 0:
        users_df, pref = make_users(users, rngs[2])
        tables["users"] = users_df
        tables["user_pairs"] = make_user_pairs(user_pairs, users_df, pref, catalog, rngs[3])
    return tables


SCHEMA_TEMPLATE = """\
# sslkit schema — synthetic {kind} example (generated by examples/synthetic/generate.py)
name: {name}
interactions:
  path: {inter:<22}# CSV / Parquet / NDJSON, a glob, or "-" for stdin
  query: {query:<21}# column with the query id{query_note}
  item: item_id               # column with the item id
  time: ts                    # optional time column (used by split.method: time)
  on_unknown_item: drop       # drop | error
queries:
{queries}
items:
  path: {items}
  id: item_id
  features:
{features}
split:
  method: random
  test_fraction: 0.1
  seed: 0
"""
ITEM_QUERIES = "  kind: item                  # item-to-item: query features come from the catalog"
USER_QUERIES = """\
  kind: entity                # user-to-item: query features come from the users table
  path: {users}
  id: user_id
  features:
""" + "\n".join(f"    {c}: {{{{type: categorical}}}}"
             for c in ("user_id", "age", "gender", "occupation", "zip"))


def schema_text(name: str, paths: dict[str, str], features: tuple[str, ...], users: bool) -> str:
    """An sslkit schema (item-to-item, or user-to-item when `users`); paths relative to it."""
    return SCHEMA_TEMPLATE.format(
        kind="user-to-item" if users else "item-to-item", name=name,
        inter=paths["user_pairs" if users else "pairs"], query="user_id" if users else "query_item",
        query_note="" if users else " (an item id in item-to-item mode)",
        queries=USER_QUERIES.format(users=paths["users"]) if users else ITEM_QUERIES,
        items=paths["items"], features="\n".join(f"    {f}: {FEATURE_YAML[f]}" for f in features))


def generate(out: str | Path = HERE, *, preset: str = "small", items: int | None = None,
             pairs: int | None = None, users: int | None = None, user_pairs: int | None = None,
             seed: int = 0, fmt: str = "csv") -> dict[str, Path]:
    """Generate a dataset: data files under `<out>/data/`, schemas under `<out>/`.

    Args:
        out: output directory.
        preset: small | wikipedia | ml100k (default sizes and schema features).
        items, pairs, users, user_pairs: override the preset's sizes (users=0: no user tables).
        seed: random seed; identical arguments give byte-identical files.
        fmt: csv | parquet.

    Returns:
        Written paths by key: items, pairs, schema, and with users: users, user_pairs, schema_users.
    """
    if preset not in PRESETS or fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown preset {preset!r} or format {fmt!r}")
    p = PRESETS[preset]
    n_users = p.users if users is None else users
    if user_pairs is None:  # the preset's count for its own users, else 40 per user
        user_pairs = p.user_pairs if users is None and p.user_pairs else 40 * n_users
    tables = make_tables(p.items if items is None else items, p.pairs if pairs is None else pairs,
                         n_users, user_pairs, seed)
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    rel = {key: f"data/{key}.{fmt}" for key in tables}
    written: dict[str, Path] = {}
    for key, df in tables.items():
        written[key] = out / rel[key]
        if fmt == "csv":
            df.write_csv(written[key])
        else:
            df.write_parquet(written[key])
    name = "synthetic" if preset == "small" else f"synthetic_{preset}"
    written["schema"] = out / "schema.yaml"
    written["schema"].write_text(schema_text(name, rel, p.features, users=False))
    if "users" in tables:
        written["schema_users"] = out / "schema_users.yaml"
        written["schema_users"].write_text(schema_text(f"{name}_users", rel, p.features, users=True))
    return written


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output dir (default: beside this script)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--items", type=int, help="catalog size")
    ap.add_argument("--pairs", type=int, help="item-to-item pairs")
    ap.add_argument("--users", type=int, help="users (0 = item-to-item only)")
    ap.add_argument("--user-pairs", type=int, help="user-to-item pairs (default: the preset's, or 40 per user with --users)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    written = generate(args.out, preset=args.preset, items=args.items, pairs=args.pairs, users=args.users,
                       user_pairs=args.user_pairs, seed=args.seed, fmt=args.format)
    for key, path in written.items():
        print(f"{key:>12}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"done in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
