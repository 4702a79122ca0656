"""Vocabularies and encoding: raw columns -> padded int32 id arrays. Pure (frames in, arrays out).

Ids: 0 = padding / missing, 1 = out-of-vocabulary, 2.. = vocabulary values, then (optionally)
`hash_buckets` ids for values outside the vocabulary. Numerics become quantile-bucket ids or, with
`dense: true`, a standardized float column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from sslkit.config import Feature

PAD, OOV = 0, 1
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


@dataclass
class Vocab:
    """A fitted feature vocabulary (what `embed` needs to encode new rows)."""

    type: str
    values: list[str] = field(default_factory=list)  # id = 2 + position
    counts: list[int] = field(default_factory=list)
    hash_buckets: int = 0
    edges: list[float] = field(default_factory=list)  # numeric buckets: inner quantile edges
    mean: float = 0.0  # dense numeric
    std: float = 1.0

    @property
    def num_embeddings(self) -> int:
        if self.type == "numeric" and not self.values:
            return 2 + len(self.edges) + 1
        return 2 + len(self.values) + self.hash_buckets

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Vocab":
        return cls(**obj)


def tokens(df: pl.DataFrame, column: str, feature: Feature) -> pl.DataFrame:
    """Long frame `(row: u32, value: str)` of a sparse feature's values, in row order."""
    col = pl.col(column)
    dtype = df.schema[column]
    if feature.type == "multi_categorical":
        values = col.cast(pl.List(pl.String)) if isinstance(dtype, pl.List) else (
            col.cast(pl.String).str.split(feature.separator or "|").list.eval(pl.element().str.strip_chars()))
    elif feature.type == "text":
        values = col.cast(pl.String).str.to_lowercase().str.extract_all(r"\w+")
    else:
        values = col.cast(pl.String)
    long = (df.lazy().select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), values.alias("value"))
            .explode("value") if feature.type in ("multi_categorical", "text") else
            df.lazy().select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), values.alias("value")))
    long = long.filter(pl.col("value").is_not_null() & (pl.col("value") != ""))
    if feature.type == "text" and feature.ngrams != [1]:
        long = _ngrams(long, feature.ngrams)
    return long.collect()


def _ngrams(long: pl.LazyFrame, sizes: list[int]) -> pl.LazyFrame:
    parts = []
    for n in sorted(set(sizes)):
        if n == 1:
            parts.append(long)
            continue
        shifted = [pl.col("value").shift(-s).over("row").alias(f"v{s}") for s in range(1, n)]
        gram = pl.concat_str([pl.col("value")] + [pl.col(f"v{s}") for s in range(1, n)], separator=" ")
        parts.append(long.with_columns(shifted).select("row", gram.alias("value"))
                     .filter(pl.col("value").is_not_null()))
    return pl.concat(parts).sort("row", maintain_order=True)


def fit_vocab(long: pl.DataFrame, feature: Feature) -> Vocab:
    """Vocabulary from a tokens frame: most frequent first (ties by value), `min_count`, `max_size`."""
    counts = (long.group_by("value").len("count").filter(pl.col("count") >= feature.min_count)
              .sort(["count", "value"], descending=[True, False]))
    if feature.max_size is not None:
        counts = counts.head(feature.max_size)
    return Vocab(type=feature.type, values=counts["value"].to_list(), counts=counts["count"].to_list(),
                 hash_buckets=feature.hash_buckets or 0)


def encode_tokens(long: pl.DataFrame, vocab: Vocab, rows: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded ids `int32 [rows, max_len]` and pre-truncation lengths `int32 [rows]`."""
    lookup = pl.DataFrame({"value": vocab.values, "id": np.arange(2, 2 + len(vocab.values), dtype=np.int32)},
                          schema={"value": pl.String, "id": pl.Int32})
    joined = long.join(lookup, on="value", how="left", maintain_order="left")
    ids = joined["id"].to_numpy(allow_copy=True)
    unknown = np.isnan(ids) if ids.dtype.kind == "f" else np.zeros(len(ids), bool)
    ids = np.where(unknown, OOV, np.nan_to_num(ids)).astype(np.int32)
    if vocab.hash_buckets and unknown.any():
        h = stable_hash(joined["value"].filter(pl.Series(unknown)))
        ids[unknown] = (2 + len(vocab.values) + (h % np.uint64(vocab.hash_buckets))).astype(np.int32)
    row = joined["row"].to_numpy().astype(np.int64)
    lengths = np.bincount(row, minlength=rows).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.arange(len(row)) - np.repeat(starts, lengths)  # rows are sorted ascending
    keep = pos < max_len
    out = np.zeros((rows, max_len), dtype=np.int32)
    out[row[keep], pos[keep]] = ids[keep]
    return out, lengths


def stable_hash(values: pl.Series) -> np.ndarray:
    """64-bit FNV-1a of each string's UTF-8 bytes, vectorized over rows (loops over byte positions).

    Stable across processes, platforms and library versions, unlike Python's or Polars' hash.
    """
    hexed = values.cast(pl.String).fill_null("").str.encode("hex")
    length = (hexed.str.len_bytes() // 2).to_numpy()
    h = np.full(len(hexed), _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in range(int(length.max(initial=0))):
            live = length > p
            byte = hexed.filter(pl.Series(live)).str.slice(2 * p, 2).str.to_integer(base=16).to_numpy()
            h[live] = (h[live] ^ byte.astype(np.uint64)) * _FNV_PRIME
    return h


def fit_numeric(values: pl.Series, feature: Feature) -> Vocab:
    """Quantile bucket edges, or mean/std for `dense`, from the non-null values."""
    x = values.cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
    if feature.dense:
        std = float(x.std()) if len(x) > 1 else 1.0
        return Vocab(type="numeric", mean=float(x.mean()) if len(x) else 0.0, std=std if std > 0 else 1.0)
    qs = np.quantile(x, np.linspace(0, 1, feature.buckets + 1)[1:-1]) if len(x) else np.zeros(0)
    edges = np.unique(qs).tolist()
    return Vocab(type="numeric", edges=[float(e) for e in edges])


def encode_numeric(values: pl.Series, vocab: Vocab, dense: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids `int32 [rows, 1]` (null -> 0) or standardized `float32 [rows, 1]` (null -> 0)."""
    x = values.cast(pl.Float64).fill_nan(None).to_numpy()
    missing = np.isnan(x)
    present = (~missing).astype(np.int32)
    if dense:
        z = np.where(missing, 0.0, (x - vocab.mean) / vocab.std).astype(np.float32)
        return z[:, None], present
    ids = np.searchsorted(np.asarray(vocab.edges), np.where(missing, 0.0, x), side="right") + 2
    return np.where(missing, PAD, ids).astype(np.int32)[:, None], present


def bucket_labels(vocab: Vocab) -> list[str]:
    """Readable names for numeric buckets: '<3.5', '[3.5, 7)', '>=7'."""
    e = vocab.edges
    if not e:
        return ["all"]
    return [f"<{e[0]:g}"] + [f"[{a:g}, {b:g})" for a, b in zip(e, e[1:])] + [f">={e[-1]:g}"]
