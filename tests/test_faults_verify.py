"""Nothing trusted is unverified: the cache's own metadata (feature specs, vocabularies) and a sweep
cell's results (eval.json, per_query.npz, summary.json) carry checksums written at save and checked
at load; damage is rebuilt / re-evaluated (saying so) or refused in one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslkit.cli import app

TRAIN = ("--steps", "2", "--batch-size", "256")


def invoke(*args: object, quiet: bool = True) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, [*(["-q"] if quiet else []), *[str(a) for a in args]])
    return r.exit_code, r.stdout, r.stderr


def entry(data: Path) -> Path:
    (path,) = [p for p in (data / ".sslkit-cache").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return path


def edit_meta(data: Path, change) -> dict:  # type: ignore[no-untyped-def]
    path = entry(data) / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta, indent=2))
    return meta


def set_brand_size(meta: dict) -> None:
    (spec,) = [s for s in meta["specs"]["items"] if s["name"] == "brand"]
    spec["num_embeddings"] = 5


def rename_a_token(meta: dict) -> None:
    vocab = meta["vocabs"]["items"]["brand"]
    values = vocab["values"] if isinstance(vocab, dict) else vocab
    values[3] = "brand-edited"


@pytest.mark.parametrize("change", [set_brand_size, rename_a_token], ids=["num-embeddings-5", "vocab-token"])
def test_edited_cache_metadata_is_rebuilt_not_trusted(change, data: Path) -> None:  # type: ignore[no-untyped-def]
    from sslkit.config import load_config
    from sslkit.data.store import fingerprint, load_or_build

    cfg = load_config(data / "schema.yaml")
    first = load_or_build(cfg)
    want, size = fingerprint(first), first.items.specs["brand"].num_embeddings
    assert size > 5
    edit_meta(data, change)
    logged: list[str] = []
    store = load_or_build(cfg, log=logged.append)
    assert any("meta.json fails its checksum" in m and m.endswith("rebuilding it") for m in logged), logged
    assert store.items.specs["brand"].num_embeddings == size and fingerprint(store) == want


def test_train_on_a_cache_with_an_edited_size_trains_on_the_real_one(data: Path) -> None:
    """num_embeddings 5 in meta.json trained with aliased embedding rows (exit 0); now the entry is rebuilt."""
    import torch

    code, _, err = invoke("train", data / "schema.yaml", *TRAIN, "--out", data / "r1")
    assert code == 0, err
    edit_meta(data, set_brand_size)
    code, _, err = invoke("train", data / "schema.yaml", *TRAIN, "--out", data / "r2")
    assert code == 0, err
    one, two = (torch.load(data / r / "checkpoint.pt", weights_only=True)["model"] for r in ("r1", "r2"))
    assert {k: tuple(v.shape) for k, v in one.items()} == {k: tuple(v.shape) for k, v in two.items()}
    sizes = {s["name"]: s["num_embeddings"] for s in json.loads((entry(data) / "meta.json").read_text())["specs"]["items"]}
    assert sizes["brand"] > 5


def test_eval_over_a_damaged_cache_does_not_blame_the_data(data: Path) -> None:
    code, _, err = invoke("train", data / "schema.yaml", *TRAIN, "--out", data / "run")
    assert code == 0, err
    edit_meta(data, rename_a_token)
    code, out, err = invoke("eval", data / "run", "--json", quiet=False)
    assert code == 0, err
    assert "data changed" not in err and "meta.json fails its checksum" in " ".join(err.split())
    assert "metrics" in json.loads(out)[0] if isinstance(json.loads(out), list) else json.loads(out)


# --- sweep cells ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swept(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-cell sweep, done (copied per test by `sweep`)."""
    base = tmp_path_factory.mktemp("verify") / "ds"
    # runs/ left out: other tests' runs in the shared tiny data must not be taken for the sweep's cell
    shutil.copytree(tiny_dir, base, ignore=shutil.ignore_patterns(".sslkit-cache", "runs"))
    spec = {"schema": str(base / "schema.yaml"), "out": str(base / "runs"),
            "set": {"train.steps": 2, "train.batch_size": 256, "train.eval_queries": 20, "model.hidden": [32, 16]},
            "grid": {"aug": ["none"]}}
    (base / "s.yaml").write_text(json.dumps(spec))
    code, out, err = invoke("sweep", base / "s.yaml", "--json")
    assert code == 0, err
    (base / "first.json").write_text(out)
    return base


@pytest.fixture()
def sweep(swept: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """(spec, the cell's directory, the first summary) in a private copy; paths in the spec point at it."""
    dst = tmp_path / "ds"
    shutil.copytree(swept, dst, symlinks=True)
    spec = json.loads((dst / "s.yaml").read_text())
    spec["schema"], spec["out"] = str(dst / "schema.yaml"), str(dst / "runs")
    (dst / "s.yaml").write_text(json.dumps(spec))
    from sslkit.study.sweep import load_sweep

    cell = load_sweep(dst / "s.yaml").cells[0].dir
    return dst / "s.yaml", cell, json.loads((dst / "first.json").read_text())


def groups(summary: dict) -> list[dict]:
    """The table of a sweep summary, without the run paths (the copy lives elsewhere)."""
    return [{k: v for k, v in g.items() if k != "runs"} for g in summary["groups"]]


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, name", [
    (lambda c: flip_byte(c / "per_query.npz", (c / "per_query.npz").stat().st_size // 2), "per_query.npz"),
    (lambda c: flip_byte(c / "per_query.npz", 40), "per_query.npz"),
    (lambda c: (c / "eval.json").write_text((c / "eval.json").read_text().replace('"recall@50": 0.', '"recall@50": 0.9', 1)),
     "eval.json"),
], ids=["per-query-middle-byte", "per-query-header-byte", "eval-json-metric-edited"])
def test_damaged_cell_results_are_evaluated_again(damage, name: str, sweep: tuple[Path, Path, dict]) -> None:  # type: ignore[no-untyped-def]
    spec, cell, first = sweep
    before = json.loads((cell / "eval.json").read_text())["metrics"]
    damage(cell)
    code, out, err = invoke("sweep", spec, "--json", quiet=False)
    assert code == 0 and "Traceback" not in err and "internal error" not in err, err
    text = " ".join(err.split())
    assert f"{name} fails its checksum" in text and "evaluating cell" in text, text
    assert groups(json.loads(out)) == groups(first)
    assert json.loads((cell / "eval.json").read_text())["metrics"] == before


def test_damaged_summary_is_one_line_naming_it(sweep: tuple[Path, Path, dict]) -> None:
    spec, cell, _ = sweep
    summary = cell / "summary.json"
    summary.write_text(summary.read_text().replace('"train_seconds": ', '"train_seconds": 1', 1))
    code, out, err = invoke("sweep", spec, "--json")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "internal error" not in err, err
    assert "summary.json fails its checksum" in " ".join(err.split()) and "retrain the cell" in lines[0]


def test_results_without_checksums_are_evaluated_again(sweep: tuple[Path, Path, dict]) -> None:
    """A cell finished by an older sslkit (no checksums file) is re-evaluated, not trusted blindly."""
    spec, cell, first = sweep
    next(cell.glob("checksums.*.json")).unlink()
    code, out, err = invoke("sweep", spec, "--json", quiet=False)
    assert code == 0 and "cannot be verified" in " ".join(err.split()), err
    assert groups(json.loads(out)) == groups(first) and next(cell.glob("checksums.*.json")).exists()
