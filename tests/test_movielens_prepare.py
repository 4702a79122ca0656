"""examples/movielens/prepare.py on a tiny stand-in for the recbole wheel (offline)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
             "1\t10\t5\t100\n1\t11\t2\t101\n1\t12\t4\t102\n1\t13\t4\t102\n2\t13\t5\t50\n2\t10\t4\t60\n3\t12\t3\t1\n",
    "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "10\tToy Story\t1995\tAnimation Children's Comedy\n11\tHeat\t1995\tAction\n"
            "12\tAlien\t1979\tHorror Sci-Fi\n13\tUnknown film\t\t\n",
    "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n3\t12\tM\tstudent\tT8H1N\n",
    "link": "item_id:token\tentity_id:token\n10\tm.toy\n12\tm.alien\n",
    "kg": "head_id:token\trelation_id:token\ttail_id:token\n"
          "m.toy\tfilm.film.actor\tm.hanks\nm.toy\tfilm.film.actor\tm.allen\nm.alien\tfilm.film.directed_by\tm.scott\n"
          "m.scott\tfilm.director.film\tm.alien\nm.toy\tfilm.film.country\tm.usa\nm.alien\tfilm.film.country\tm.usa\n",
}


def load_prepare():
    spec = importlib.util.spec_from_file_location("ml_prepare", ROOT / "examples/movielens/prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def fake_wheel(tmp_path: Path, files: dict[str, str]) -> Path:
    prep = load_prepare()
    wheel = tmp_path / prep.WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        for ext, text in files.items():
            z.writestr(prep.PREFIX + ext, text)
    return wheel


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    load_prepare().main(["--wheel", str(fake_wheel(tmp_path, FILES)), "--out", str(tmp_path / "data")])
    return tmp_path / "data"


# The pair rule prepare.py applied before the schema could say it (kept here as the reference).
def old_positives(inter: pl.DataFrame) -> pl.DataFrame:
    inter = inter.select(pl.col("user_id"), pl.col("item_id"), pl.col("rating").cast(pl.Float64),
                         pl.col("timestamp").cast(pl.Float64).cast(pl.Int64).alias("ts"))
    return inter.filter(pl.col("rating") >= 4).sort([pl.col("user_id").cast(pl.Int64), "ts",
                                                     pl.col("item_id").cast(pl.Int64)])


def old_build_pairs(pos: pl.DataFrame) -> pl.DataFrame:
    nxt = pos.with_columns(pl.col("item_id").shift(-1).over("user_id").alias("next_item"),
                           pl.col("ts").shift(-1).over("user_id").alias("next_ts"))
    return (nxt.filter(pl.col("next_item").is_not_null())
            .select(pl.col("item_id").alias("query_item"), pl.col("next_item").alias("item_id"),
                    pl.col("user_id"), pl.col("next_ts").alias("ts")))


def synthetic_ratings(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Ratings with ids of several digit counts ('9' < '10' as numbers) and many same-second ratings."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"user_id": rng.integers(1, 120, n).astype(str), "item_id": rng.integers(1, 400, n).astype(str),
                          "rating": rng.integers(1, 6, n).astype(str), "timestamp": rng.integers(0, 300, n).astype(str)})
    return frame.unique(["user_id", "item_id"], keep="first", maintain_order=True)  # one rating per (user, movie)


@pytest.mark.parametrize("name", ["schema.yaml", "schema_users.yaml"])
def test_the_schemas_build_exactly_the_old_scripts_pairs(tmp_path: Path, name: str) -> None:
    from sslkit.data import events, io
    from sslkit.config import load_config
    from sslkit.data.store import build

    inter = synthetic_ratings()
    items = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
        f"{i}\tFilm {i}\t1990\tDrama\n" for i in range(1, 400))
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    users = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
        f"{u}\t30\tF\tother\t12345\n" for u in range(1, 120))
    files = dict(FILES, inter=header + inter.write_csv(separator="\t", include_header=False), item=items, user=users)
    load_prepare().main(["--wheel", str(fake_wheel(tmp_path, files)), "--out", str(tmp_path / "data")])
    (tmp_path / name).write_text((ROOT / "examples/movielens" / name).read_text())
    cfg = load_config(tmp_path / name)

    pos = old_positives(inter)
    expected = (old_build_pairs(pos).select("query_item", "item_id", "ts") if name == "schema.yaml"
                else pos.select("user_id", "item_id", "ts"))
    path = cfg.resolve(cfg.interactions.path) or ""
    _, pairs, _ = events.read_log(io.read_table(path, strings=events.id_sources(cfg)), cfg, path=path, log=print)
    assert expected.height > 1000
    assert pairs.select(cfg.interactions.query_column(), "item_id", "ts").rows() == expected.rows()  # same order too
    store = build(cfg)
    ids = (store.queries.ids, store.items.ids)
    got = sorted((str(ids[0][q]), str(ids[1][i])) for split in store.splits.values() for q, i in split)
    assert got == sorted(expected.select(expected.columns[:2]).rows())


def test_ratings_log_is_unpacked_whole_and_ordered(built: Path) -> None:
    log = pl.read_parquet(built / "ratings.parquet")
    assert log.columns == ["user_id", "item_id", "rating", "ts"]
    assert log.select("user_id", "item_id").rows() == [("1", "10"), ("1", "11"), ("1", "12"), ("1", "13"),
                                                       ("2", "13"), ("2", "10"), ("3", "12")]
    assert not (built / "pairs.parquet").exists()


def test_item_features_from_the_catalog_and_freebase(built: Path) -> None:
    items = {r["item_id"]: r for r in pl.read_parquet(built / "items.parquet").to_dicts()}
    assert list(items) == ["10", "11", "12", "13"]
    assert items["10"]["genres"] == ["Animation", "Children's", "Comedy"] and items["10"]["year"] == 1995
    assert items["10"]["actors"] == ["m.allen", "m.hanks"] and items["10"]["countries"] == ["m.usa"]
    assert items["12"]["directors"] == ["m.scott"] and items["12"]["decade"] == "1970"
    assert items["11"]["actors"] == [] and items["13"]["year"] is None and items["13"]["genres"] == []


def test_user_features(built: Path) -> None:
    users = pl.read_parquet(built / "users.parquet").rows()
    assert users == [("1", "18-24", "M", "technician", "857"), ("2", "50-55", "F", "other", "940"),
                     ("3", "<18", "M", "student", "T8H")]


def test_the_schemas_encode_the_prepared_files(built: Path, tmp_path: Path) -> None:
    from sslkit.config import load_config
    from sslkit.data.store import load_or_build

    for name in ("schema.yaml", "schema_users.yaml"):
        schema = tmp_path / name
        schema.write_text((ROOT / "examples/movielens" / name).read_text())
        assert built == tmp_path / "data"  # the schemas read data/ beside themselves
        cfg = load_config(schema, ["split.test_fraction=0.34"])
        store = load_or_build(cfg)
        assert store.items.rows == 4 and "actors" in store.items.specs


def test_missing_input_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        load_prepare().main(["--zip", str(tmp_path / "missing.zip")])
    assert "no such file" in str(e.value)
