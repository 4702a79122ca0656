"""The public Python API: docs/api.md's complete example runs as written on the bundled example
data, every call states its contract, and the calls raise the errors their docstrings name."""
from __future__ import annotations

import contextlib
import csv
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sslkit
from sslkit.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
CALLS = ["init_schema", "load_config", "load_store", "profile", "mi", "train", "evaluate", "embed", "recommend",
         "run_study"]


def doc_example(text: str) -> str:
    """The first ```python block after the `<!-- api-example -->` marker."""
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    if not m:
        raise AssertionError("docs/api.md: no ```python block after <!-- api-example -->")
    return m.group(1)


def test_doc_example_extraction_refuses_a_page_without_it() -> None:
    assert doc_example("<!-- api-example -->\n```python\nx = 1\n```\n") == "x = 1\n"
    with pytest.raises(AssertionError):
        doc_example("```python\nx = 1\n```\n")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """docs/api.md's example, run as written from a directory holding a copy of the example data."""
    work = tmp_path_factory.mktemp("api")
    (work / "examples" / "synthetic").mkdir(parents=True)
    shutil.copy(ROOT / "examples/synthetic/schema.yaml", work / "examples/synthetic/schema.yaml")
    shutil.copytree(ROOT / "examples/synthetic/data", work / "examples/synthetic/data")
    code = doc_example((ROOT / "docs" / "api.md").read_text())
    namespace: dict[str, Any] = {"__name__": "__api_example__"}
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 — the page's own example
    finally:
        os.chdir(cwd)
    return namespace, out.getvalue(), work


def test_doc_example_runs_schema_to_recommendations(example: tuple[dict[str, Any], str, Path]) -> None:
    ns, printed, work = example
    assert ns["store"].items.rows == 2000
    assert sum(len(p) for p in ns["store"].splits.values()) == 30000
    assert ns["result"].steps == 30 and (work / "runs/api-cfm/checkpoint.pt").exists()
    assert 0.0 <= ns["result"].validation["val_recall@50"] <= 1.0
    assert 0.0 <= ns["scores"].metrics["recall@50"] <= 1.0 and (work / "runs/api-cfm/eval.json").exists()
    ids, vectors = ns["ids"], ns["vectors"]
    assert ids[0] == "i000000" and vectors.shape == (2000, 64)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4  # unit vectors
    with open(work / "examples/synthetic/data/items.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["item_id"] == "i000001")
    cold = {**row, "item_id": "new-item", "price": float(row["price"]), "year": int(row["year"])}  # a query the run has never seen, given by its features
    recs = sslkit.recommend(work / "runs/api-cfm", ["i000001", cold], k=3)
    assert [r["query"] for r in recs] == ["i000001", "new-item"] and all(len(r["items"]) == 3 for r in recs)
    assert "i000001" not in recs[0]["items"]  # item-to-item: never the query item itself
    assert "ConfigError" in printed and "did you mean 'alpha'" in printed
    # the page shows what the example prints; the lines that do not depend on training float sums must match
    shown = re.search(r"What it printed here:\s*```\n(.*?)```", (ROOT / "docs/api.md").read_text(), flags=re.DOTALL)
    assert shown, "docs/api.md: the example's output block is missing"
    stable = [line for line in printed.splitlines() if not re.search(r"Recall@50 0\.\d+\b|→", line)]
    assert len(stable) == 5 and all(line in shown.group(1).splitlines() for line in stable), stable


def test_recommend_names_an_unknown_query(example: tuple[dict[str, Any], str, Path]) -> None:
    _, _, work = example
    with pytest.raises(DataError, match=r"line 2: unknown item id 'nope'"):
        sslkit.recommend(work / "runs/api-cfm", ["i000001", "nope"], k=3)


def test_calls_raise_their_documented_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schema file not found"):
        sslkit.load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="train.steps"):
        sslkit.load_config(ROOT / "examples/synthetic/schema.yaml", settings={"train.steps": "many"})
    with pytest.raises(sslkit.SslkitError):
        sslkit.evaluate(tmp_path)  # not a run directory


def test_settings_apply_after_overrides() -> None:
    cfg = sslkit.load_config(ROOT / "examples/synthetic/schema.yaml", ["ssl.alpha=0.5", "ssl.aug=so"],
                             settings={"ssl.alpha": 1.5, "model.hidden": [32, 16], "eval.exclude_seen": True})
    assert (cfg.ssl.alpha, cfg.ssl.aug, cfg.model.hidden, cfg.eval.exclude_seen) == (1.5, "so", [32, 16], True)


@pytest.mark.parametrize("name", CALLS)
def test_every_call_states_its_contract(name: str) -> None:
    fn = getattr(sslkit, name)
    doc = inspect.getdoc(fn) or ""
    assert fn.__module__ == "sslkit.api"
    for section in ("Args:", "Returns:", "Raises:"):
        assert section in doc, f"sslkit.{name}: no {section} section"
    params = [p for p in inspect.signature(fn).parameters if p not in ("self",)]
    args = doc.split("Args:")[1].split("Returns:")[0]
    assert [p for p in params if not re.search(rf"^\s+{p}:", args, flags=re.MULTILINE)] == [], f"sslkit.{name}"


def test_public_names_and_lazy_import() -> None:
    assert set(CALLS) | {"SslkitError", "__version__", "NUMERICS_VERSION"} == set(sslkit.__all__)
    assert set(CALLS) <= set(dir(sslkit))
    with pytest.raises(AttributeError, match="no attribute 'store'"):
        sslkit.store  # noqa: B018 — old module names are not attributes
    code = ("import sys, sslkit; from sslkit import load_config, train, evaluate, recommend, SslkitError; "
            "print(sorted(m for m in ('torch', 'hnswlib', 'polars') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
