"""Vocabularies and encoding: tokens, fit_vocab, encode_tokens, hashing, numerics."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslkit.config import Feature
from sslkit.data.encode import (OOV, PAD, Vocab, bucket_labels, encode_numeric, encode_tokens, fit_numeric, fit_vocab,
                           stable_hash, tokens)


def pairs(long: pl.DataFrame) -> list[tuple[int, str]]:
    return list(zip(long["row"].to_list(), long["value"].to_list()))


def fnv1a64(s: str) -> int:
    """Reference 64-bit FNV-1a over UTF-8 bytes."""
    h = 0xCBF29CE484222325
    for byte in s.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) % (1 << 64)
    return h


# ---- tokens ---------------------------------------------------------------------------------------

def test_tokens_categorical() -> None:
    df = pl.DataFrame({"c": ["a", "b", None, "a", ""]})
    long = tokens(df, "c", Feature(type="categorical"))
    assert long.schema == {"row": pl.UInt32, "value": pl.String}
    assert pairs(long) == [(0, "a"), (1, "b"), (3, "a")]  # null and "" dropped


def test_tokens_categorical_from_integers() -> None:
    df = pl.DataFrame({"c": [7, None, 12]})
    assert pairs(tokens(df, "c", Feature(type="categorical"))) == [(0, "7"), (2, "12")]


def test_tokens_multi_categorical_string() -> None:
    df = pl.DataFrame({"m": ["x| y|z", None, "y", "", "x|x", "a||b"]})
    long = tokens(df, "m", Feature(type="multi_categorical", separator="|"))
    # values stripped; empty pieces and nulls dropped; duplicates kept in order
    assert pairs(long) == [(0, "x"), (0, "y"), (0, "z"), (2, "y"), (4, "x"), (4, "x"), (5, "a"), (5, "b")]


def test_tokens_multi_categorical_default_separator_is_pipe() -> None:
    df = pl.DataFrame({"m": ["p|q", "r,s"]})
    assert pairs(tokens(df, "m", Feature(type="multi_categorical"))) == [(0, "p"), (0, "q"), (1, "r,s")]


def test_tokens_multi_categorical_other_separator() -> None:
    df = pl.DataFrame({"m": ["p, q", "r"]})
    assert pairs(tokens(df, "m", Feature(type="multi_categorical", separator=","))) == [(0, "p"), (0, "q"), (1, "r")]


def test_tokens_multi_categorical_list_column() -> None:
    df = pl.DataFrame({"l": [["x", "y"], None, [], ["z", "x"]]})
    long = tokens(df, "l", Feature(type="multi_categorical"))
    assert pairs(long) == [(0, "x"), (0, "y"), (3, "z"), (3, "x")]
    df_int = pl.DataFrame({"l": [[1, 2], [3]]})
    assert pairs(tokens(df_int, "l", Feature(type="multi_categorical"))) == [(0, "1"), (0, "2"), (1, "3")]


def test_tokens_text_lowercase_words() -> None:
    df = pl.DataFrame({"t": ["Hello, World!  FOO", None, "The end.", ""]})
    assert pairs(tokens(df, "t", Feature(type="text"))) == [(0, "hello"), (0, "world"), (0, "foo"), (2, "the"),
                                                             (2, "end")]


def test_tokens_text_ngrams() -> None:
    df = pl.DataFrame({"t": ["Hello World foo", None, "The end.", "a"]})
    long = tokens(df, "t", Feature(type="text", ngrams=[1, 2]))
    assert pairs(long) == [(0, "hello"), (0, "world"), (0, "foo"), (0, "hello world"), (0, "world foo"),
                           (2, "the"), (2, "end"), (2, "the end"), (3, "a")]
    only2 = tokens(df, "t", Feature(type="text", ngrams=[2]))
    assert pairs(only2) == [(0, "hello world"), (0, "world foo"), (2, "the end")]
    tri = tokens(df, "t", Feature(type="text", ngrams=[3]))
    assert pairs(tri) == [(0, "hello world foo")]


# ---- fit_vocab ------------------------------------------------------------------------------------

def long_of(values: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"row": np.arange(len(values), dtype=np.uint32), "value": values},
                        schema={"row": pl.UInt32, "value": pl.String})


def test_fit_vocab_order_count_desc_ties_by_value() -> None:
    long = long_of(["b", "c", "a", "c", "b", "d", "c", "e", "e"])
    v = fit_vocab(long, Feature(type="categorical"))
    # counts: c 3, b 2, e 2, a 1, d 1
    assert v.values == ["c", "b", "e", "a", "d"] and v.counts == [3, 2, 2, 1, 1]
    assert v.type == "categorical" and v.hash_buckets == 0
    assert v.num_embeddings == 2 + 5


def test_fit_vocab_min_count_and_max_size() -> None:
    long = long_of(["b", "c", "a", "c", "b", "d", "c", "e", "e"])
    assert fit_vocab(long, Feature(type="categorical", min_count=2)).values == ["c", "b", "e"]
    v = fit_vocab(long, Feature(type="categorical", max_size=2))
    assert v.values == ["c", "b"] and v.counts == [3, 2]
    v = fit_vocab(long, Feature(type="categorical", min_count=3, max_size=2))
    assert v.values == ["c"]
    v = fit_vocab(long, Feature(type="categorical", hash_buckets=4, max_size=1))
    assert v.hash_buckets == 4 and v.num_embeddings == 2 + 1 + 4


def test_vocab_json_round_trip() -> None:
    v = Vocab(type="categorical", values=["a", "b"], counts=[2, 1], hash_buckets=3)
    assert Vocab.from_json(v.to_json()) == v


# ---- encode_tokens -------------------------------------------------------------------------------

def test_encode_tokens_pad_oov_truncation_lengths() -> None:
    vocab = Vocab(type="multi_categorical", values=["x", "y", "z"], counts=[3, 2, 1])
    long = pl.DataFrame({"row": [0, 0, 0, 0, 2, 3], "value": ["x", "q", "z", "y", "y", "w"]},
                        schema={"row": pl.UInt32, "value": pl.String})
    ids, lengths = encode_tokens(long, vocab, rows=5, max_len=3)
    assert ids.dtype == np.int32 and ids.shape == (5, 3)
    assert lengths.dtype == np.int32
    # x → 2, y → 3, z → 4, unknown → OOV 1, pad 0; row 0 truncated to 3 (its 4th, y, dropped)
    assert ids.tolist() == [[2, OOV, 4], [PAD, PAD, PAD], [3, 0, 0], [OOV, 0, 0], [0, 0, 0]]
    assert lengths.tolist() == [4, 0, 1, 1, 0]  # before truncation


def test_encode_tokens_all_known_and_empty() -> None:
    vocab = Vocab(type="categorical", values=["a", "b"], counts=[1, 1])
    ids, lengths = encode_tokens(long_of(["b", "a"]), vocab, rows=2, max_len=1)
    assert ids.tolist() == [[3], [2]] and lengths.tolist() == [1, 1]
    empty = long_of([])
    ids, lengths = encode_tokens(empty, vocab, rows=3, max_len=2)
    assert ids.tolist() == [[0, 0]] * 3 and lengths.tolist() == [0, 0, 0]


def test_encode_tokens_hash_buckets() -> None:
    vocab = Vocab(type="categorical", values=["a", "b", "c"], counts=[1, 1, 1], hash_buckets=5)
    unknown = ["zz", "héllo", "q", "zz", "🙂", "longer value"]
    long = long_of(["a"] + unknown + ["c"])
    ids, _ = encode_tokens(long, vocab, rows=len(long), max_len=1)
    flat = ids[:, 0].tolist()
    assert flat[0] == 2 and flat[-1] == 4
    for v, got in zip(unknown, flat[1:-1]):
        assert 5 <= got < 5 + 5  # [2 + V, 2 + V + H)
        assert got == 2 + 3 + fnv1a64(v) % 5
    assert flat[1] == flat[4]  # same value → same bucket
    again, _ = encode_tokens(long, vocab, rows=len(long), max_len=1)
    assert np.array_equal(ids, again)
    # without hash buckets all unknown values are OOV
    plain = Vocab(type="categorical", values=["a", "b", "c"], counts=[1, 1, 1])
    assert encode_tokens(long, plain, rows=len(long), max_len=1)[0][1:-1, 0].tolist() == [OOV] * len(unknown)


def test_encode_tokens_end_to_end_text() -> None:
    df = pl.DataFrame({"t": ["Red shoe", "blue SHOE shoe", None]})
    feat = Feature(type="text")
    long = tokens(df, "t", feat)
    vocab = fit_vocab(long, feat)
    assert vocab.values == ["shoe", "blue", "red"]
    ids, lengths = encode_tokens(long, vocab, rows=3, max_len=4)
    assert ids.tolist() == [[4, 2, 0, 0], [3, 2, 2, 0], [0, 0, 0, 0]]
    assert lengths.tolist() == [2, 3, 0]


# ---- stable_hash ---------------------------------------------------------------------------------

def test_stable_hash_matches_reference() -> None:
    values = ["", "a", "abc", "hello world", "héllo", "日本語", "🙂x", "a" * 100, "\x00", "ÿ"]
    got = stable_hash(pl.Series(values))
    assert got.dtype == np.uint64
    assert got.tolist() == [fnv1a64(v) for v in values]
    # published FNV-1a 64 test vectors
    assert int(got[0]) == 0xCBF29CE484222325
    assert int(got[1]) == 0xAF63DC4C8601EC8C


def test_stable_hash_null_and_empty_series() -> None:
    assert stable_hash(pl.Series([None, "a"], dtype=pl.String)).tolist() == [fnv1a64(""), fnv1a64("a")]
    assert stable_hash(pl.Series([], dtype=pl.String)).tolist() == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=8))
def test_stable_hash_property(values: list[str]) -> None:
    assert stable_hash(pl.Series(values, dtype=pl.String)).tolist() == [fnv1a64(v) for v in values]


# ---- numerics ------------------------------------------------------------------------------------

def test_fit_encode_numeric_quantile_buckets() -> None:
    values = pl.Series([float(v) for v in range(1, 101)] + [None, float("nan")])
    vocab = fit_numeric(values, Feature(type="numeric", buckets=4))
    # np.quantile(1..100, [.25, .5, .75]) = 25.75, 50.5, 75.25 (nulls and NaN ignored)
    assert vocab.edges == pytest.approx([25.75, 50.5, 75.25])
    assert vocab.num_embeddings == 2 + 3 + 1
    ids, present = encode_numeric(pl.Series([1.0, 25.75, 25.7, 50.5, 75.3, 1e9, None, float("nan"), -5.0]), vocab,
                                  dense=False)
    assert ids.shape == (9, 1) and ids.dtype == np.int32
    # < 25.75 → 2, [25.75, 50.5) → 3, [50.5, 75.25) → 4, ≥ 75.25 → 5, null/NaN → 0
    assert ids[:, 0].tolist() == [2, 3, 2, 4, 5, 5, 0, 0, 2]
    assert present.tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 1]
    assert bucket_labels(vocab) == ["<25.75", "[25.75, 50.5)", "[50.5, 75.25)", ">=75.25"]


def test_fit_numeric_duplicate_edges_collapse() -> None:
    values = pl.Series([1.0] * 90 + [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    vocab = fit_numeric(values, Feature(type="numeric", buckets=10))
    assert vocab.edges == sorted(set(vocab.edges))  # unique, increasing
    assert vocab.edges[0] == 1.0 and len(vocab.edges) < 9
    ids, _ = encode_numeric(pl.Series([1.0, 0.5]), vocab, dense=False)
    assert ids[:, 0].tolist() == [3, 2]  # 1.0 is on the first edge (side right), 0.5 below it


def test_fit_numeric_empty_and_integer_input() -> None:
    vocab = fit_numeric(pl.Series([None, None], dtype=pl.Float64), Feature(type="numeric", buckets=5))
    assert vocab.edges == [] and bucket_labels(vocab) == ["all"] and vocab.num_embeddings == 3
    ids, present = encode_numeric(pl.Series([3.0, None]), vocab, dense=False)
    assert ids[:, 0].tolist() == [2, 0] and present.tolist() == [1, 0]
    ivocab = fit_numeric(pl.Series([1, 2, 3, 4]), Feature(type="numeric", buckets=2))
    assert ivocab.edges == [2.5]
    assert encode_numeric(pl.Series([2, 3, None]), ivocab, dense=False)[0][:, 0].tolist() == [2, 3, 0]


def test_dense_numeric_standardization() -> None:
    values = pl.Series([1.0, 2.0, 3.0, 4.0, None, float("nan")])
    vocab = fit_numeric(values, Feature(type="numeric", dense=True))
    assert vocab.mean == pytest.approx(2.5) and vocab.std == pytest.approx(np.std([1, 2, 3, 4]))
    z, present = encode_numeric(values, vocab, dense=True)
    assert z.dtype == np.float32 and z.shape == (6, 1)
    s = np.std([1, 2, 3, 4])
    np.testing.assert_allclose(z[:, 0], [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0, 0], rtol=1e-6)
    assert present.tolist() == [1, 1, 1, 1, 0, 0]


def test_dense_numeric_degenerate() -> None:
    const = fit_numeric(pl.Series([5.0, 5.0, 5.0]), Feature(type="numeric", dense=True))
    assert const.mean == 5.0 and const.std == 1.0
    one = fit_numeric(pl.Series([7.0]), Feature(type="numeric", dense=True))
    assert one.mean == 7.0 and one.std == 1.0
    none = fit_numeric(pl.Series([None], dtype=pl.Float64), Feature(type="numeric", dense=True))
    assert none.mean == 0.0 and none.std == 1.0


def test_bucket_labels_hand() -> None:
    assert bucket_labels(Vocab(type="numeric", edges=[3.5, 7.0])) == ["<3.5", "[3.5, 7)", ">=7"]
    assert bucket_labels(Vocab(type="numeric", edges=[0.25])) == ["<0.25", ">=0.25"]
    labels = bucket_labels(Vocab(type="numeric", edges=[1.0, 2.0, 3.0]))
    assert len(labels) == Vocab(type="numeric", edges=[1.0, 2.0, 3.0]).num_embeddings - 2
