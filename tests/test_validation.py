"""The validation split (carved from training pairs) and every number scored under the same options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.cli import app
from sslkit.config import load_config
from sslkit.data.store import build, training_split


def ok(runner: CliRunner, *args: object) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.stderr + r.stdout
    return r.stdout


def _timed(tmp_path: Path, n: int = 400) -> Path:
    """Item-to-item pairs with distinct (query, item) and a distinct, shuffled time per pair."""
    rng = np.random.default_rng(3)
    items = [f"i{j:03d}" for j in range(60)]
    (tmp_path / "items.csv").write_text("item_id,color\n" + "".join(f"{i},c{j % 5}\n" for j, i in enumerate(items)))
    flat = rng.choice(60 * 60, size=n, replace=False)
    ts = rng.permutation(n)
    (tmp_path / "pairs.csv").write_text("q,i,ts\n" + "".join(
        f"{items[f // 60]},{items[f % 60]},{t}\n" for f, t in zip(flat, ts)))
    (tmp_path / "schema.yaml").write_text(
        "interactions: {path: pairs.csv, query: q, item: i, time: ts}\n"
        "items: {path: items.csv, id: item_id, features: {item_id: {type: categorical}, color: {type: categorical}}}\n")
    return tmp_path / "schema.yaml"


def _built_with_times(tmp_path: Path, method: str) -> tuple[Any, dict[tuple[int, int], int]]:
    """The store of `_timed` data split by `method` (validation_fraction 0.2), and each pair's time."""
    store = build(load_config(_timed(tmp_path), [method, "split.validation_fraction=0.2"]))
    lines = [ln.split(",") for ln in (tmp_path / "pairs.csv").read_text().splitlines()[1:]]
    ids = list(np.asarray(store.items.ids))
    return store, {(ids.index(q), ids.index(i)): int(t) for q, i, t in lines}


def _keys(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, np.asarray(pairs).tolist()))


def test_random_validation_is_a_seeded_share_of_the_training_pairs(tmp_path: Path) -> None:
    schema = _timed(tmp_path)
    none = build(load_config(schema, ["split.validation_fraction=0"]))
    store = build(load_config(schema, ["split.validation_fraction=0.25"]))
    train, val = training_split(store)
    assert len(training_split(none)[1]) == 0 and len(val) == round(0.25 * len(none.splits["train"]))
    assert np.array_equal(store.splits["test"], none.splits["test"])  # the test split is untouched
    assert _keys(train) | _keys(val) == _keys(none.splits["train"]) and not _keys(train) & _keys(val)
    assert store.report["validation"] == len(val) and store.report["train"] == len(train)
    again = build(load_config(schema, ["split.validation_fraction=0.25"]))
    other = build(load_config(schema, ["split.validation_fraction=0.25", "split.seed=1"]))
    assert np.array_equal(again.splits["validation"], val) and not np.array_equal(other.splits["validation"], val)


def test_validation_fraction_is_part_of_the_store_cache_key(tmp_path: Path) -> None:
    from sslkit.data.store import cache_key

    schema = _timed(tmp_path)
    keys = {cache_key(load_config(schema, [f"split.validation_fraction={f}"])) for f in (0, 0.1, 0.2)}
    assert len(keys) == 3  # a store carved one way is never served for another


def test_time_split_validation_is_the_latest_training_pairs(tmp_path: Path) -> None:
    store, when = _built_with_times(tmp_path, "split.method=time")
    train, val = training_split(store)
    t_train, t_val, t_test = ([when[k] for k in _keys(a)] for a in (train, val, store.splits["test"]))
    assert len(t_val) == round(0.2 * (len(t_train) + len(t_val)))
    assert max(t_train) < min(t_val) and max(t_val) < min(t_test)


def test_leave_last_out_validation_is_each_querys_latest_training_pairs(tmp_path: Path) -> None:
    store, when = _built_with_times(tmp_path, "split.method=leave_last_out")
    train, val = training_split(store)
    assert len(val)
    for q in np.unique(val[:, 0]):
        t_train, t_val, t_test = ([when[k] for k in _keys(a) if k[0] == q] for a in (train, val, store.splits["test"]))
        assert max(t_train) < min(t_val) and (not t_test or max(t_val) < min(t_test))


def test_validation_fraction_that_leaves_no_training_pairs_is_an_error(tmp_path: Path, runner: CliRunner) -> None:
    schema = _timed(tmp_path)
    r = runner.invoke(app, ["profile", str(schema), "--set", "split.validation_fraction=0.9999"])
    assert r.exit_code == 1 and "split.validation_fraction" in r.stderr


def test_toppop_topk_applies_every_exclusion_like_a_naive_loop() -> None:
    from sslkit.data.profile import seen_items, toppop_topk

    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=40)
    train = np.stack([rng.integers(0, 40, 300), rng.integers(0, 40, 300)], 1)
    queries = np.array([0, 3, 7, 39, 12])
    for item_to_item in (False, True):
        seen = seen_items(train, queries)
        got = toppop_topk(counts, queries, 10, item_to_item, exclude=seen)
        order = sorted(range(40), key=lambda j: (-counts[j], j))
        for row, q in enumerate(queries):
            banned = set(seen[1][seen[0][row]:seen[0][row + 1]].tolist()) | ({int(q)} if item_to_item else set())
            want = [j for j in order if j not in banned][:10]
            assert got[row].tolist() == want + [-1] * (10 - len(want))
    assert toppop_topk(counts, queries, 10, False).tolist() == [order[:10]] * len(queries)


@pytest.fixture(scope="module")
def users_run(tiny_dir: Path) -> Path:
    out = tiny_dir / "runs/users-seen"
    ok(CliRunner(), "-q", "train", tiny_dir / "schema_users.yaml", "--epochs", "2", "--batch-size", "128",
       "--set", "eval.exclude_seen=true", "--out", out)
    return out


def test_eval_exclude_seen_applies_to_toppop_too(users_run: Path, runner: CliRunner) -> None:
    """TopPopular is scored under the same exclusions as the models (it used to ignore exclude-seen)."""
    runs = {flag: json.loads(ok(runner, "eval", users_run, "--json", flag))["runs"][0]
            for flag in ("--include-seen", "--exclude-seen")}
    assert runs["--exclude-seen"]["toppop"] != runs["--include-seen"]["toppop"]
    assert runs["--exclude-seen"]["exclude_seen"] is True and runs["--include-seen"]["exclude_seen"] is False
    for r in runs.values():  # the options applied are recorded in eval.json
        assert {r["split"], r["index"], tuple(r["k"])} == {"test", "exact", (10, 50)} and r["pairs"] > 0


def test_training_validation_scores_like_eval_split_validation(users_run: Path, runner: CliRunner) -> None:
    """eval.exclude_seen holds in training's validation too; TopPopular of the same sample beside it."""
    summary = json.loads((users_run / "summary.json").read_text())["validation"]
    seen = json.loads(ok(runner, "eval", users_run, "--json", "--split", "validation"))["runs"][0]
    unseen = json.loads(ok(runner, "eval", users_run, "--json", "--split", "validation", "--include-seen"))["runs"][0]
    assert seen["exclude_seen"] is True and seen["queries"] <= 1000  # the sample is the whole validation split
    for k in (10, 50):
        assert summary[f"val_recall@{k}"] == pytest.approx(seen["metrics"][f"recall@{k}"], abs=1e-9)
        assert summary[f"val_toppop_recall@{k}"] == pytest.approx(seen["toppop"][f"recall@{k}"], abs=1e-12)
    assert seen["metrics"]["recall@50"] != unseen["metrics"]["recall@50"]


def test_eval_split_validation_without_a_validation_split_is_an_error(tiny_dir: Path, runner: CliRunner,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "noval"
    ok(runner, "-q", "train", tiny_dir / "schema.yaml", "--steps", "2", "--batch-size", "64",
       "--set", "split.validation_fraction=0", "--out", out)
    assert json.loads((out / "summary.json").read_text())["validation"] == {}
    r = runner.invoke(app, ["eval", str(out), "--split", "validation"])
    assert r.exit_code == 1 and "no validation pairs" in r.stderr
    r = runner.invoke(app, ["eval", str(out), "--split", "train"])
    assert r.exit_code == 2 and "--split" in r.stderr


def test_training_never_reads_the_test_split(data: Path) -> None:
    from sslkit.data.store import load_or_build
    from sslkit.training.train import train

    cfg = load_config(data / "schema.yaml", ["train.steps=2", "train.batch_size=64", "train.device=cpu",
                                             "model.hidden=[32, 16]", "model.embedding_dim=8"])
    store = load_or_build(cfg)
    a = train(cfg, store, run_dir=data / "a")
    store.splits["test"] = np.zeros((1, 2), np.int32)  # any test split: the same run
    b = train(cfg, store, run_dir=data / "b")
    assert a.validation == b.validation and a.validation["val_recall@50"] > 0
    assert all((x == y).all() for x, y in zip(_weights(data / "a"), _weights(data / "b")))


def _weights(run: Path) -> list[np.ndarray]:
    from sslkit.training.checkpoint import read_checkpoint

    return [v.numpy() for v in read_checkpoint(run)["model"].values()]


def test_train_warns_in_one_line_when_below_toppop(data: Path, runner: CliRunner) -> None:
    r = runner.invoke(app, ["-q", "train", str(data / "schema.yaml"), "--steps", "1", "--batch-size", "32",
                            "--lr", "0.00001", "--set", "train.logq_correction=false",  # the paper's eq. 6
                            "--out", str(data / "weak"), "--json"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads((data / "weak/summary.json").read_text())
    v = summary["validation"]
    assert v["val_recall@50"] < v["val_toppop_recall@50"] and json.loads(r.stdout)["val_toppop_recall@50"] > 0
    lines = [ln for ln in r.stderr.splitlines() if "below TopPopular" in ln]
    assert len(lines) == 1 and "train.logq_correction=true" in lines[0] and summary["warning"] in lines[0]


def test_below_toppop_names_cold_queries_when_most_validation_pairs_have_no_training_pairs(
        data: Path, runner: CliRunner) -> None:
    """Users split by group: every validation user is absent from training (cold)."""
    r = runner.invoke(app, ["-q", "train", str(data / "schema_users.yaml"), "--steps", "1", "--batch-size", "32",
                            "--lr", "0.00001", "--set", "split.group=user_id", "--out", str(data / "cold")])
    assert r.exit_code == 0, r.stderr
    warning = json.loads((data / "cold/summary.json").read_text())["warning"]
    assert "100% of the validation pairs come from queries with no training pairs" in warning
    assert "leave_last_out" in warning
    from sslkit.config import load_config
    from sslkit.training.train import below_toppop

    cfg = load_config(data / "schema_users.yaml")
    low = {"val_recall@50": 0.1, "val_toppop_recall@50": 0.2}
    assert "cold" not in below_toppop(low, cfg, cold_share=0.4)
    assert "51% of the validation pairs" in below_toppop(low, cfg, cold_share=0.51)
    assert below_toppop({"val_recall@50": 0.3, "val_toppop_recall@50": 0.2}, cfg, cold_share=1.0) is None


def test_eval_refuses_runs_scored_under_different_options() -> None:
    from sslkit.errors import ConfigError
    from sslkit.evaluation.evaluate import RunEval, check_same_options

    def run(name: str, seen: bool) -> RunEval:
        return RunEval(run=name, config={}, metrics={}, slices={}, per_query={}, queries=np.zeros(0),
                       extra={"split": "test", "index": "exact", "k": [10], "exclude_seen": seen})

    check_same_options([run("a", True), run("b", True)])
    with pytest.raises(ConfigError, match="exclude_seen .* pass --exclude-seen/--include-seen"):
        check_same_options([run("a", True), run("b", False)])


def test_recommend_exclude_seen_leaves_out_what_the_user_already_has(users_run: Path, tiny_dir: Path,
                                                                     runner: CliRunner) -> None:
    pairs = [ln.split(",") for ln in (tiny_dir / "data/user_pairs.csv").read_text().splitlines()[1:]]
    header = (tiny_dir / "data/user_pairs.csv").read_text().splitlines()[0].split(",")
    u, i = header.index("user_id"), header.index("item_id")
    has: dict[str, set[str]] = {}
    for p in pairs:
        has.setdefault(p[u], set()).add(p[i])
    user = max(has, key=lambda x: len(has[x]))  # the heaviest user: most to leave out
    new = '{"user_id": "new", "age": "25-34", "gender": "F", "occupation": "occ1", "zip": "123"}'
    answers = {}
    for flag in ("--include-seen", "--exclude-seen"):
        r = runner.invoke(app, ["-q", "recommend", str(users_run), "--k", "20", flag], input=f"{user}\n{new}\n")
        assert r.exit_code == 0, r.stderr
        answers[flag] = [json.loads(x) for x in r.stdout.splitlines()]
    before, after = answers["--include-seen"][0], answers["--exclude-seen"][0]
    assert set(before["items"]) & has[user]  # the bug: already-seen items come back
    assert len(after["items"]) == 20 and not set(after["items"]) & has[user]
    assert after["scores"] == sorted(after["scores"], reverse=True)
    assert answers["--exclude-seen"][1] == answers["--include-seen"][1]  # a feature row has no history
