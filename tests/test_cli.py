"""The commands end to end on a tiny generated dataset: profile → mi → train → eval → embed → recommend."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sslkit.model.augment import AUGMENTATIONS
from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]


def ok(runner: CliRunner, *args: object) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.stderr + r.stdout
    return r.stdout


def test_help_does_not_import_torch_or_hnswlib() -> None:
    code = "import sys; from sslkit.cli import app; from typer.testing import CliRunner; " \
           "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; " \
           "print(sorted(m for m in ('torch', 'hnswlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_has_help(runner: CliRunner) -> None:
    for cmd in ("profile", "init", "mi", "train", "eval", "embed", "recommend", "sweep"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.stdout and len(r.stdout) > 200


def test_profile_json(data: Path, runner: CliRunner) -> None:
    p = json.loads(ok(runner, "profile", data / "schema.yaml", "--json"))
    assert p["mode"] == "item-to-item" and p["items"] == 300
    assert p["pairs"]["train"] + p["pairs"]["validation"] + p["pairs"]["test"] == p["pairs"]["read"]
    assert p["pairs"]["validation"] == round(0.1 * (p["pairs"]["read"] - p["pairs"]["test"]))  # split.validation_fraction
    feats = {f["feature"]: f for f in p["item_features"]}
    assert feats["item_id"]["cardinality"] == 300 and feats["tags"]["values_per_row"]["max"] <= 5
    pop = p["popularity"]
    assert 0 < pop["top_1pct_items_share"] < pop["top_10pct_items_share"] <= 1 and 0 < pop["gini"] < 1
    assert pop["catalog_only_items"] > 0 and sum(pop["test_pairs"].values()) <= p["pairs"]["test"]


def test_profile_user_to_item(data: Path, runner: CliRunner) -> None:
    p = json.loads(ok(runner, "profile", data / "schema_users.yaml", "--json"))
    assert p["mode"] == "user-to-item" and p["queries"] == 60
    assert [f["feature"] for f in p["query_features"]] == ["user_id", "age", "gender", "occupation", "zip"]


def test_mi_json_and_out(data: Path, runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "mi.json"
    obj = json.loads(ok(runner, "mi", data / "schema.yaml", "--json", "--out", out))
    assert obj == json.loads(out.read_text())
    k = len(obj["features"])
    mi = np.array(obj["mi"])
    assert mi.shape == (k, k) and np.allclose(mi, mi.T) and np.allclose(np.diag(mi), obj["entropy"])
    # subcategory determines category: MI(category, subcategory) = H(category)
    c, s = obj["features"].index("category"), obj["features"].index("subcategory")
    assert mi[c, s] == pytest.approx(obj["entropy"][c], abs=1e-9)
    assert all(v[0] == seed and len(v) == obj["mask_size"] == k // 2 for seed, v in obj["mask_sets"].items())


def test_init_infers_a_valid_schema(data: Path, runner: CliRunner, tmp_path: Path) -> None:
    from sslkit.config import load_config

    text = ok(runner, "init", data / "data/pairs.csv", "--items", data / "data/items.csv")
    schema = tmp_path / "inferred.yaml"
    schema.write_text(text)
    cfg = load_config(schema)
    assert cfg.queries.kind == "item" and cfg.interactions.query == "query_item" and cfg.interactions.item == "item_id"
    f = cfg.items.features
    assert f["tags"].type == "multi_categorical" and f["tags"].separator == "|"
    assert f["title"].type == "text" and f["price"].type == "numeric" and f["category"].type == "categorical"
    assert json.loads(ok(runner, "profile", schema, "--json"))["items"] == 300


@pytest.mark.parametrize("aug", AUGMENTATIONS)
def test_train_every_augmentation(aug: str, data: Path, runner: CliRunner) -> None:
    out = data / f"run-{aug}"
    summary = json.loads(ok(runner, "-q", "train", data / "schema.yaml", "--aug", aug, "--steps", "3",
                            "--batch-size", "64", "--out", out, "--json"))
    assert summary["steps"] == 3 and 0 <= summary["val_recall@50"] <= 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert losses and all(np.isfinite(r["loss"]) for r in losses)
    assert ("ssl" in losses[-1]) == (aug not in ("none", "fd"))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ssl"]["aug"] == aug and cfg["train"]["steps"] == 3
    assert (out / "mi.json").exists() == (aug in ("cfm", "cfm_no_dropout"))
    for name in ("checkpoint.pt", "run.json", "vocabs.json", "summary.json"):
        assert (out / name).exists()


def test_precedence_flag_over_set_over_file(data: Path, runner: CliRunner) -> None:
    out = data / "prec"
    ok(runner, "-q", "train", data / "schema.yaml", "--steps", "1", "--batch-size", "32", "--out", out,
       "--set", "ssl.alpha=0.7", "--set", "train.lr=0.5", "--lr", "0.02")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ssl"]["alpha"] == 0.7 and cfg["train"]["lr"] == 0.02 and cfg["split"]["test_fraction"] == 0.1


def test_existing_run_is_not_overwritten(data: Path, runner: CliRunner) -> None:
    args = ["-q", "train", data / "schema.yaml", "--steps", "1", "--batch-size", "32", "--out", data / "r"]
    ok(runner, *args)
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 1 and "already holds a trained run — use --resume" in r.stderr
    ok(runner, *args, "--overwrite")


@pytest.fixture(scope="module")
def trained(tiny_dir: Path) -> Path:
    runner = CliRunner()
    for aug in ("none", "cfm"):
        ok(runner, "-q", "train", tiny_dir / "schema.yaml", "--aug", aug, "--epochs", "3", "--batch-size", "128",
           "--out", tiny_dir / f"runs/{aug}")
    return tiny_dir / "runs"


def test_eval_json_and_comparison(trained: Path, runner: CliRunner) -> None:
    obj = json.loads(ok(runner, "eval", trained / "cfm", "--baseline", trained / "none", "--json"))
    runs = {Path(r["run"]).name: r for r in obj["runs"]}
    m = runs["cfm"]["metrics"]
    assert set(m) >= {"recall@10", "map@10", "recall@50", "map@50"} and all(0 <= v <= 1 for v in m.values())
    assert m["recall@50"] > runs["cfm"]["toppop"]["recall@50"]  # learned something beyond popularity
    assert set(runs["cfm"]["slices"]) == {"head", "tail", "cold", "novel"}
    ci = obj["comparison"]["vs_baseline"][0]["recall@50"]
    assert ci["low"] <= ci["relative"] <= ci["high"]
    assert json.loads((trained / "cfm/eval.json").read_text())["metrics"] == m
    # profile's TopPopular and slice sizes are the very numbers eval reports
    schema = trained.parent / "schema.yaml"
    pop = json.loads(ok(runner, "profile", schema, "--json"))["popularity"]
    assert pop["toppop_recall@50"] == pytest.approx(runs["cfm"]["toppop"]["recall@50"])
    assert pop["test_pairs"] == {name: runs["cfm"]["slices"][name]["pairs"] for name in ("head", "tail", "cold")}


def test_eval_independent_of_batch_size(trained: Path, runner: CliRunner) -> None:
    a = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--batch-size", "7"))["runs"][0]["metrics"]
    b = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--batch-size", "4096"))["runs"][0]["metrics"]
    assert a == b


def test_eval_hnsw_reports_ann_recall(trained: Path, runner: CliRunner) -> None:
    r = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--index", "hnsw", "--k", "10"))["runs"][0]
    assert r["ann_recall@10"] >= 0.95 and set(r["metrics"]) == {"recall@10", "map@10", "ndcg@10", "mrr@10"}
    assert r["ann_recall_queries"] == r["queries"] and r["index"] == "hnsw"
    hubs = r["hnsw"].pop("hubs_used")  # the index behind the numbers
    assert r["hnsw"] == {"M": 16, "ef_construction": 100, "ef": 100, "center": True, "normalize": False, "query_nodes": 0,
                         "hub_queries": 5000, "recall_queries": 1000, "query_nodes_used": 0}
    assert 0 < hubs <= 300  # items of the tiny catalog
    exact = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--k", "10"))["runs"][0]
    # a recall-1 ANN would give the exact metrics; at >= 0.95 they stay close
    assert abs(r["metrics"]["recall@10"] - exact["metrics"]["recall@10"]) < 0.05
    sample = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--index", "hnsw", "--k", "10",
                           "--ann-queries", "5"))["runs"][0]
    assert sample["ann_recall_queries"] == 5 and sample["metrics"] == r["metrics"]


def test_embed_catalog_and_cold_items(trained: Path, runner: CliRunner, tiny_dir: Path, tmp_path: Path) -> None:
    lines = ok(runner, "-q", "embed", trained / "cfm", "--format", "ndjson").splitlines()
    assert len(lines) == 300
    row = json.loads(lines[0])
    assert row["id"] == "i000000" and len(row["vector"]) == 64
    assert abs(np.linalg.norm(row["vector"]) - 1) < 1e-5
    new = tmp_path / "new.csv"
    new.write_text("item_id,category,subcategory,brand,tags,title,price,year\n"
                   "brand-new,cat03,sub031,b999,t45|t46,A never seen title,12.5,2030\n")
    out = tmp_path / "v.npy"
    ok(runner, "-q", "embed", trained / "cfm", "--items", new, "--format", "npy", "--out", out)
    v = np.load(out)
    assert v.shape == (1, 64) and (tmp_path / "v.npy.ids.ndjson").read_text() == '{"id":"brand-new"}\n'


def test_recommend_pipeline_keeps_good_lines(trained: Path, runner: CliRunner) -> None:
    stdin = "i000001\nnot-an-id\n{broken\ni000002\n"
    r = runner.invoke(app, ["-q", "recommend", str(trained / "cfm"), "--k", "5"], input=stdin)
    assert r.exit_code == 1
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["query"] for o in out] == ["i000001", "i000002"]
    assert all(len(o["items"]) == 5 and o["query"] not in o["items"] for o in out)
    assert "line 2: unknown item id 'not-an-id'" in r.stderr and "line 3: not a JSON object" in r.stderr


def test_recommend_serves_a_centered_index_with_raw_scores(trained: Path, runner: CliRunner) -> None:
    """eval.hnsw.center (default): the cached graph holds item vectors minus their mean; the
    answers are the exact top-k of the raw inner products, with those scores."""
    import numpy as np

    from sslkit.retrieval.embed import embed_table, load_run

    r = runner.invoke(app, ["-q", "recommend", str(trained / "none"), "--k", "5"], input="i000003\n")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    meta = json.loads((trained / "none" / "index.hnsw.json").read_text())
    assert meta["version"] == 3 and len(meta["center"]) == meta["dim"] and meta["hubs"]
    run = load_run(trained / "none")
    store = run.store()
    row = list(store.items.ids).index("i000003")
    scores = embed_table(run, store.items, queries=False) @ embed_table(run, store.items.take(np.array([row])),
                                                                         queries=True)[0]
    scores[row] = -np.inf  # the query item itself is never recommended
    best = np.argsort(-scores, kind="stable")[:5]
    assert out["items"] == [str(store.items.ids[i]) for i in best]
    np.testing.assert_allclose(out["scores"], scores[best], atol=1e-5)


def test_schema_json_is_current() -> None:
    from sslkit.config import json_schema

    committed = json.loads((ROOT / "schemas/sslkit.schema.json").read_text())
    assert committed == json_schema(), "regenerate: python -m sslkit.config > schemas/sslkit.schema.json"


def test_reference_yaml_validates_and_covers_every_section() -> None:
    from sslkit.config import Config, validate

    raw = yaml.safe_load((ROOT / "schemas/reference.yaml").read_text())
    validate(raw, source="reference.yaml")
    assert set(raw) == set(Config.model_fields) - {"base_dir"}


def test_example_schemas_validate() -> None:
    from sslkit.config import load_config

    for name in ("schema.yaml", "schema_users.yaml"):
        cfg = load_config(ROOT / "examples/synthetic" / name)
        assert Path(cfg.resolve(cfg.interactions.path)).exists()
        movielens = load_config(ROOT / "examples/movielens" / name)  # its data is built by prepare.py
        assert movielens.items.features["actors"].type == "multi_categorical"


def test_eval_exclude_seen_drops_training_positives(trained: Path, runner: CliRunner) -> None:
    base = json.loads(ok(runner, "eval", trained / "cfm", "--json"))["runs"][0]["metrics"]
    seen = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--exclude-seen"))["runs"][0]["metrics"]
    assert seen != base and all(0 <= v <= 1 for v in seen.values())


def test_recommend_user_to_item_by_id_and_by_features(tiny_dir: Path, runner: CliRunner) -> None:
    out = tiny_dir / "runs/users"
    ok(runner, "-q", "train", tiny_dir / "schema_users.yaml", "--steps", "3", "--batch-size", "64", "--out", out)
    user = (tiny_dir / "data/users.csv").read_text().splitlines()[1].split(",")[0]
    stdin = f'{user}\nnobody\n{{"user_id": "new", "age": "25-34", "gender": "F", "occupation": "occ1", "zip": "123"}}\n'
    r = runner.invoke(app, ["-q", "recommend", str(out), "--k", "4"], input=stdin)
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["query"] for o in rows] == [user, "new"] and all(len(o["items"]) == 4 for o in rows)
    assert "line 2: unknown query id 'nobody'" in r.stderr


def test_eval_split_validation_equals_the_last_training_validation(trained: Path, runner: CliRunner) -> None:
    """`eval --split validation` scores the pairs train validated on, the same way (query tower, exclusions)."""
    r = json.loads(ok(runner, "eval", trained / "cfm", "--json", "--split", "validation"))["runs"][0]
    summary = json.loads((trained / "cfm/summary.json").read_text())
    assert r["split"] == "validation" and 0 < r["queries"] <= 1000  # train.eval_queries: the sample is the whole split
    for k in (10, 50):
        assert r["metrics"][f"recall@{k}"] == pytest.approx(summary["validation"][f"val_recall@{k}"], abs=1e-9)
        assert r["toppop"][f"recall@{k}"] == pytest.approx(summary["validation"][f"val_toppop_recall@{k}"], abs=1e-12)
    assert (trained / "cfm/eval.validation.json").exists()
    test = json.loads(ok(runner, "eval", trained / "cfm", "--json"))["runs"][0]
    assert test["split"] == "test" and test["metrics"] != r["metrics"]


def test_item_to_item_queries_use_the_query_tower_in_embed_and_recommend(trained: Path, runner: CliRunner,
                                                                         tiny_dir: Path) -> None:
    items = tiny_dir / "data/items.csv"
    as_items = [json.loads(x) for x in ok(runner, "-q", "embed", trained / "cfm", "--items", items).splitlines()]
    as_queries = [json.loads(x) for x in ok(runner, "-q", "embed", trained / "cfm", "--queries", items).splitlines()]
    assert [r["id"] for r in as_queries] == [r["id"] for r in as_items]
    assert not np.allclose(as_queries[0]["vector"], as_items[0]["vector"])  # two towers
    q = np.array(as_queries[1]["vector"])
    catalog = np.array([r["vector"] for r in as_items])
    expected = [as_items[i]["id"] for i in np.argsort(-(catalog @ q), kind="stable") if i != 1][:5]
    r = runner.invoke(app, ["-q", "recommend", str(trained / "cfm"), "--k", "5"], input="i000001\n")
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["query"] == "i000001" and got["items"][:3] == expected[:3]  # HNSW: the top ranks agree


def test_run_trained_from_stdin_is_evaluated_later(data: Path, runner: CliRunner) -> None:
    """A pipe cannot be read twice: the store is cached under its content and found via run.json."""
    schema = data / "schema.yaml"
    schema.write_text(schema.read_text().replace("path: data/pairs.csv", 'path: "-"'))
    pairs = (data / "data/pairs.csv").read_text()
    out = data / "piped"
    r = runner.invoke(app, ["-q", "train", str(schema), "--steps", "3", "--batch-size", "256", "--out", str(out),
                            "--json"], input=pairs)
    assert r.exit_code == 0, r.output
    cached = json.loads((out / "run.json").read_text())["feature_store"]["path"]
    assert cached and (Path(cached) / "meta.json").exists()
    trained = json.loads(r.stdout)["val_recall@50"]
    r = runner.invoke(app, ["-q", "eval", str(out), "--json", "--split", "validation"])  # must not read stdin again
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runs"][0]["metrics"]["recall@50"] == pytest.approx(trained)
    # the same bytes piped again reuse that store (same content key)
    r = runner.invoke(app, ["-q", "train", str(schema), "--steps", "3", "--batch-size", "256", "--out",
                            str(data / "again"), "--json"], input=pairs)
    assert json.loads((data / "again/run.json").read_text())["feature_store"]["path"] == cached
    shutil.rmtree(cached)
    r = runner.invoke(app, ["-q", "eval", str(out)])
    assert r.exit_code == 1
    assert "trained from standard input, and the feature store cached then is gone" in r.output
