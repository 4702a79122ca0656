"""train.early_stopping: stops on a validation plateau, restores and records the best step, resumes, and
changes nothing when off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sslkit.config import load_config
from sslkit.data.store import load_or_build
from sslkit.errors import CheckpointError, ConfigError
from sslkit.study.spec import config_hash
from sslkit.training.checkpoint import read_checkpoint
from sslkit.training.train import Interrupted, train

FAST = ["train.batch_size=256", "train.device=cpu", "model.hidden=[16]", "train.eval_every=2",
        "train.eval_queries=100", "train.log_every=2"]
ES = ["train.early_stopping.patience=1", "train.early_stopping.min_delta=0.01"]


def setup(data: Path, *overrides: str):
    cfg = load_config(data / "schema.yaml", [*FAST, *overrides])
    return cfg, load_or_build(cfg)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run)["model"]


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_stops_early_restores_and_records_the_best_step(data: Path) -> None:
    cfg, store = setup(data, "train.steps=40", *ES)
    res = train(cfg, store, run_dir=data / "es")
    summary = json.loads((data / "es/summary.json").read_text())
    best, stopped = summary["best_step"], summary["stopped_step"]
    assert summary["stopped_early"] and best < stopped < 40 and res.steps == summary["steps"] == stopped
    assert stopped - best == 2  # patience 1: one round (eval_every 2) without a 0.01 rise
    log = lines(data / "es")
    rounds = {r["step"]: r for r in log if "val_recall@50" in r}
    assert rounds[best]["val_recall@50"] == summary["best_validation"]["recall@50"]
    assert rounds[stopped]["val_recall@50"] < rounds[best]["val_recall@50"] + 0.01
    assert summary["validation"] == {k: v for k, v in rounds[best].items() if k != "step"}
    event = [r for r in log if r.get("event") == "early_stopping"]
    assert len(event) == 1 and event[0]["step"] == stopped and event[0]["best_step"] == best
    # the saved model is the best step's, not the last: a run of exactly `best` steps without early stopping
    # holds the same weights and validates to the same number
    cfg_b, _ = setup(data, f"train.steps={best}")
    short = train(cfg_b, store, run_dir=data / "short")
    a, b = weights(data / "es"), weights(data / "short")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert short.validation["val_recall@50"] == summary["best_validation"]["recall@50"]
    # resuming a run that stopped early trains nothing more
    again = train(cfg, store, run_dir=data / "es", resume=True)
    assert again.steps == stopped and json.loads((data / "es/summary.json").read_text())["best_step"] == best
    assert all(torch.equal(a[k], v) for k, v in weights(data / "es").items())


def test_off_changes_nothing(data: Path) -> None:
    cfg, store = setup(data, "train.steps=6")
    train(cfg, store, run_dir=data / "absent")
    cfg0, _ = setup(data, "train.steps=6", "train.early_stopping.patience=0", "train.early_stopping.min_delta=0.5")
    train(cfg0, store, run_dir=data / "zero")
    strip = lambda run: [{k: v for k, v in r.items() if k != "examples_per_s"} for r in lines(run)]
    assert strip(data / "absent") == strip(data / "zero")
    a, b = weights(data / "absent"), weights(data / "zero")
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((data / "zero/summary.json").read_text())
    assert "best_step" not in summary and "early_stopping" not in read_checkpoint(data / "zero")["progress"]
    assert config_hash(cfg) == config_hash(cfg0)  # sweep cells keep their names while it is off
    assert config_hash(cfg) != config_hash(setup(data, "train.steps=6", *ES)[0])


def test_resume_mid_run_matches_an_uninterrupted_early_stopped_run(data: Path) -> None:
    cfg, store = setup(data, "train.steps=40", *ES)
    train(cfg, store, run_dir=data / "full")
    full = json.loads((data / "full/summary.json").read_text())
    calls = {"n": 0}

    def stop_after(n: int):
        def check() -> bool:
            calls["n"] += 1
            return calls["n"] > n
        return check

    with pytest.raises(Interrupted):  # after the best round was recorded, before the stop
        train(cfg, store, run_dir=data / "cut", should_stop=stop_after(full["best_step"] + 1))
    assert read_checkpoint(data / "cut")["progress"]["early_stopping"]["best_step"] == full["best_step"]
    train(cfg, store, run_dir=data / "cut", resume=True)
    cut = json.loads((data / "cut/summary.json").read_text())
    assert {k: cut[k] for k in ("best_step", "stopped_step", "best_validation", "validation")} == \
        {k: full[k] for k in ("best_step", "stopped_step", "best_validation", "validation")}
    a, b = weights(data / "full"), weights(data / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_that_ended_on_an_earlier_best_cannot_be_extended(data: Path) -> None:
    cfg, store = setup(data, "train.steps=8", "train.early_stopping.patience=50", "train.early_stopping.min_delta=0.9")
    train(cfg, store, run_dir=data / "r")  # never improves by 0.9: ends at 8 with step 2's weights
    summary = json.loads((data / "r/summary.json").read_text())
    assert (summary["best_step"], summary["stopped_step"], summary["stopped_early"]) == (2, 8, False)
    more, _ = setup(data, "train.steps=12", "train.early_stopping.patience=50", "train.early_stopping.min_delta=0.9")
    with pytest.raises(CheckpointError, match="cannot be continued"):
        train(more, store, run_dir=data / "r", resume=True)


def test_config_checks(data: Path) -> None:
    with pytest.raises(ConfigError, match="train.early_stopping.metric 'map@50' is not a validation metric"):
        load_config(data / "schema.yaml", ["train.early_stopping.patience=2", "train.early_stopping.metric=map@50"])
    with pytest.raises(ConfigError, match="needs a validation split"):
        load_config(data / "schema.yaml", ["train.early_stopping.patience=2", "split.validation_fraction=0"])
    cfg = load_config(data / "schema.yaml", ["train.early_stopping.patience=2", "train.early_stopping.metric=recall@10"])
    assert cfg.early_stopping_metric == "val_recall@10"
    assert load_config(data / "schema.yaml").early_stopping_metric == "val_recall@50"  # the largest eval.k


def test_cli_flag(data: Path, runner) -> None:
    from sslkit.cli import app

    out = data / "cli"
    res = runner.invoke(app, ["train", str(data / "schema.yaml"), "--steps", "6", "--early-stopping", "1",
                              "--set", "train.early_stopping.min_delta=0.9", *[x for s in FAST for x in ("--set", s)],
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["best_step"], summary["stopped_step"], summary["stopped_early"]) == (2, 4, True)
    assert json.loads((out / "config.json").read_text())["train"]["early_stopping"]["patience"] == 1


def test_two_ranks_stop_together_and_keep_the_best_step(data: Path) -> None:
    """Under torchrun rank 0 validates and decides; both ranks leave the loop at the same step (a rank that
    did not would hang the other), and the saved model is the best step's, as in one process."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    sets = [x for s in [*FAST, "train.early_stopping.min_delta=0.9"] for x in ("--set", s)]
    args = ["train", str(data / "schema.yaml"), "--steps", "8", "--early-stopping", "1", *sets, "--json"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sslkit", *args, "--out", str(data / "two"), "--nproc", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((data / "two/summary.json").read_text())
    assert (summary["best_step"], summary["stopped_step"], summary["stopped_early"]) == (2, 4, True)
    cfg, store = setup(data, "train.steps=2")
    train(cfg, store, run_dir=data / "one")
    a, b = weights(data / "two"), weights(data / "one")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
