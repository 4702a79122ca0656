"""User mistakes end in one clear `Error:` line naming file/field and a fix, with the contract's exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslkit.cli import app


def run(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def edit(schema: Path, old: str, new: str) -> Path:
    text = schema.read_text()
    assert old in text, old
    schema.write_text(text.replace(old, new))
    return schema


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error: "), err
    assert "Traceback" not in err
    return " ".join(lines[lines.index(next(ln for ln in lines if ln.startswith("Error: "))):])


CASES = [
    # (id, schema edit (old, new) or None, extra args, exit code, expected text in the error line)
    ("unknown-key", ('separator: "|"', 'seperator: "|"'), [], 2,
     "items.features.tags.seperator: unknown key 'seperator' — did you mean 'separator'?"),
    ("bad-type", ("tags: {type: multi_categorical", "tags: {type: multi_categorial"), [], 2,
     "items.features.tags.type: Input should be 'categorical', 'multi_categorical', 'text' or 'numeric'"),
    ("option-for-wrong-type", ("category: {type: categorical}", 'category: {type: categorical, separator: ","}'), [], 2,
     "items.features.category: 'separator' only applies to type multi_categorical, not categorical"),
    ("missing-required", ("  query: query_item", ""), [], 2, "interactions.query: required key is missing"),
    ("bad-fraction", None, ["--set", "split.test_fraction=1.5"], 2, "--set: split.test_fraction: Input should be less than 1"),
    ("set-unknown-key", None, ["--set", "ssl.alpah=1"], 2, "--set: ssl.alpah: unknown key 'alpah' — did you mean 'alpha'?"),
    ("set-not-key-value", None, ["--set", "ssl.alpha"], 2, "--set 'ssl.alpha': expected key=value"),
    ("missing-column", ("    brand: {type: categorical}", "    brand: {type: categorical, column: brnd}"), [], 1,
     "column 'brnd' (items.features.brand) not found — did you mean 'brand'?"),
    ("numeric-on-text", ("    year: {type: numeric, buckets: 8}", "    year: {type: numeric, column: category}"), [], 1,
     "column 'category' (items.features.year) holds text, but type numeric needs numbers"),
    ("text-on-numbers", ("    year: {type: numeric, buckets: 8}", "    year: {type: text}"), [], 1,
     "column 'year' (items.features.year) holds int64, but type text needs strings"),
    ("multi-without-separator", ('tags: {type: multi_categorical, separator: "|", max_len: 8}', "tags: {type: multi_categorical}"), [], 1,
     "column 'tags' (items.features.tags) is a string column, so multi_categorical needs a separator"),
    ("missing-data-file", ("path: data/items.csv", "path: data/itemz.csv"), [], 1, "data/itemz.csv: file not found"),
    ("empty-test-split", None, ["--set", "split.test_fraction=0.00001"], 1, "the test split is empty — raise split.test_fraction"),
    ("unknown-format", ("path: data/items.csv", "path: data/items.txt"), [], 1, "cannot tell the file format from '.txt'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_schema_and_data_errors(case: tuple, data: Path, runner: CliRunner) -> None:
    _, change, extra, code, message = case
    schema = data / "schema.yaml"
    if change:
        edit(schema, *change)
    if case[0] == "unknown-format":
        (data / "data/items.txt").write_text((data / "data/items.csv").read_text())
    exit_code, out, err = run(runner, "profile", schema, *extra)
    assert exit_code == code, err
    assert message in one_error_line(err)
    assert out == ""


def test_schema_file_missing(tmp_path: Path, runner: CliRunner) -> None:
    code, _, err = run(runner, "profile", tmp_path / "nope.yaml")
    assert code == 2
    assert "nope.yaml: schema file not found — run `sslkit init DATA > schema.yaml`" in one_error_line(err)


def test_bad_yaml_names_line(tmp_path: Path, runner: CliRunner) -> None:
    schema = write(tmp_path / "s.yaml", "interactions:\n  path: [unclosed\nitems: {}\n")
    code, _, err = run(runner, "profile", schema)
    assert code == 2
    assert "s.yaml: line 3, column 6: expected ',' or ']'" in one_error_line(err)


def test_empty_schema(tmp_path: Path, runner: CliRunner) -> None:
    code, _, err = run(runner, "mi", write(tmp_path / "s.yaml", ""))
    assert code == 2 and "schema file is empty" in one_error_line(err)


def test_duplicate_item_ids(data: Path, runner: CliRunner) -> None:
    items = data / "data/items.csv"
    lines = items.read_text().splitlines()
    items.write_text("\n".join(lines + [lines[1]]) + "\n")
    code, _, err = run(runner, "profile", data / "schema.yaml")
    assert code == 1
    assert "column 'item_id' (items.id) has 2 rows with duplicate ids, e.g. 'i000000' — keep one row per id" in one_error_line(err)


def test_null_interaction_ids(data: Path, runner: CliRunner) -> None:
    pairs = data / "data/pairs.csv"
    pairs.write_text(pairs.read_text() + ",i000001,999999\n")
    code, _, err = run(runner, "profile", data / "schema.yaml")
    assert code == 1
    assert "column 'query_item' (interactions.query) has 1 empty id(s)" in one_error_line(err)


def test_unknown_items_error_policy(data: Path, runner: CliRunner) -> None:
    pairs = data / "data/pairs.csv"
    pairs.write_text(pairs.read_text() + "i000001,zzz,999999\ni000002,zzz2,999999\n")
    code, out, err = run(runner, "profile", data / "schema.yaml", "--json", "--set", "interactions.on_unknown_item=error")
    assert code == 1
    assert "2 of 4" in err and "have a item id not in the catalog (column 'item_id', e.g. 'zzz')" in one_error_line(err)


def test_unknown_items_dropped_and_counted(data: Path, runner: CliRunner) -> None:
    import json

    pairs = data / "data/pairs.csv"
    pairs.write_text(pairs.read_text() + "i000001,zzz,999999\ni000002,zzz2,999999\n")
    code, out, err = run(runner, "profile", data / "schema.yaml", "--json")
    assert code == 0, err
    assert json.loads(out)["pairs"]["dropped_unknown_item"] == 2
    assert "dropped (interactions.on_unknown_item: drop)" in err


@pytest.mark.parametrize("content", ["", "item_id,category\n"], ids=["empty-file", "header-only"])
def test_empty_items_file(content: str, data: Path, runner: CliRunner) -> None:
    (data / "data/items.csv").write_text(content)
    code, _, err = run(runner, "profile", data / "schema.yaml")
    assert code == 1
    assert ("file is empty" if not content else "no rows — the file has a header but no data") in one_error_line(err)


def test_train_flags_validated(data: Path, runner: CliRunner) -> None:
    code, _, err = run(runner, "train", data / "schema.yaml", "--aug", "cfmm", "--out", data / "r")
    assert code == 2
    assert "Error: --aug: ssl.aug: Input should be 'none', 'fd', 'so', 'cfm'" in one_error_line(err)
    code, _, err = run(runner, "train", data / "schema.yaml", "--lr", "-1", "--out", data / "r")
    assert code == 2 and "Error: --lr: train.lr: Input should be greater than 0" in one_error_line(err)
    code, _, err = run(runner, "train", data / "schema.yaml", "--batch-size", "1", "--out", data / "r")
    assert code == 2 and "Error: --batch-size: train.batch_size: Input should be greater" in one_error_line(err)
    # the same key given by --set is named as --set
    code, _, err = run(runner, "train", data / "schema.yaml", "--set", "train.lr=-1", "--out", data / "r")
    assert code == 2 and "Error: --set: train.lr: Input should be greater than 0" in one_error_line(err)


def test_resume_without_checkpoint(data: Path, runner: CliRunner) -> None:
    code, _, err = run(runner, "train", data / "schema.yaml", "--resume", "--out", data / "nothing")
    assert code == 1 and "nothing to resume (no checkpoint.pt) — drop --resume" in one_error_line(err)


def test_resume_with_another_optimizer(data: Path, runner: CliRunner) -> None:
    out = data / "r"
    code, _, err = run(runner, "train", data / "schema.yaml", "--steps", "2", "--batch-size", "256", "--out", out)
    assert code == 0, err
    before = (out / "checkpoint.pt").read_bytes()
    code, _, err = run(runner, "train", data / "schema.yaml", "--steps", "4", "--batch-size", "256", "--out", out,
                       "--resume", "--optimizer", "adam")
    assert code == 1
    assert 'cannot resume with different settings: train.optimizer "adagrad" → "adam"' in one_error_line(err)
    assert (out / "checkpoint.pt").read_bytes() == before  # the run is left as it was


def test_eval_unknown_run_dir(tmp_path: Path, runner: CliRunner) -> None:
    code, _, err = run(runner, "eval", tmp_path / "missing")
    assert code == 1 and "run directory not found" in one_error_line(err)


def test_corrupt_checkpoint(tmp_path: Path, runner: CliRunner) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run/checkpoint.pt").write_bytes(b"not a checkpoint")
    for cmd in ("eval", "embed"):
        code, _, err = run(runner, cmd, tmp_path / "run")
        assert code == 1 and "cannot read checkpoint (" in one_error_line(err)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(data: Path, runner: CliRunner) -> None:
    code, _, err = run(runner, "train", data / "schema.yaml", "--device", "cuda", "--out", data / "r")
    assert code == 1 and "train.device=cuda (--device cuda): no CUDA device is available" in one_error_line(err)
    assert not (data / "r" / "checkpoint.pt").exists()
