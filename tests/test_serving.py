"""Serving: `recommend` from the run's index or exactly, the index's recorded recall, `--k` up to the
catalog size, and a cached index whose sidecar was edited (rebuilt, never trusted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.cli import app


def invoke(*args: Any, stdin: str | None = None, quiet: bool = True) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, [*(["-q"] if quiet else []), *[str(a) for a in args]], input=stdin)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def trained(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny dataset (300 items, item-to-item) with a 30-step run in `run/`."""
    base = tmp_path_factory.mktemp("serving") / "ds"
    shutil.copytree(tiny_dir, base, ignore=shutil.ignore_patterns(".sslkit-cache"))
    code, _, err = invoke("train", base / "schema.yaml", "--steps", "30", "--batch-size", "256", "--out", base / "run")
    assert code == 0, err
    return base


def exact_scores(run_dir: Path, query_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Catalog ids and every item's inner product with the query tower's vector of `query_id`."""
    from sslkit.retrieval.embed import embed_table, load_run

    run = load_run(run_dir)
    store = run.store()
    ids = np.asarray(store.items.ids).astype(str)
    row = int(np.flatnonzero(ids == query_id)[0])
    items = embed_table(run, store.items, queries=False).astype(np.float64)
    q = embed_table(run, store.items.take(np.array([row])), queries=True)[0].astype(np.float64)
    scores = items @ q
    scores[row] = -np.inf  # item-to-item: never the query item itself
    return ids, scores


def test_recommend_exact_and_hnsw_return_exact_scores_and_state_the_recall(trained: Path) -> None:
    run = trained / "run"
    code, out, err = invoke("recommend", run, "--k", "7", stdin="i000003\n", quiet=False)
    assert code == 0, err
    meta = json.loads((run / "index.hnsw.json").read_text())
    rec = meta["recall"]
    assert rec["split"] == "validation" and rec["queries"] > 0 and 0 <= rec["recall@50"] <= 1
    assert meta["built_with"]["query_nodes"]["from"] == "training queries" and meta["version"] == 3
    assert f"recall@50 {rec['recall@50']:.3f} against exact search on {rec['queries']:,} validation queries" \
        in " ".join(err.split())
    ids, scores = exact_scores(run, "i000003")
    got = json.loads(out)
    np.testing.assert_allclose(got["scores"], scores[[list(ids).index(i) for i in got["items"]]], atol=2e-6)
    code, out, err = invoke("recommend", run, "--k", "7", "--index", "exact", stdin="i000003\n", quiet=False)
    assert code == 0 and "serving by exact search over 300 items" in err, err
    best = np.lexsort((np.arange(len(scores)), -scores))[:7]
    assert json.loads(out)["items"] == ids[best].tolist()
    np.testing.assert_allclose(json.loads(out)["scores"], scores[best], atol=2e-6)
    code, _, err = invoke("recommend", run, "--index", "faiss", stdin="i000003\n")
    assert code == 2 and "use hnsw or exact" in err


@pytest.mark.parametrize("index", ["hnsw", "exact"])
def test_recommend_k_above_the_catalog_returns_the_whole_catalog(trained: Path, index: str) -> None:
    for k in (299, 300, 5000):
        code, out, err = invoke("recommend", trained / "run", "--k", k, "--index", index, stdin="i000001\ni000002\n")
        assert code == 0, err
        lines = [json.loads(x) for x in out.splitlines()]
        assert [len(x["items"]) for x in lines] == [299, 299]  # every item but the query itself
        assert all(len(set(x["items"])) == 299 and x["query"] not in x["items"] for x in lines)


def test_eval_hnsw_with_k_up_to_the_catalog_size(trained: Path) -> None:
    code, out, err = invoke("eval", trained / "run", "--index", "hnsw", "--k", "299", "--json")
    assert code == 0, err
    r = json.loads(out)["runs"][0]
    assert r["ann_recall@299"] == pytest.approx(1.0) and r["metrics"]["recall@299"] == pytest.approx(1.0)


@pytest.mark.parametrize("edit", ["center", "ef"])
def test_an_edited_cached_sidecar_is_rebuilt_saying_so(trained: Path, tmp_path: Path, edit: str) -> None:
    run = trained / "run"
    invoke("recommend", run, "--k", "5", stdin="i000003\n")  # the index exists
    side = run / "index.hnsw.json"
    meta = json.loads(side.read_text())
    if edit == "center":
        meta["center"] = [3 * c for c in meta["center"]]
    else:
        meta["ef"] = 1
    side.write_text(json.dumps(meta, indent=2))
    code, out, err = invoke("recommend", run, "--k", "5", stdin="i000003\n", quiet=False)
    assert code == 0, err
    assert f"{run / 'index.hnsw'}: does not match the checksums derived.json records" in " ".join(err.split())
    assert "rebuilding it" in err
    fresh = json.loads(side.read_text())
    assert fresh["ef"] == 100 and (fresh["center"] != meta["center"]) == (edit == "center")
    ids, scores = exact_scores(run, "i000003")
    got = json.loads(out)
    assert max(got["scores"]) <= 1 + 1e-6
    np.testing.assert_allclose(got["scores"], scores[[list(ids).index(i) for i in got["items"]]], atol=2e-6)


def test_embed_index_records_recall_and_refuses_an_edited_sidecar(trained: Path, tmp_path: Path) -> None:
    from sslkit.errors import CheckpointError
    from sslkit.retrieval.index import HnswIndex

    path = tmp_path / "items.hnsw"
    code, _, err = invoke("embed", trained / "run", "--index", path, "--out", tmp_path / "v.ndjson", quiet=False)
    assert code == 0, err
    assert "against exact search on" in err and "validation queries" in " ".join(err.split())
    meta = json.loads(Path(f"{path}.json").read_text())
    assert meta["recall"]["queries"] > 0 and len(meta["hubs"]) > 0 and meta["query_nodes"] == 0  # hubs are the default, query nodes off
    HnswIndex.load(path)
    Path(f"{path}.json").write_text(json.dumps({**meta, "ef": 1}))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        HnswIndex.load(path)
