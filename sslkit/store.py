"""The feature store: every entity's features as padded int arrays, pairs as row indices.

Built once from the schema with Polars, cached on disk under `<cache_dir>/<key>/` (key = hash of
the data-relevant schema sections and the input files' bytes), memory-mapped when loaded again.
`docs/ARCHITECTURE.md` describes the layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from sslkit import encode, io
from sslkit.config import Config, Feature
from sslkit.errors import DataError
from sslkit.schema import FeatureSpec, check_feature, check_ids, require_columns

FORMAT_VERSION = 1


@dataclass
class EntityTable:
    """Items or queries: ids and encoded features, one row per entity."""

    ids: np.ndarray  # str [rows]
    features: dict[str, np.ndarray]  # int32 [rows, max_len] or float32 [rows, 1]
    lengths: dict[str, np.ndarray]  # int32 [rows]: values per row before max_len truncation
    specs: dict[str, FeatureSpec]

    @property
    def rows(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> "EntityTable":
        """The given rows, in order (materialized from the memory map)."""
        return EntityTable(ids=np.asarray(self.ids)[rows],
                           features={f: np.asarray(a)[rows] for f, a in self.features.items()},
                           lengths={f: np.asarray(a)[rows] for f, a in self.lengths.items()}, specs=self.specs)


@dataclass
class FeatureStore:
    items: EntityTable
    queries: EntityTable  # `is items` in item-to-item mode
    splits: dict[str, np.ndarray]  # int32 [n, 2] (query_row, item_row)
    vocabs: dict[str, dict[str, encode.Vocab]]
    report: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    path: Path | None = None

    @property
    def item_to_item(self) -> bool:
        return self.queries is self.items


Log = Callable[[str], None]


def _schema_hash(cfg: Config) -> "hashlib._Hash":
    h = hashlib.sha256()
    sections = {k: cfg.model_dump(mode="json")[k] for k in ("interactions", "items", "queries", "split")}
    h.update(json.dumps({"v": FORMAT_VERSION, **sections}, sort_keys=True).encode())
    return h


def reads_stdin(cfg: Config) -> bool:
    return "-" in (cfg.resolve(src) for src in (cfg.interactions.path, cfg.items.path, cfg.queries.path))


def cache_key(cfg: Config) -> str | None:
    """Hash of what determines the store; None when reading stdin (see `content_key`)."""
    h = _schema_hash(cfg)
    for src in (cfg.interactions.path, cfg.items.path, cfg.queries.path):
        path = cfg.resolve(src)
        if path is None:
            continue
        if path == "-":
            return None
        for f in io.expand(path):
            h.update(f.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()[:20]


def content_key(cfg: Config, store: FeatureStore) -> str:
    """Key of a store built from standard input: its schema sections and its encoded content.

    Input that cannot be read twice is cached under what it encoded to, so a run trained from a
    pipe can find its store again (`sslkit eval`, `embed`, `recommend`) through its run.json.
    """
    h = _schema_hash(cfg)
    h.update(b"stdin")
    for table in [store.items] + ([] if store.item_to_item else [store.queries]):
        h.update("\n".join(map(str, table.ids)).encode())
        for name in sorted(table.features):
            h.update(np.ascontiguousarray(table.features[name]).tobytes())
            h.update(np.ascontiguousarray(table.lengths[name]).tobytes())
    for split in sorted(store.splits):
        h.update(np.ascontiguousarray(store.splits[split]).tobytes())
    h.update(json.dumps({e: {f: v.to_json() for f, v in vs.items()} for e, vs in store.vocabs.items()},
                        sort_keys=True).encode())
    return h.hexdigest()[:20]


def load_or_build(cfg: Config, *, log: Log = lambda _: None, use_cache: bool = True) -> FeatureStore:
    """The cached store for this schema and data, built (and cached) when missing.

    A store built from standard input is always built, then cached under its `content_key`.
    """
    key = cache_key(cfg) if use_cache else None
    root = Path(cfg.resolve(cfg.cache_dir or ".sslkit-cache") or ".sslkit-cache")
    if key and (root / key / "meta.json").exists():
        try:
            store = load(root / key)
            log(f"feature store: cached {root / key}")
            return store
        except (OSError, ValueError, KeyError) as e:
            log(f"feature store cache {root / key} unreadable ({e}); rebuilding")
    store = build(cfg, log=log)
    if use_cache and key is None:  # standard input
        key = content_key(cfg, store)
        if (root / key / "meta.json").exists():  # the same input piped before: keep that copy
            store.key, store.path = key, root / key
            return store
    if key:
        store.key = key
        save(store, root / key)
        store.path = root / key
        log(f"feature store: built and cached in {root / key}")
    return store


def build(cfg: Config, *, log: Log = lambda _: None) -> FeatureStore:
    """Read, validate, split, fit vocabularies and encode (DESIGN §1–3)."""
    inter_cfg = cfg.interactions
    ipath = cfg.resolve(inter_cfg.path) or "-"
    inter = io.read_table(ipath, inter_cfg.format, strings=[inter_cfg.query, inter_cfg.item])
    needed = {inter_cfg.query: "interactions.query", inter_cfg.item: "interactions.item"}
    if inter_cfg.time:
        needed[inter_cfg.time] = "interactions.time"
    if cfg.split.method == "column":
        needed[cfg.split.column or ""] = "split.column"
    require_columns(inter, needed, path=ipath)
    for col, key in list(needed.items())[:2]:
        check_ids(inter, col, path=ipath, key=key, unique=False)

    items_df, items_path = _entity_frame(cfg, inter, ipath, entity="items")
    item_rows = _row_lookup(items_df, cfg.item_id())
    report: dict[str, Any] = {"pairs_read": inter.height, "items": items_df.height}
    pairs = inter.with_row_index("pair").join(
        item_rows.rename({"id": inter_cfg.item, "row": "item_row"}), on=inter_cfg.item, how="left")
    if cfg.item_to_item():
        queries_df, queries_path, query_rows = items_df, items_path, item_rows
    else:
        queries_df, queries_path = _entity_frame(cfg, inter, ipath, entity="queries")
        query_rows = _row_lookup(queries_df, cfg.query_id())
    pairs = pairs.join(query_rows.rename({"id": inter_cfg.query, "row": "query_row"}),
                       on=inter_cfg.query, how="left").sort("pair")
    pairs = _drop_unknown(pairs, cfg, ipath, report, log)
    train, test = _split(pairs, cfg, report)

    items = _encode_entity(items_df, cfg.item_id(), cfg.items.features, fit_rows=None, path=items_path, section="items")
    if cfg.item_to_item():
        queries = items
    else:
        fit_rows = np.unique(train[:, 0])  # query vocabularies see training queries only
        queries = _encode_entity(queries_df, cfg.query_id(), cfg.queries.features or {}, fit_rows=fit_rows,
                                 path=queries_path, section="queries")
    report.update(queries=queries[0].rows, train=len(train), test=len(test))
    vocabs = {"items": items[1]} | ({} if cfg.item_to_item() else {"queries": queries[1]})
    log(f"encoded {report['items']} items, {report['queries']} queries, "
        f"{len(train)} train / {len(test)} test pairs")
    return FeatureStore(items=items[0], queries=queries[0], splits={"train": train, "test": test},
                        vocabs=vocabs, report=report)


def _entity_frame(cfg: Config, inter: pl.DataFrame, ipath: str, *, entity: str) -> tuple[pl.DataFrame, str]:
    """The items (or query entity) table, validated; from interaction rows when it has no file."""
    sec = cfg.items if entity == "items" else cfg.queries
    id_col = cfg.item_id() if entity == "items" else cfg.query_id()
    feats: dict[str, Feature] = sec.features or {}
    if sec.path:
        path = cfg.resolve(sec.path) or "-"
        df = io.read_table(path, sec.format, strings=[id_col])
        require_columns(df, {id_col: f"{entity}.id"}, path=path)
        check_ids(df, id_col, path=path, key=f"{entity}.id", unique=True)
    else:
        path = ipath
        cols = {id_col: f"{entity}.id"} | {f.source(n): f"{entity}.features.{n}" for n, f in feats.items()}
        require_columns(inter, cols, path=path)
        df = inter.select(list(dict.fromkeys(cols))).unique(subset=id_col, keep="first", maintain_order=True)
    require_columns(df, {f.source(n): f"{entity}.features.{n}" for n, f in feats.items()}, path=path)
    for name, feat in feats.items():
        check_feature(df, feat.source(name), feat, path=path, key=f"{entity}.features.{name}")
    return df, path


def _row_lookup(df: pl.DataFrame, id_col: str) -> pl.DataFrame:
    return df.select(pl.col(id_col).cast(pl.String).alias("id"), pl.int_range(pl.len(), dtype=pl.Int64).alias("row"))


def _drop_unknown(pairs: pl.DataFrame, cfg: Config, path: str, report: dict[str, Any], log: Log) -> pl.DataFrame:
    ic = cfg.interactions
    for side, col, what in (("item_row", ic.item, "item"), ("query_row", ic.query, "query")):
        unknown = pairs[side].null_count()
        report[f"unknown_{what}_pairs"] = unknown
        if not unknown:
            continue
        example = pairs.filter(pl.col(side).is_null())[col][0]
        table = "catalog" if what == "item" or cfg.item_to_item() else "queries table"
        msg = f"{path}: {unknown} of {pairs.height} pairs have a {what} id not in the {table} (column '{col}', e.g. '{example}')"
        if ic.on_unknown_item == "error":
            raise DataError(msg, hint="add them to the table or set interactions.on_unknown_item: drop")
        log(f"warning: {msg}; dropped (interactions.on_unknown_item: drop)")
        pairs = pairs.filter(pl.col(side).is_not_null())
    if pairs.height == 0:
        raise DataError(f"{path}: no pairs left after dropping unknown ids", hint="check that the ids match")
    return pairs


def _split(pairs: pl.DataFrame, cfg: Config, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test split, then optional down-sampling of training pairs."""
    sp, n = cfg.split, pairs.height
    rng = np.random.default_rng(sp.seed)
    if sp.method == "random":
        is_test = np.zeros(n, bool)
        is_test[rng.permutation(n)[: int(round(n * sp.test_fraction))]] = True
    elif sp.method == "time":
        col = cfg.interactions.time
        if col is None:
            raise DataError("split.method: time needs interactions.time", hint="name the time column")
        order = pairs[col].rank("ordinal").to_numpy() - 1  # stable: ties keep file order
        is_test = order >= n - int(round(n * sp.test_fraction))
    else:
        values = pairs[sp.column or ""].cast(pl.String).str.to_lowercase()
        bad = ~values.is_in(["train", "test", "true", "false"])
        if bad.any():
            raise DataError(f"split.column '{sp.column}' has value '{values.filter(bad)[0]}'",
                            hint="use train/test (or true/false meaning test)")
        is_test = values.is_in(["test", "true"]).to_numpy()
    rows = np.stack([pairs["query_row"].to_numpy(), pairs["item_row"].to_numpy()], 1).astype(np.int32)
    train, test = rows[~is_test], rows[is_test]
    if sp.fraction < 1.0:
        keep = np.sort(np.random.default_rng(sp.seed + 1).permutation(len(train))[: int(round(len(train) * sp.fraction))])
        train = train[keep]
    report["fraction"] = sp.fraction
    if len(train) == 0:
        raise DataError("the train split is empty", hint="lower split.test_fraction or raise split.fraction")
    if len(test) == 0:
        raise DataError("the test split is empty", hint="raise split.test_fraction (or add test rows)")
    return np.ascontiguousarray(train), np.ascontiguousarray(test)


def _encode_entity(df: pl.DataFrame, id_col: str, feats: dict[str, Feature], *, fit_rows: np.ndarray | None,
                   path: str, section: str) -> tuple[EntityTable, dict[str, encode.Vocab]]:
    features, lengths, specs, vocabs = {}, {}, {}, {}
    for name, feat in feats.items():
        col = feat.source(name)
        if feat.type == "numeric":
            fit = df[col] if fit_rows is None else df[col].gather(fit_rows)
            vocab = encode.fit_numeric(fit, feat)
            arr, present = encode.encode_numeric(df[col], vocab, feat.dense)
            lengths[name] = present
        else:
            long = encode.tokens(df, col, feat)
            fit = long if fit_rows is None else long.filter(pl.col("row").is_in(fit_rows.astype(np.uint32)))
            vocab = encode.fit_vocab(fit, feat)
            arr, lengths[name] = encode.encode_tokens(long, vocab, df.height, feat.length())
        features[name], vocabs[name] = arr, vocab
        specs[name] = FeatureSpec(name=name, type=feat.type, num_embeddings=0 if feat.dense else vocab.num_embeddings,
                                  max_len=arr.shape[1], dense=feat.dense)
    return EntityTable(ids=np.asarray(df[id_col].cast(pl.String).to_numpy()).astype(str), features=features,
                       lengths=lengths, specs=specs), vocabs


def save(store: FeatureStore, path: Path) -> None:
    """Write the store as .npy arrays + meta.json into `path`, atomically (temp dir + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        entities = {"items": store.items} | ({} if store.item_to_item else {"queries": store.queries})
        for ename, table in entities.items():
            np.save(tmp / f"{ename}.ids.npy", table.ids)
            for fname in table.features:
                np.save(tmp / f"{ename}.f.{fname}.npy", table.features[fname])
                np.save(tmp / f"{ename}.len.{fname}.npy", table.lengths[fname])
        for split, arr in store.splits.items():
            np.save(tmp / f"split.{split}.npy", arr)
        meta = {"format_version": FORMAT_VERSION, "key": store.key, "report": store.report,
                "item_to_item": store.item_to_item,
                "specs": {e: [s.__dict__ for s in t.specs.values()] for e, t in entities.items()},
                "vocabs": {e: {f: v.to_json() for f, v in vs.items()} for e, vs in store.vocabs.items()}}
        io.write_json(tmp / "meta.json", meta)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(path: Path) -> FeatureStore:
    """Memory-map a saved store."""
    meta = io.read_json(path / "meta.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"store format {meta.get('format_version')} != {FORMAT_VERSION}")

    def table(ename: str) -> EntityTable:
        specs = {s["name"]: FeatureSpec(**s) for s in meta["specs"][ename]}
        return EntityTable(
            ids=np.load(path / f"{ename}.ids.npy", mmap_mode="r"),
            features={f: np.load(path / f"{ename}.f.{f}.npy", mmap_mode="r") for f in specs},
            lengths={f: np.load(path / f"{ename}.len.{f}.npy", mmap_mode="r") for f in specs},
            specs=specs)

    items = table("items")
    queries = items if meta["item_to_item"] else table("queries")
    splits = {s: np.load(path / f"split.{s}.npy", mmap_mode="r") for s in ("train", "test")}
    vocabs = {e: {f: encode.Vocab.from_json(v) for f, v in vs.items()} for e, vs in meta["vocabs"].items()}
    return FeatureStore(items=items, queries=queries, splits=splits, vocabs=vocabs, report=meta["report"],
                        key=meta["key"], path=path)
