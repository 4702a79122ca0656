"""Download and unpack the MovieLens-100K example (with Freebase item features) for sslkit.

    python examples/movielens/prepare.py                     # from the recbole==1.2.1 wheel on PyPI
    python examples/movielens/prepare.py --zip ml-100k.zip   # from the official GroupLens archive

Source: the official `ml-100k.zip` when given (ratings, movies, users; the archive has no
knowledge-graph files, so the Freebase features stay empty unless the wheel is also reachable),
otherwise the copy inside the `recbole==1.2.1` wheel, which also ships the Freebase links
(`ml-100k.link`: item → entity) and triples (`ml-100k.kg`). The wheel is fetched once with
`pip download --no-deps` into the cache directory and read straight from its zip; nothing from
MovieLens is committed to this repository.

Writes, under `--out` (default: `examples/movielens/data/`):

* `ratings.parquet` — the rating log as it comes: user_id, item_id, rating, ts (one row per
  rating, ordered by user, time, item). The schemas turn it into pairs: `schema.yaml` keeps the
  ratings >= 4 (`interactions.where`) and pairs each movie in a user's timeline with the next
  one (`interactions.pairs`, rule next); `schema_users.yaml` keeps the same ratings as
  user → movie pairs. No pair is built here.
* `items.parquet`  — item_id, title (text), year, decade, genres (list) and the Freebase lists
  actors, directors, writers, producers, languages, countries, companies, rating (content
  rating), subjects: the knowledge graph's (head, relation, tail) triples gathered per movie.
* `users.parquet`  — user features (age bucket, gender, occupation, zip prefix).

Deterministic: the same source gives byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
WHEEL = "recbole-1.2.1-py3-none-any.whl"
PREFIX = "recbole/dataset_example/ml-100k/ml-100k."

# Freebase relations whose head is the film entity → item feature name.
KG_FEATURES = {
    "film.film.actor": "actors",
    "film.film.directed_by": "directors",
    "film.film.written_by": "writers",
    "film.film.produced_by": "producers",
    "film.film.language": "languages",
    "film.film.country": "countries",
    "film.film.production_companies": "companies",
    "film.film.rating": "rating",
    "film.film.subjects": "subjects",
}
AGE_BUCKETS = [(18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55")]


class Source:
    """The five atomic files (`inter`, `item`, `user`, `link`, `kg`) as tab-separated text."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def table(self, name: str) -> pl.DataFrame:
        """A recbole atomic file: header `name:type` columns, tab-separated, everything as text."""
        raw = self.files[name]
        header = raw.split(b"\n", 1)[0].decode().rstrip("\r").split("\t")
        cols = [h.split(":")[0] for h in header]
        return pl.read_csv(io.BytesIO(raw), separator="\t", has_header=True, new_columns=cols,
                           infer_schema=False, quote_char=None, encoding="utf8-lossy")

    @classmethod
    def from_wheel(cls, wheel: Path) -> "Source":
        with zipfile.ZipFile(wheel) as z:
            return cls({ext: z.read(PREFIX + ext) for ext in ("inter", "item", "user", "link", "kg")})

    @classmethod
    def from_grouplens(cls, archive: Path, kg: "Source | None") -> "Source":
        """Convert the official u.data / u.item / u.user into the atomic layout."""
        with zipfile.ZipFile(archive) as z:
            data = z.read("ml-100k/u.data").decode()
            item = z.read("ml-100k/u.item").decode("latin-1")
            user = z.read("ml-100k/u.user").decode()
        genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western"]
        inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + data.strip().splitlines()
        items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
        for line in item.strip().splitlines():
            f = line.split("|")
            title, year = f[1], ""
            if title.endswith(")") and title[-5:-1].isdigit():
                title, year = title[:-6].strip(), title[-5:-1]
            items.append("\t".join([f[0], title, year, " ".join(g for g, on in zip(genres, f[5:]) if on == "1")]))
        users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
        users += [line.replace("|", "\t") for line in user.strip().splitlines()]
        files = {"inter": "\n".join(inter).encode(), "item": "\n".join(items).encode(),
                 "user": "\n".join(users).encode()}
        empty = {"link": b"item_id:token\tentity_id:token\n", "kg": b"head_id:token\trelation_id:token\ttail_id:token\n"}
        files.update({k: kg.files[k] for k in ("link", "kg")} if kg else empty)
        return cls(files)


def fetch_wheel(cache: Path) -> Path:
    """The recbole wheel, downloaded once into `cache` (pip, no dependencies)."""
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"downloading {WHEEL} (2 MB) into {cache}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "recbole==1.2.1", "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            sys.exit(f"Error: could not download recbole==1.2.1 from PyPI: {done.stderr.strip()[-300:]}\n"
                     "  hint: pass the official archive with --zip ml-100k.zip, or a wheel with --wheel")
    return path


def build_items(src: Source) -> pl.DataFrame:
    item = src.table("item")
    genres = pl.col("class").fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    year = pl.col("release_year").cast(pl.Int32, strict=False)
    items = item.select(
        pl.col("item_id"),
        pl.col("movie_title").alias("title"),
        year.alias("year"),
        ((year // 10) * 10).cast(pl.Utf8).alias("decade"),
        genres.alias("genres"),
    )
    link = src.table("link")
    kg = src.table("kg").filter(pl.col("relation_id").is_in(list(KG_FEATURES)))
    per_item = (kg.join(link, left_on="head_id", right_on="entity_id")
                .with_columns(pl.col("relation_id").replace_strict(KG_FEATURES).alias("feature"))
                .unique(["item_id", "feature", "tail_id"])
                .sort(["item_id", "feature", "tail_id"])
                .group_by(["item_id", "feature"], maintain_order=True).agg(pl.col("tail_id")))
    for name in KG_FEATURES.values():
        col = per_item.filter(pl.col("feature") == name).select("item_id", pl.col("tail_id").alias(name))
        items = items.join(col, on="item_id", how="left")
        items = items.with_columns(pl.col(name).fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
    return items.with_columns(pl.col("item_id").cast(pl.Int64)).sort("item_id").with_columns(pl.col("item_id").cast(pl.Utf8))


def ratings(src: Source) -> pl.DataFrame:
    """The rating log, typed, in a fixed order (user, time, item; ids compared as numbers)."""
    inter = src.table("inter").select(
        pl.col("user_id"), pl.col("item_id"),
        pl.col("rating").cast(pl.Float64), pl.col("timestamp").cast(pl.Float64).cast(pl.Int64).alias("ts"))
    return inter.sort([pl.col("user_id").cast(pl.Int64), "ts", pl.col("item_id").cast(pl.Int64)])


def build_users(src: Source) -> pl.DataFrame:
    age = pl.col("age").cast(pl.Int32)
    bucket = pl.lit("56+")
    for limit, name in reversed(AGE_BUCKETS):
        bucket = pl.when(age < limit).then(pl.lit(name)).otherwise(bucket)
    return src.table("user").select(pl.col("user_id"), bucket.alias("age"), pl.col("gender"), pl.col("occupation"),
                                    pl.col("zip_code").str.slice(0, 3).alias("zip"))


def write(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp, statistics=False)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", type=Path, help="the official ml-100k.zip (else the recbole wheel)")
    ap.add_argument("--wheel", type=Path, help="a local recbole-1.2.1 wheel (else downloaded)")
    ap.add_argument("--out", type=Path, default=HERE / "data", help="output directory [examples/movielens/data]")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sslkit",
                    help="download cache [~/.cache/sslkit]")
    args = ap.parse_args(argv)
    for p in (args.zip, args.wheel):
        if p is not None and not p.is_file():
            sys.exit(f"Error: {p}: no such file")
    wheel = None
    if args.wheel or not args.zip:
        wheel = Source.from_wheel(args.wheel or fetch_wheel(args.cache))
    src = Source.from_grouplens(args.zip, wheel) if args.zip else wheel
    assert src is not None
    args.out.mkdir(parents=True, exist_ok=True)
    items, log, users = build_items(src), ratings(src), build_users(src)
    write(items, args.out / "items.parquet")
    write(log, args.out / "ratings.parquet")
    write(users, args.out / "users.parquet")
    with_kg = items.filter(pl.col("actors").list.len() > 0).height
    print(f"wrote {args.out}: {log.height:,} ratings by {users.height:,} users of {items.height:,} movies "
          f"({with_kg:,} with Freebase features)", file=sys.stderr)


if __name__ == "__main__":
    main()
