"""The streamed pair path of the store build equals the in-memory build, array for array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sslkit.data import pairstream, store
from sslkit.config import load_config
from sslkit.errors import DataError


def _both(schema: Path, monkeypatch: pytest.MonkeyPatch, **overrides: object) -> tuple[store.FeatureStore, store.FeatureStore]:
    cfg = load_config(schema)
    if overrides:
        cfg = cfg.model_copy(update={"split": cfg.split.model_copy(update=overrides)})
    assert pairstream.applies(cfg)
    streamed = store.build(cfg)
    monkeypatch.setattr(pairstream, "applies", lambda _cfg: False)
    in_memory = store.build(cfg)
    monkeypatch.undo()
    return streamed, in_memory


def _same(a: store.FeatureStore, b: store.FeatureStore) -> None:
    assert isinstance(a.splits["train"], np.memmap) and not isinstance(b.splits["train"], np.memmap)
    for name in ("train", "validation", "test"):
        assert a.splits[name].dtype == np.int32 == b.splits[name].dtype
        np.testing.assert_array_equal(a.splits[name], b.splits[name], err_msg=name)
    for ta, tb in ((a.items, b.items), (a.queries, b.queries)):
        np.testing.assert_array_equal(ta.ids, tb.ids)
        for f in ta.features:
            np.testing.assert_array_equal(ta.features[f], tb.features[f])
    assert a.report == b.report
    assert store.fingerprint(a) == store.fingerprint(b)


@pytest.mark.parametrize("split", [
    {"method": "random", "test_fraction": 0.2, "validation_fraction": 0.1, "fraction": 0.7, "seed": 3},
    {"method": "time", "test_fraction": 0.15, "validation_fraction": 0.1},
])
def test_streamed_store_equals_in_memory_build(data: Path, monkeypatch: pytest.MonkeyPatch,
                                               split: dict[str, object]) -> None:
    monkeypatch.setattr(pairstream, "CHUNK_ROWS", 512)  # several batches on tiny data
    pl.read_csv(data / "data/pairs.csv").head(50).with_columns(pl.lit("nope").alias("item_id")).vstack(
        pl.read_csv(data / "data/pairs.csv")).write_csv(data / "data/pairs.csv")  # unknown items, dropped
    streamed, in_memory = _both(data / "schema.yaml", monkeypatch, **split)
    _same(streamed, in_memory)
    assert streamed.report["unknown_item_pairs"] == 50


def test_streamed_user_to_item_store_equals_in_memory_and_is_linked_into_the_cache(
        data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    streamed, in_memory = _both(data / "schema_users.yaml", monkeypatch)
    _same(streamed, in_memory)
    store.save(streamed, tmp_path / "entry")
    assert (tmp_path / "entry/split.train.npy").stat().st_ino == Path(streamed.splits["train"].filename).stat().st_ino
    loaded = store.load(tmp_path / "entry")  # checksums hashed while streaming match the files
    np.testing.assert_array_equal(loaded.splits["test"], in_memory.splits["test"])


def test_streamed_column_split_and_its_errors(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = pl.read_csv(data / "data/pairs.csv")
    flag = np.where(np.arange(pairs.height) % 5 == 0, "test", "train")
    pairs.with_columns(pl.Series("part", flag)).write_parquet(data / "data/pairs.parquet")
    text = (data / "schema.yaml").read_text().replace("data/pairs.csv", "data/pairs.parquet")
    (data / "schema.yaml").write_text(text.replace("method: random", "method: column\n  column: part"))
    streamed, in_memory = _both(data / "schema.yaml", monkeypatch, validation_fraction=0.1)
    _same(streamed, in_memory)
    assert len(streamed.splits["test"]) == (flag == "test").sum()
    pairs.with_columns(pl.Series("part", np.where(flag == "test", "holdout", "train"))).write_parquet(
        data / "data/pairs.parquet")
    with pytest.raises(DataError, match="split.column 'part' has value 'holdout'"):
        store.build(load_config(data / "schema.yaml"))


def test_unknown_ids_error_names_the_count_and_an_example(data: Path) -> None:
    pairs = pl.read_csv(data / "data/pairs.csv", schema_overrides={"item_id": pl.String})
    pairs.with_columns(pl.when(pl.int_range(pl.len()) % 100 == 7).then(pl.lit("ghost")).otherwise("item_id")
                       .alias("item_id")).write_csv(data / "data/pairs.csv")
    text = (data / "schema.yaml").read_text().replace("on_unknown_item: drop", "on_unknown_item: error")
    (data / "schema.yaml").write_text(text)
    with pytest.raises(DataError, match=r"40 of 4000 pairs have a item id not in the catalog .*e.g. 'ghost'"):
        store.build(load_config(data / "schema.yaml"))


def test_event_log_rules_keep_the_in_memory_path(data: Path) -> None:
    cfg = load_config(data / "schema.yaml")
    assert not pairstream.applies(cfg.model_copy(update={"interactions": cfg.interactions.model_copy(
        update={"where": "ts > 0"})}))
    assert not pairstream.applies(cfg.model_copy(update={"split": cfg.split.model_copy(
        update={"method": "leave_last_out", "group": "query_item"})}))


def test_split_roles_draw_exactly_numpy_permutation() -> None:
    mask = pairstream._sample(1000, 100, seed=5)
    expect = np.zeros(1000, bool)
    expect[np.random.default_rng(5).permutation(1000)[:100]] = True
    np.testing.assert_array_equal(mask, expect)
    t = np.array([3, 1, 3, 2, 0], np.int64)
    valid = np.array([True, True, True, True, False])
    np.testing.assert_array_equal(pairstream._latest(t, valid, 2), [False, False, True, False, False])


def test_training_reads_the_memory_mapped_pairs_without_copying_them(data: Path) -> None:
    import torch

    from sslkit.data.profile import item_counts
    from sslkit.training.train import batch_pairs, build_setup

    cfg = load_config(data / "schema.yaml", ["train.batch_size=64", "train.device=cpu", "train.logq_correction=true"])
    built = store.load_or_build(cfg)
    cached = store.load_or_build(cfg)  # the cache entry, memory-mapped
    for st in (built, cached):
        train = st.splits["train"]
        assert isinstance(train, np.memmap) and train.dtype == np.int32
        s = build_setup(cfg, st, None)
        assert s.train_pairs.dtype == torch.int32 and s.train_pairs.data_ptr() == train.ctypes.data  # shared, not copied
        rows = torch.tensor([5, 0, len(train) - 1, 5])
        got = batch_pairs(s, rows)
        assert got.dtype == torch.int64 and got.tolist() == np.asarray(train)[[5, 0, len(train) - 1, 5]].tolist()
        counts = np.bincount(np.asarray(train[:, 1], np.int64), minlength=st.items.rows)
        np.testing.assert_array_equal(item_counts(train, st.items.rows), counts)
        assert s.log_q is not None and torch.allclose(s.log_q, torch.log(torch.from_numpy(counts).clamp_min(1).double()
                                                                         / counts.sum()).float())


def test_a_short_row_in_a_streamed_pairs_csv_is_named_by_its_line(data: Path) -> None:
    path = data / "data/pairs.csv"
    lines = path.read_text().splitlines()
    assert lines[0].count(",") >= 2  # the last column is not an id: a short row reads as a null there
    lines[7] = ",".join(lines[7].split(",")[:-1])  # file line 8 loses its last field
    path.write_text("\n".join(lines) + "\n")
    cfg = load_config(data / "schema.yaml")
    assert pairstream.applies(cfg)
    with pytest.raises(DataError, match=r"pairs.csv: line 8 has \d+ fields, the header has \d+"):
        store.build(cfg)
