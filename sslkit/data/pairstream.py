"""The pair path of the store build in bounded memory: interactions streamed in chunks.

`store.build` takes this path when the interactions are files (CSV or Parquet, a glob allowed),
both entity tables have files (the catalog and, in user-to-item mode, the queries table) and
no event-log rule needs the whole log at once (`where`, `pairs`, `time_from`/`time_format`,
`split.group`, `leave_last_out`, a text time column): those keep the in-memory path.

1. A Polars lazy scan, collected in batches by the streaming engine, joins each id to its table
   row (one hash table per lookup, built once); each batch's known pairs go to a temporary file as
   int32 (query_row, item_row), with the split column's test flags or the time column's values.
2. The split rule runs on those per-pair arrays exactly as the in-memory `_split` and
   `carve_validation` do (same seeds, same numpy draws), giving each pair a role byte.
3. A second pass copies the int32 pairs into one .npy file per split, hashing as it writes.

What grows with the pairs: 1 byte per pair (its role), plus while the split is drawn 4 bytes per
pair for `random` (numpy's shuffle of an int32 range, the same draws as `permutation`) or 17 for
`time` (the values and their stable order); everything else is one batch or one table. The split
files are memory-mapped (`np.load(mmap_mode="r")`) and hard-linked into the cache by `store.save`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import polars as pl

from sslkit.data import events, io
from sslkit.config import Config, id_column
from sslkit.errors import DataError
from sslkit.data.schema import require_columns

CHUNK_ROWS = 1 << 20  # rows per streamed batch and per copy in the second pass
Log = Callable[[str], None]


def applies(cfg: Config) -> bool:
    """Whether this schema's pairs can be built by streaming (see the module docstring)."""
    ic, sp = cfg.interactions, cfg.split
    path = cfg.resolve(ic.path) or "-"
    if path == "-" or ic.where is not None or ic.pairs is not None or ic.time_from or ic.time_format:
        return False
    if sp.group is not None or sp.method not in ("random", "time", "column"):
        return False
    if not cfg.items.path or (not cfg.item_to_item() and not cfg.queries.path):
        return False
    try:
        if io.infer_format(path, ic.format) not in ("csv", "parquet"):
            return False
    except DataError:
        return False
    if sp.method == "time" and ic.time:  # a text time column ranks as text: in memory
        schema = _scan(path, ic.format, strings=events.id_sources(cfg)).collect_schema()
        return ic.time not in schema or schema[ic.time].is_numeric() or schema[ic.time].is_temporal()
    return True


def _scan(path: str, fmt: str | None, *, strings: list[str]) -> pl.LazyFrame:
    """A lazy scan of the interactions file(s), read as `io.read_table` reads them (ids as text)."""
    fmt, files = io.infer_format(path, fmt), io.expand(path)
    for f in files:
        if os.path.getsize(f) == 0:
            raise DataError(f"{f}: file is empty")
    overrides = {c: pl.String for c in strings}
    if fmt == "csv":
        frames = [pl.scan_csv(f, separator="\t" if f.endswith(".tsv") else ",", schema_overrides=overrides,
                              infer_schema_length=10000) for f in files]
    else:
        frames = [pl.scan_parquet(f) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def build_splits(cfg: Config, items_df: pl.DataFrame, queries_df: pl.DataFrame, *, staging: Path,
                 report: dict[str, Any], log: Log) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Stream the pairs into memory-mapped int32 split files under `staging`.

    Args:
        items_df, queries_df: the validated entity tables (the same frame in item-to-item mode).
        staging: an empty directory for the split files (kept while the arrays are in use).

    Returns:
        ({split: int32 memmap [n, 2]}, {"split.<name>": content digest}).

    Raises:
        DataError / SchemaError: as the in-memory build, with the same messages.
    """
    ic, sp = cfg.interactions, cfg.split
    ipath = cfg.resolve(ic.path) or "-"
    lf = _scan(ipath, ic.format, strings=events.id_sources(cfg))
    try:
        schema = lf.collect_schema()
    except pl.exceptions.PolarsError as e:  # a truncated Parquet file: its footer is gone
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{ipath}: cannot read as {io.infer_format(ipath, ic.format)}: {first}",
                        hint="the file is damaged or truncated: restore or rewrite it")
    require_columns(pl.DataFrame(schema=schema), events._needed(cfg), path=ipath)
    q_sep = cfg.items.id_separator if cfg.item_to_item() else cfg.queries.id_separator
    for parts, sep in ((events.columns(ic.item), cfg.items.id_separator), (events.columns(ic.query), q_sep)):
        if len(parts) > 1 and id_column(parts) not in schema:
            lf = lf.with_columns(pl.concat_str([pl.col(c).cast(pl.String) for c in parts], separator=sep)
                                 .alias(id_column(parts)))
    qcol, icol = ic.query_column(), ic.item_column()
    extra = [ic.time] if sp.method == "time" and ic.time else [sp.column] if sp.method == "column" else []
    item_rows = events.row_lookup(items_df, cfg.item_id())
    query_rows = item_rows if cfg.item_to_item() else events.row_lookup(queries_df, cfg.query_id())
    lookups = [(icol, item_rows, "item_row"), (qcol, query_rows, "query_row")]
    for col, rows, name in lookups:
        lf = lf.join(rows.lazy().rename({"id": col, "row": name}), on=col, how="left", maintain_order="left")
    # a CSV row with too few fields reads as nulls in the last column: count them, then name the line
    csv = io.infer_format(ipath, ic.format) == "csv"
    last = [pl.col(list(schema)[-1]).is_null().alias("_short_row")] if csv and len(schema) > 1 else []
    lf = lf.select(icol, qcol, "item_row", "query_row", *extra, *last)
    pairs_path = staging / "pairs.bin"
    try:
        with io.named_errors(staging):  # a full disk while staging names the cache directory
            scan = _first_pass(lf, cfg, pairs_path, staging, report=report)
    except pl.exceptions.PolarsError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{ipath}: cannot read as {io.infer_format(ipath, ic.format)}: {first}")
    if scan["short_rows"]:
        for f in io.expand(ipath):
            io.check_field_counts(f, "\t" if f.endswith(".tsv") else ",")
    _check_pass(scan, cfg, ipath, report, log)
    n = scan["kept"]
    role = split_roles(n, cfg, report, test_flags=_from_file(staging / "flags.bin", np.bool_, n),
                       times=_from_file(staging / "times.bin", scan.get("time_dtype", np.int64), n),
                       time_valid=_from_file(staging / "valid.bin", np.bool_, n))
    for f in ("flags.bin", "times.bin", "valid.bin"):
        (staging / f).unlink(missing_ok=True)
    with io.named_errors(staging):
        splits, digests = _write_splits(pairs_path, role, staging)
    pairs_path.unlink()
    return splits, digests


def _first_pass(lf: pl.LazyFrame, cfg: Config, pairs_path: Path, staging: Path,
                report: dict[str, Any]) -> dict[str, Any]:
    """Stream the joined batches: write known pairs (int32), split flags or times; count the rest."""
    ic, sp = cfg.interactions, cfg.split
    qcol, icol = ic.query_column(), ic.item_column()
    scan: dict[str, Any] = {"rows": 0, "kept": 0, "null_item": 0, "null_query": 0, "unknown_item": 0,
                            "unknown_query": 0, "example_item": None, "example_query": None, "bad": None,
                            "short_rows": 0}
    with open(pairs_path, "wb") as out, open(staging / "flags.bin", "wb") as flags, \
            open(staging / "times.bin", "wb") as times, open(staging / "valid.bin", "wb") as valid:
        for batch in lf.collect_batches(chunk_size=CHUNK_ROWS):
            scan["rows"] += batch.height
            if "_short_row" in batch.columns:
                scan["short_rows"] += int(batch["_short_row"].sum())
            scan["null_item"] += batch[icol].null_count()
            scan["null_query"] += batch[qcol].null_count()
            no_item = batch["item_row"].is_null()
            no_query = batch["query_row"].is_null() & ~no_item
            for what, col, mask in (("item", icol, no_item), ("query", qcol, no_query)):
                count = int(mask.sum())
                scan[f"unknown_{what}"] += count
                if count and scan[f"example_{what}"] is None:
                    scan[f"example_{what}"] = batch[col].filter(mask)[0]
            kept = batch.filter(~(no_item | no_query))
            scan["kept"] += kept.height
            out.write(np.stack([kept["query_row"].to_numpy(), kept["item_row"].to_numpy()], 1)
                      .astype(np.int32).tobytes())
            if sp.method == "column" and scan["bad"] is None:
                values = kept[sp.column or ""].cast(pl.String).str.to_lowercase()
                bad = ~values.is_in(["train", "test", "true", "false"])
                if bad.any():
                    scan["bad"] = values.filter(bad)[0]
                flags.write(values.is_in(["test", "true"]).to_numpy().astype(np.bool_).tobytes())
            elif sp.method == "time" and ic.time:
                t = kept[ic.time]
                physical = t.to_physical()
                scan["time_dtype"] = np.float64 if physical.dtype.is_float() else np.int64
                valid.write(t.is_not_null().to_numpy().tobytes())
                times.write(physical.fill_null(0).to_numpy().astype(scan["time_dtype"]).tobytes())
    return scan


def _check_pass(scan: dict[str, Any], cfg: Config, path: str, report: dict[str, Any], log: Log) -> None:
    """The in-memory build's checks on the whole log, from the first pass's counts (same messages)."""
    ic, sp = cfg.interactions, cfg.split
    if scan["rows"] == 0:
        raise DataError(f"{path}: no rows", hint="the file has a header but no data")
    for col, key, nulls in ((ic.item_column(), "interactions.item", scan["null_item"]),
                            (ic.query_column(), "interactions.query", scan["null_query"])):
        if nulls:
            raise DataError(f"{path}: column '{col}' ({key}) has {nulls} empty id(s)",
                            hint="drop those rows or fill the ids")
    report.update(events_read=scan["rows"], pairs_read=scan["rows"])
    total = scan["rows"]
    for what, col in (("item", ic.item_column()), ("query", ic.query_column())):
        unknown = scan[f"unknown_{what}"]
        report[f"unknown_{what}_pairs"] = unknown
        if not unknown:
            continue
        table = "catalog" if what == "item" or cfg.item_to_item() else "queries table"
        msg = (f"{path}: {unknown} of {total} pairs have a {what} id not in the {table} "
               f"(column '{col}', e.g. '{scan[f'example_{what}']}')")
        if ic.on_unknown_item == "error":
            raise DataError(msg, hint="add them to the table or set interactions.on_unknown_item: drop")
        log(f"warning: {msg}; dropped (interactions.on_unknown_item: drop)")
        total -= unknown
    if scan["kept"] == 0:
        raise DataError(f"{path}: no pairs left after dropping unknown ids", hint="check that the ids match")
    if scan["bad"] is not None:
        raise DataError(f"split.column '{sp.column}' has value '{scan['bad']}'",
                        hint="use train/test (or true/false meaning test)")


def _from_file(path: Path, dtype: Any, n: int) -> np.ndarray | None:
    return np.fromfile(path, dtype=dtype) if path.exists() and path.stat().st_size == n * np.dtype(dtype).itemsize and n else None


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    """bool [n]: `np.random.default_rng(seed).permutation(n)[:k]` as a mask, with 4 bytes per pair (not 8)."""
    perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    np.random.default_rng(seed).shuffle(perm)  # the same draws as permutation(n)
    mask = np.zeros(n, bool)
    mask[perm[:k]] = True
    return mask


def _latest(times: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """bool [n]: the pairs whose ordinal time rank (ties in input order, nulls unranked) is ≥ n − k."""
    n = len(times)
    at = np.flatnonzero(valid)
    order = np.argsort(times[at], kind="stable")
    mask = np.zeros(n, bool)
    mask[at[order[n - k:]]] = True
    return mask


def _test_mask(n: int, cfg: Config, fraction: float, seed: int, *, test_flags: np.ndarray | None,
               times: np.ndarray | None, time_valid: np.ndarray | None) -> np.ndarray:
    sp = cfg.split
    k = int(round(n * fraction))
    if sp.method == "random":
        return _sample(n, k, seed)
    if sp.method == "time":
        assert times is not None and time_valid is not None
        return _latest(times, time_valid, k)
    assert test_flags is not None
    return test_flags


def split_roles(n: int, cfg: Config, report: dict[str, Any], *, test_flags: np.ndarray | None = None,
                times: np.ndarray | None = None, time_valid: np.ndarray | None = None) -> np.ndarray:
    """Each pair's split as uint8 [n] (0 dropped by `split.fraction`, 1 train, 2 validation, 3 test).

    The same draws as `store._split` then `store.carve_validation` on these pairs in input order.
    """
    sp = cfg.split
    is_test = _test_mask(n, cfg, sp.test_fraction, sp.seed, test_flags=test_flags, times=times, time_valid=time_valid)
    train = ~is_test
    n_train = int(np.count_nonzero(train))
    if sp.fraction < 1.0:
        train[train] = _sample(n_train, int(round(n_train * sp.fraction)), sp.seed + 1)
        n_train = int(np.count_nonzero(train))
    report["fraction"] = sp.fraction
    if n_train == 0:
        raise DataError("the train split is empty", hint="lower split.test_fraction or raise split.fraction")
    if not is_test.any():
        raise DataError("the test split is empty", hint="raise split.test_fraction (or add test rows)")
    k = round(n_train * sp.validation_fraction)
    if k and sp.method != "column":
        if sp.method == "time" and times is not None and time_valid is not None:
            is_val = _latest(times[train], time_valid[train], k)
        else:
            is_val = _sample(n_train, k, sp.seed + 2)
        problem = ("the train split is empty" if is_val.all() else
                   "the test split is empty" if not is_val.any() else None)
        if problem:
            raise DataError(f"validation split (split.validation_fraction of the training pairs): {problem}",
                            hint="change split.validation_fraction (0 = no validation split)")
    else:
        is_val = _sample(n_train, k, sp.seed + 2) if sp.validation_fraction else np.zeros(n_train, bool)
    report.update(validation_fraction=sp.validation_fraction)
    if is_val.all():
        raise DataError("the train split is empty after holding out split.validation_fraction",
                        hint="lower split.validation_fraction (0 = no validation split)")
    role = np.zeros(n, np.uint8)
    role[is_test] = 3
    role[train] = 1 + is_val.view(np.uint8)
    return role


def _npy_writer(path: Path, rows: int) -> tuple[BinaryIO, Any]:
    """An open .npy file of int32 [rows, 2] (header written) and the hash `store._array_digest` gives it."""
    fh = open(path, "wb")
    np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)),
                                              "fortran_order": False, "shape": (rows, 2)})
    h = hashlib.blake2b(f"{np.dtype(np.int32).str}{(rows, 2)}".encode(), digest_size=16)
    return fh, h


def _write_splits(pairs_path: Path, role: np.ndarray, staging: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Copy the int32 pairs into split.<name>.npy files by role, one chunk in memory at a time."""
    names = {1: "train", 2: "validation", 3: "test"}
    counts = np.bincount(role, minlength=4)
    writers = {r: _npy_writer(staging / f"split.{name}.npy", int(counts[r])) for r, name in names.items()}
    try:
        with open(pairs_path, "rb") as src:
            for start in range(0, len(role), CHUNK_ROWS):
                chunk = np.fromfile(src, dtype=np.int32, count=2 * min(CHUNK_ROWS, len(role) - start)).reshape(-1, 2)
                r = role[start:start + len(chunk)]
                for code, (fh, h) in writers.items():
                    part = np.ascontiguousarray(chunk[r == code]).tobytes()
                    fh.write(part)
                    h.update(part)
    finally:
        for fh, _ in writers.values():
            fh.close()
    splits = {name: np.load(staging / f"split.{name}.npy", mmap_mode="r") for name in names.values()}
    digests = {f"split.{names[r]}": h.hexdigest() for r, (_, h) in writers.items()}
    return splits, digests


def staging_dir(cfg: Config) -> Path:
    """A new temporary directory beside the cache (so `store.save` can hard-link its files)."""
    root = Path(cfg.resolve(cfg.cache_dir or ".sslkit-cache") or ".sslkit-cache")
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="sslkit-build-"))
    return path


def remove_with(owner: object, path: Path) -> None:
    """Remove `path` once `owner` is garbage (or at exit); open memory maps stay valid."""
    weakref.finalize(owner, shutil.rmtree, path, True)
