"""examples/movielens/prepare.py on a tiny stand-in for the recbole wheel (offline)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

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


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    prep = load_prepare()
    wheel = tmp_path / prep.WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        for ext, text in FILES.items():
            z.writestr(prep.PREFIX + ext, text)
    prep.main(["--wheel", str(wheel), "--out", str(tmp_path / "data")])
    return tmp_path / "data"


def test_pairs_are_consecutive_positives_in_each_timeline(built: Path) -> None:
    pairs = pl.read_parquet(built / "pairs.parquet")
    # user 1 positives by (ts, item): 10@100, 12@102, 13@102 (11 is rated 2); user 2: 13@50, 10@60
    assert pairs.select("query_item", "item_id", "user_id").rows() == [("10", "12", "1"), ("12", "13", "1"),
                                                                         ("13", "10", "2")]
    assert pairs["ts"].to_list() == [102, 102, 60]
    assert pl.read_parquet(built / "user_pairs.parquet").height == 5


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
    from sslkit.store import load_or_build

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
