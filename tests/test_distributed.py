"""Data-parallel training (sslkit.training.distributed): 2 gloo processes on CPU equal one process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def _worker():
    spec = importlib.util.spec_from_file_location("distributed_worker", ROOT / "tests/distributed_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def torchrun(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                           *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def two_ranks(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Run the worker on 2 gloo ranks once; the single-process reference in this process."""
    out = tmp_path_factory.mktemp("dist")
    single = _worker().run_steps(tiny_dir / "schema.yaml", STEPS)  # also builds the store cache the ranks load
    proc = torchrun(2, str(ROOT / "tests/distributed_worker.py"), str(tiny_dir / "schema.yaml"), str(out), str(STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, single


@pytest.mark.parametrize("mode", ["all_reduce", "all_gather", "dense"])
def test_two_rank_step_equals_single_process_step(two_ranks: tuple[Path, dict], mode: str) -> None:
    out, single = two_ranks
    ranks = [torch.load(out / f"rank{r}-{mode}.pt", weights_only=True) for r in range(2)]
    for got in ranks:
        assert got["means"].keys() == single["means"].keys() >= {"loss", "main", "ssl", "ssl_top1", "ssl_dup_rate"}
        for key, value in single["means"].items():  # global means over the ranks = the one-process values
            assert got["means"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        for name, grad in single["grads"].items():  # averaged gradients, sparse tables included
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        for name, w in single["weights"].items():  # a few Adagrad steps later
            torch.testing.assert_close(got["weights"][name], w, rtol=1e-4, atol=1e-5, msg=name)
    for name in single["weights"]:  # the replicas never drift apart
        torch.testing.assert_close(ranks[0]["weights"][name], ranks[1]["weights"][name], rtol=0, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in single["grads"].values())


def test_ranks_that_disagree_fail_with_one_line(two_ranks: tuple[Path, dict]) -> None:
    out, _ = two_ranks
    for r in range(2):
        errors = json.loads((out / f"rank{r}-errors.json").read_text())
        assert errors["data"][0] == "TrainingError"
        assert errors["data"][1].startswith("ranks disagree on the feature store (schema sections + data files): rank 0 has ")
        assert errors["config"][1].startswith("ranks disagree on the training config")
        assert errors["batch"] == ["ConfigError", "train.batch_size=63 does not split over 2 ranks — use a multiple "
                                   "of 2 (a global batch is divided evenly between ranks)"]


def test_sigterm_on_two_ranks_saves_one_checkpoint_and_resumes_on_one(data: Path) -> None:
    """`sslkit train --nproc 2` stopped by SIGTERM: exit 130, one checkpoint, one metrics line per step;
    `--resume` in one process then ends where an uninterrupted one-process run ends."""
    import signal
    import time

    from typer.testing import CliRunner

    from sslkit.training.checkpoint import read_checkpoint
    from sslkit.cli import app

    sets = ["--set", "train.log_every=1", "--set", "model.hidden=[32,16]", "--set", "model.embedding_dim=8"]
    args = ["train", str(data / "schema.yaml"), "--aug", "cfm", "--batch-size", "64", "--device", "cpu", *sets]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sslkit", *args, "--steps", "100000", "--out", str(data / "cut"),
                             "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = data / "cut/metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stdout == ""
    step = read_checkpoint(data / "cut")["progress"]["step"]
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"loss"' in line]
    assert 3 <= step < 100000 and logged == list(range(1, step + 1))  # rank 0 alone wrote, up to the checkpoint
    assert "checkpoint saved" in stderr and stderr.count("stopped at step") == 1

    runner = CliRunner()
    resumed = runner.invoke(app, [*args, "--steps", str(step + 2), "--out", str(data / "cut"), "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    straight = runner.invoke(app, [*args, "--steps", str(step + 2), "--out", str(data / "one"), "--json"])
    assert straight.exit_code == 0, straight.output
    a, b = read_checkpoint(data / "cut")["model"], read_checkpoint(data / "one")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
