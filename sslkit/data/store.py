"""The feature store: every entity's features as padded int arrays, pairs as row indices.

Built once from the schema with Polars, cached on disk under `<cache_dir>/<key>/` (key = hash of
the data-relevant schema sections and the input files' bytes), memory-mapped when loaded again.
`docs/ARCHITECTURE.md` describes the layout.
"""

from __future__ import annotations

import errno
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

from sslkit.data import encode, events, io, pairstream
from sslkit.config import Config, Feature
from sslkit.errors import DataError
from sslkit.data.schema import FeatureSpec, check_feature, check_ids, require_columns

FORMAT_VERSION = 3  # 2: per-array checksums in meta.json; 3: meta.json checksums itself (specs, vocabularies)


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
    digests: dict[str, str] = field(default_factory=dict)  # array name → content digest (verified at load)

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


def training_split(store: FeatureStore) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the pairs a model trains on and the held-out pairs it is validated on.

    Every reader of training pairs (model training, logQ and popularity counts, exclude-seen,
    TopPopular, head/tail/cold slices) takes them from here, so each command sees the same train set.
    """
    validation = store.splits.get("validation")
    return np.asarray(store.splits["train"]), np.asarray(validation if validation is not None else np.zeros((0, 2), np.int32))


def all_pairs(store: FeatureStore) -> np.ndarray:
    """Every pair of every split (train, validation, test), int32 [n, 2]."""
    return np.concatenate([np.asarray(a) for a in store.splits.values()])


def load_or_build(cfg: Config, *, log: Log = lambda _: None, use_cache: bool = True) -> FeatureStore:
    """The cached store for this schema and data, built (and cached) when missing.

    One process builds a cache entry at a time (a lock beside it); the others wait and adopt the
    finished entry. An entry that fails its checksums is reported and rebuilt. A store built from
    standard input is always built, then cached under its `content_key`.
    """
    key = cache_key(cfg) if use_cache else None
    root = Path(cfg.resolve(cfg.cache_dir or ".sslkit-cache") or ".sslkit-cache")
    if key and (store := _cached(root / key, log)) is not None:
        return store
    if key:
        with _entry_lock(root, key, log):
            if (store := _cached(root / key, lambda _: None)) is not None:  # built by another process meanwhile
                log(f"feature store: cached {root / key}")
                return store
            store = build(cfg, log=log)
            store.key = key
            save(store, root / key)
            store.path = root / key
        log(f"feature store: built and cached in {root / key}")
        return store
    store = build(cfg, log=log)
    if use_cache:  # standard input: cached under what it encoded to
        key = content_key(cfg, store)
        with _entry_lock(root, key, log):
            if _cached(root / key, lambda _: None) is None:
                store.key = key
                save(store, root / key)
        store.key, store.path = key, root / key
    return store


def _entry_lock(root: Path, key: str, log: Log) -> Any:
    return io.dir_lock(root, name=f".{key}.lock", what="feature-store cache entry", wait=True,
                       on_wait=lambda: log(f"feature store: another sslkit process is building {root / key}; waiting"))


def _cached(path: Path, log: Log) -> FeatureStore | None:
    """The verified store at `path`, or None (missing; damaged entries are reported, then rebuilt)."""
    if not (path / "meta.json").exists():
        return None
    try:
        store = load(path)
    except StoreDamaged as e:
        log(f"warning: {e}; rebuilding it")
        return None
    log(f"feature store: cached {path}")
    return store


def build(cfg: Config, *, log: Log = lambda _: None) -> FeatureStore:
    """Read, validate, split, fit vocabularies and encode (DESIGN §1–3).

    Pairs stream in bounded memory into memory-mapped split files when `pairstream.applies`;
    schemas whose event-log rules need the whole log are built in memory.
    """
    if pairstream.applies(cfg):
        return _build_streamed(cfg, log=log)
    inter_cfg = cfg.interactions
    ipath = cfg.resolve(inter_cfg.path) or "-"
    raw = io.read_table(ipath, inter_cfg.format, strings=events.id_sources(cfg))
    log_df, inter, report = events.read_log(raw, cfg, path=ipath, log=log)  # filter, pair rule, ids, time
    qcol, icol = inter_cfg.query_column(), inter_cfg.item_column()

    items_df, items_path = _entity_frame(cfg, log_df, ipath, entity="items")
    item_rows = events.row_lookup(items_df, cfg.item_id())
    report.update(pairs_read=inter.height, items=items_df.height)
    pairs = inter.with_row_index("pair").join(
        item_rows.rename({"id": icol, "row": "item_row"}), on=icol, how="left")
    if cfg.item_to_item():
        queries_df, queries_path, query_rows = items_df, items_path, item_rows
    else:
        queries_df, queries_path = _entity_frame(cfg, log_df, ipath, entity="queries")
        query_rows = events.row_lookup(queries_df, cfg.query_id())
    pairs = pairs.join(query_rows.rename({"id": qcol, "row": "query_row"}), on=qcol, how="left").sort("pair")
    pairs = _drop_unknown(pairs, cfg, ipath, report, log)
    train, test = _split(pairs, cfg, report)
    train, validation = carve_validation(pairs, train, cfg, report)
    return _encoded(cfg, (items_df, items_path), (queries_df, queries_path),
                    {"train": train, "validation": validation, "test": test}, report, log)


def _build_streamed(cfg: Config, *, log: Log) -> FeatureStore:
    """`build` with the pairs streamed (`sslkit.data.pairstream`): the catalogs in memory, the pairs in chunks."""
    ipath = cfg.resolve(cfg.interactions.path) or "-"
    no_log = pl.DataFrame()
    items_df, items_path = _entity_frame(cfg, no_log, ipath, entity="items")
    queries_df, queries_path = (items_df, items_path) if cfg.item_to_item() else \
        _entity_frame(cfg, no_log, ipath, entity="queries")
    report: dict[str, Any] = {}
    staging = pairstream.staging_dir(cfg)
    try:
        splits, digests = pairstream.build_splits(cfg, items_df, queries_df, staging=staging, report=report, log=log)
        report["items"] = items_df.height
        store = _encoded(cfg, (items_df, items_path), (queries_df, queries_path), splits, report, log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    store.digests = digests  # the split files' digests, hashed while written (entities are hashed by `save`)
    pairstream.remove_with(store, staging)
    return store


def _training_queries(train: np.ndarray, rows: int) -> np.ndarray:
    """Sorted distinct query rows of the training pairs (`np.unique(train[:, 0])`), read in chunks."""
    seen = np.zeros(rows, bool)
    for start in range(0, len(train), pairstream.CHUNK_ROWS):
        seen[np.asarray(train[start:start + pairstream.CHUNK_ROWS, 0])] = True
    return np.flatnonzero(seen)


def _encoded(cfg: Config, items_src: tuple[pl.DataFrame, str], queries_src: tuple[pl.DataFrame, str],
             splits: dict[str, np.ndarray], report: dict[str, Any], log: Log) -> FeatureStore:
    """Fit vocabularies (items: the catalog; queries: the training queries) and encode both tables."""
    (items_df, items_path), (queries_df, queries_path) = items_src, queries_src
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    items = _encode_entity(items_df, cfg.item_id(), cfg.items.features, fit_rows=None, path=items_path, section="items")
    if cfg.item_to_item():
        queries = items
    else:
        fit_rows = _training_queries(train, queries_df.height)  # query vocabularies see training queries only
        queries = _encode_entity(queries_df, cfg.query_id(), cfg.queries.features or {}, fit_rows=fit_rows,
                                 path=queries_path, section="queries")
    report.update(queries=queries[0].rows, train=len(train), validation=len(validation), test=len(test))
    vocabs = {"items": items[1]} | ({} if cfg.item_to_item() else {"queries": queries[1]})
    log(f"encoded {report['items']} items, {report['queries']} queries, "
        f"{len(train)} train / {len(validation)} validation / {len(test)} test pairs")
    return FeatureStore(items=items[0], queries=queries[0], splits=splits, vocabs=vocabs, report=report)


def _entity_frame(cfg: Config, inter: pl.DataFrame, ipath: str, *, entity: str) -> tuple[pl.DataFrame, str]:
    """The items (or query entity) table, validated; from interaction rows when it has no file."""
    sec = cfg.items if entity == "items" else cfg.queries
    id_col = cfg.item_id() if entity == "items" else cfg.query_id()
    feats: dict[str, Feature] = sec.features or {}
    if sec.path:
        path = cfg.resolve(sec.path) or "-"
        parts, separator = events.id_parts(cfg, entity)
        df = io.read_table(path, sec.format, strings=parts)
        require_columns(df, {c: f"{entity}.id" for c in parts}, path=path)
        df = events.with_id(df, parts, separator, path=path, key=f"{entity}.id_separator")
        check_ids(df, id_col, path=path, key=f"{entity}.id", unique=True)
    else:
        path = ipath
        cols = {id_col: f"{entity}.id"} | {f.source(n): f"{entity}.features.{n}" for n, f in feats.items()}
        require_columns(inter, cols, path=path)
        df = events.catalog(inter, id_col=id_col, features=feats, aggregate=sec.aggregate, path=path, section=entity)
    require_columns(df, {f.source(n): f"{entity}.features.{n}" for n, f in feats.items()}, path=path)
    for name, feat in feats.items():
        check_feature(df, feat.source(name), feat, path=path, key=f"{entity}.features.{name}")
    return df, path


def _drop_unknown(pairs: pl.DataFrame, cfg: Config, path: str, report: dict[str, Any], log: Log) -> pl.DataFrame:
    ic = cfg.interactions
    for side, col, what in (("item_row", ic.item_column(), "item"), ("query_row", ic.query_column(), "query")):
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
    if sp.group is not None or sp.method == "leave_last_out":
        is_test = events.test_mask(pairs, cfg, report)  # whole groups on one side; each group's latest
    elif sp.method == "random":
        is_test = np.zeros(n, bool)
        is_test[rng.permutation(n)[: int(round(n * sp.test_fraction))]] = True
    elif sp.method == "time":
        col = cfg.interactions.time  # set: the config refuses a time split without it
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


def carve_validation(pairs: pl.DataFrame, train: np.ndarray, cfg: Config,
                     report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `split.validation_fraction` of the training pairs as the validation split.

    The rule that made the test split, applied to the training pairs with `validation_fraction` for
    `test_fraction` (and `split.seed` + 2): `time` takes the latest training pairs (validation lies
    between training and test in time), `leave_last_out` each group's latest training pairs,
    `split.group` whole groups; `random`, and `column` (whose column names test only), a uniform
    sample. Carved after `split.fraction`: train + validation are what a run without one trains on.

    Returns:
        (train, validation): int32 [n, 2] (query_row, item_row) each, disjoint, in input order.
    """
    sp = cfg.split
    is_val = np.zeros(len(train), bool)
    if round(len(train) * sp.validation_fraction) and (sp.method != "column" or sp.group is not None):
        at = _training_positions(pairs, train, cfg)
        rule = cfg.model_copy(update={"split": sp.model_copy(update={
            "test_fraction": sp.validation_fraction, "fraction": 1.0, "seed": sp.seed + 2})})
        try:
            is_val[_split(pairs[at].with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("item_row")),
                          rule, {})[1][:, 1]] = True
        except DataError as e:
            raise DataError(f"validation split (split.validation_fraction of the training pairs): {e.message}",
                            hint="change split.validation_fraction (0 = no validation split)") from None
    elif sp.validation_fraction:
        is_val[np.random.default_rng(sp.seed + 2).permutation(len(train))[:round(len(train) * sp.validation_fraction)]] = True
    report.update(validation_fraction=sp.validation_fraction)
    if is_val.all():
        raise DataError("the train split is empty after holding out split.validation_fraction",
                        hint="lower split.validation_fraction (0 = no validation split)")
    return np.ascontiguousarray(train[~is_val]), np.ascontiguousarray(train[is_val])


def _training_positions(pairs: pl.DataFrame, train: np.ndarray, cfg: Config) -> np.ndarray:
    """Row of `pairs` of each training pair, int64 [len(train)], in the order of `train`.

    `_split` is asked again with each pair's position in place of its item row, which it only
    carries through (no split rule reads the item row): the training pairs come back as positions.
    """
    at = pairs.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("item_row"))
    pos = _split(at, cfg, {})[0][:, 1].astype(np.int64)
    rows = np.stack([pairs["query_row"].to_numpy(), pairs["item_row"].to_numpy()], 1)[pos]
    if not np.array_equal(rows, train):
        raise RuntimeError("_split no longer carries item rows through unread; "
                           "carve_validation needs another way to find the training pairs")
    return pos


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


class StoreDamaged(ValueError):
    """A cache entry that fails its checksums or structure checks (rebuild it)."""


def _array_digest(arr: np.ndarray) -> str:
    """Content digest of an array: dtype, shape and bytes (no file header, so a layout-free identity)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode(), digest_size=16)
    h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def _arrays(store: FeatureStore) -> dict[str, np.ndarray]:
    """Every array of a store by its file stem."""
    out: dict[str, np.ndarray] = {}
    entities = {"items": store.items} | ({} if store.item_to_item else {"queries": store.queries})
    for ename, table in entities.items():
        out[f"{ename}.ids"] = table.ids
        for fname in table.features:
            out[f"{ename}.f.{fname}"] = table.features[fname]
            out[f"{ename}.len.{fname}"] = table.lengths[fname]
    for split, arr in store.splits.items():
        out[f"split.{split}"] = arr
    return out


def _vocab_json(vocabs: dict[str, Any]) -> str:
    # key order is `Vocab.to_json`'s, which vocabs.json keeps: no sort (a third of the time on 1M items)
    return json.dumps(vocabs, separators=(",", ":"), default=io._json_default)


def vocab_digest(vocabs_json: dict[str, Any]) -> str:
    """Digest of one entity's vocabularies as JSON (`Vocab.to_json()` per feature, or read back from vocabs.json)."""
    return io.digest_bytes(_vocab_json(vocabs_json).encode())


def fingerprint(store: FeatureStore) -> dict[str, str]:
    """What a run depends on, one content digest per part: each split, the items (ids and encoded
    features), the queries, each entity's vocabularies. Recorded at training; compared on use."""
    digests = {name: store.digests.get(name) or _array_digest(a) for name, a in _arrays(store).items()}
    parts: dict[str, list[str]] = {}
    for name in sorted(digests):
        head = name.split(".")[0]
        parts.setdefault(name if head == "split" else head, []).append(f"{name}={digests[name]}")
    out = {part: io.digest_bytes("\n".join(v).encode()) for part, v in parts.items()}
    for entity, vocabs in sorted(store.vocabs.items()):
        out[f"vocab.{entity}"] = vocab_digest({f: v.to_json() for f, v in vocabs.items()})
    return out


def describe_change(saved: dict[str, str], now: dict[str, str]) -> str:
    """'the test split, the items' — the parts whose digests differ (for one-line messages)."""
    names = {"split.train": "the train split", "split.test": "the test split", "split.validation": "the validation split",
             "items": "the items (ids or features)", "queries": "the queries (ids or features)",
             "vocab.items": "the item vocabularies", "vocab.queries": "the query vocabularies"}
    changed = [names.get(p, p) for p in sorted(set(saved) | set(now)) if saved.get(p) != now.get(p)]
    return ", ".join(changed)


def save(store: FeatureStore, path: Path) -> None:
    """Write the store as .npy arrays + meta.json (with each array's checksum) into `path`, atomically
    (temp dir + rename); an entry already at `path` (a damaged one being rebuilt) is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        entities = {"items": store.items} | ({} if store.item_to_item else {"queries": store.queries})
        digests = {}
        for name, arr in _arrays(store).items():
            if name in store.digests and _link_file(arr, tmp / f"{name}.npy"):
                digests[name] = store.digests[name]  # a streamed split file: linked, not read again
                continue
            arr = np.ascontiguousarray(arr)
            with io.named_errors(path / f"{name}.npy"):
                np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
            digests[name] = _array_digest(arr)
        body = {"format_version": FORMAT_VERSION, "key": store.key, "report": store.report,
                "item_to_item": store.item_to_item, "splits": sorted(store.splits), "checksums": digests,
                "specs": {e: [s.__dict__ for s in t.specs.values()] for e, t in entities.items()},
                "vocabs": {e: {f: v.to_json() for f, v in vs.items()} for e, vs in store.vocabs.items()}}
        body = json.loads(json.dumps(body, default=io._json_default))  # exactly what a load reads back
        io.write_json(tmp / "meta.json", {**body, "meta_checksum": _meta_digest(body)})
        try:
            os.rename(tmp, path)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        store.digests = digests
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_file(arr: np.ndarray, dest: Path) -> bool:
    """Hard-link (else copy) the .npy file `arr` maps as a whole; False when it maps no whole file."""
    src = getattr(arr, "filename", None)
    if not isinstance(arr, np.memmap) or not src or not arr.flags.c_contiguous:
        return False
    try:
        whole = np.load(src, mmap_mode="r")
        if (whole.dtype, whole.shape, whole.offset) != (arr.dtype, arr.shape, arr.offset):
            return False
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    except (OSError, ValueError):
        return False
    return True


def load(path: Path) -> FeatureStore:
    """Memory-map a saved store, verifying its structure and every array's checksum.

    Raises:
        StoreDamaged: a file is missing, unreadable, of the wrong type or shape, or fails its checksum.
    """
    try:
        meta = io.read_json(path / "meta.json")
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise StoreDamaged(f"store format {meta.get('format_version') if isinstance(meta, dict) else '?'} "
                               f"is not {FORMAT_VERSION}")
        store = _load(path, meta)
    except StoreDamaged as e:
        raise StoreDamaged(f"feature-store cache {path} is damaged ({e})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise StoreDamaged(f"feature-store cache {path} is damaged ({type(e).__name__}: "
                           f"{(str(e).splitlines() or [''])[0][:120]})") from None
    return store


def _meta_digest(body: dict[str, Any]) -> str:
    """Checksum of meta.json's own content (specs, vocabularies, report, the arrays' checksums)."""
    return io.digest_bytes(json.dumps(body, separators=(",", ":")).encode())


def _load(path: Path, meta: dict[str, Any]) -> FeatureStore:
    body = {k: v for k, v in meta.items() if k != "meta_checksum"}
    if meta.get("meta_checksum") != _meta_digest(body):
        raise StoreDamaged("meta.json fails its checksum (its feature specs or vocabularies were changed)")
    checksums: dict[str, str] = meta["checksums"]

    def arr(name: str, kinds: str, ndim: int) -> np.ndarray:
        a = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        if a.dtype.kind not in kinds or a.ndim != ndim:
            raise StoreDamaged(f"{name}.npy holds {a.dtype} with {a.ndim} dimensions")
        if _array_digest(a) != checksums.get(name):
            raise StoreDamaged(f"{name}.npy fails its checksum")
        return a

    def table(ename: str) -> EntityTable:
        specs = {s["name"]: FeatureSpec(**s) for s in meta["specs"][ename]}
        t = EntityTable(ids=arr(f"{ename}.ids", "U", 1),
                        features={f: arr(f"{ename}.f.{f}", "if", 2) for f in specs},
                        lengths={f: arr(f"{ename}.len.{f}", "i", 1) for f in specs}, specs=specs)
        if any(len(a) != t.rows for a in [*t.features.values(), *t.lengths.values()]):
            raise StoreDamaged(f"{ename} arrays disagree on the number of rows")
        return t

    items = table("items")
    queries = items if meta["item_to_item"] is True else table("queries")
    splits = {s: arr(f"split.{s}", "i", 2) for s in meta.get("splits", ("train", "test"))}
    for s, a in splits.items():
        if a.shape[1] != 2 or (len(a) and (a.min() < 0 or a[:, 0].max() >= queries.rows or a[:, 1].max() >= items.rows)):
            raise StoreDamaged(f"split.{s}.npy holds rows outside the tables")
    vocabs = {e: {f: encode.Vocab.from_json(v) for f, v in vs.items()} for e, vs in meta["vocabs"].items()}
    return FeatureStore(items=items, queries=queries, splits=splits, vocabs=vocabs, report=dict(meta["report"]),
                        key=str(meta["key"]), path=path, digests={k: checksums[k] for k in checksums})
