"""The command's process-wide malloc setting: a training step's freed tensors are reused, not faulted back in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sslkit import runtime
from sslkit.runtime import keep_freed_memory

PROBE = """
import resource, sys
import torch
from sslkit.config import load_config
from sslkit.runtime import keep_freed_memory
from sslkit.data.store import load_or_build
from sslkit.training.train import build_setup, train_step
if sys.argv[2] == "keep":
    assert keep_freed_memory()
cfg = load_config(sys.argv[1], ["model.hidden=[256,64]", "train.batch_size=512", "ssl.aug=rfm", "train.device=cpu"])
setup = build_setup(cfg, load_or_build(cfg, use_cache=False), None)
gen, rows = torch.Generator().manual_seed(0), torch.arange(512)
for step in range(30):
    if step == 10:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    train_step(setup, rows, gen)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_training_steps_stop_faulting_freed_memory_back_in(data: Path) -> None:
    def faults_per_step(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", PROBE, str(data / "schema.yaml"), mode],
                             capture_output=True, text=True, check=True)
        return float(out.stdout)

    default, kept = faults_per_step("default"), faults_per_step("keep")
    assert default > 50  # glibc's defaults hand megabyte blocks back to the kernel every step
    assert kept * 5 < default


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_keep_freed_memory_applies_on_glibc() -> None:
    assert keep_freed_memory() is True


# ---- threads and precision: chosen from the machine, overridable, recorded -------------------------


@pytest.mark.parametrize("flags, bf16", [({"avx2", "avx512f"}, False), ({"avx512f", "avx512_bf16"}, True),
                                         ({"amx_bf16", "amx_tile"}, True)])
def test_auto_precision_is_bf16_exactly_where_the_cpu_has_bf16(flags: set[str], bf16: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sslkit.training.device import cpu_bf16_flags, precision_record, uses_bf16

    monkeypatch.setattr(runtime, "cpu_info", lambda: ("Some CPU", frozenset(flags)))
    cpu = torch.device("cpu")
    assert uses_bf16("auto", cpu) is bf16
    assert cpu_bf16_flags() == sorted(flags & {"avx512_bf16", "amx_bf16"})
    assert uses_bf16("fp32", cpu) is False and uses_bf16("bf16", cpu) is True  # explicit settings win
    assert precision_record(bf16, cpu) == {"precision": "bf16" if bf16 else "fp32", "cpu": "Some CPU",
                                           "cpu_bf16_flags": cpu_bf16_flags()}


def test_threads_follow_the_setting_then_omp_num_threads_then_the_work_and_idle_cpus(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "usable_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert (runtime.choose_threads(2, 1e12).threads, runtime.choose_threads(2, 1e12).reason) == (2, "train.threads")
    assert (runtime.choose_threads(None, 1e12).threads, runtime.choose_threads(None, 1e12).reason) == (3, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    small = runtime.choose_threads(None, runtime.SMALL_STEP_FLOPS / 2)
    assert small.threads == 1 and small.reason.startswith("small model")
    for idle, threads in [(0.2, 1), (1.6, 2), (3.9, 4)]:
        monkeypatch.setattr(runtime, "free_cpus", lambda cpus, seconds=0.25, idle=idle: idle)
        choice = runtime.choose_threads(None, 1e12)
        assert choice.threads == threads and choice.to_json()["free_cpus"] == idle and choice.to_json()["usable_cpus"] == 4
    monkeypatch.setattr(runtime, "usable_cpus", lambda: [5])
    assert runtime.choose_threads(None, 1e12).threads == 1
    monkeypatch.setattr(runtime, "usable_cpus", lambda: list(range(64)))  # a container that sees 64 CPUs
    monkeypatch.setattr(runtime, "cpu_quota", lambda: 2.5)  # but may use 2.5 of them
    monkeypatch.setattr(runtime, "free_cpus", lambda cpus, seconds=0.25: float(len(cpus)))
    assert runtime.choose_threads(None, 1e12).threads == 2 and runtime.choose_threads(None, 1e12).usable_cpus == 2


def test_cgroup_cpu_quota_is_read(tmp_path: Path) -> None:
    (tmp_path / "limited").write_text("250000 100000\n")
    (tmp_path / "unlimited").write_text("max 100000\n")
    assert runtime.cpu_quota(str(tmp_path / "limited")) == 2.5
    assert runtime.cpu_quota(str(tmp_path / "unlimited")) is None
    assert runtime.cpu_quota(str(tmp_path / "missing")) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat")
def test_free_cpus_is_a_share_of_the_usable_cpus() -> None:
    cpus = runtime.usable_cpus()
    free = runtime.free_cpus(cpus, seconds=0.05)
    assert free is not None and 0 <= free <= len(cpus) + 1e-9


WAIT = "import os, sys; from sslkit import runtime; {pre}print(runtime.passive_wait_policy(), os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize("env, pre, expected", [({}, "", "PASSIVE PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "", "ACTIVE ACTIVE"),
                                                ({}, "import torch; ", "library default None")])
def test_passive_wait_policy_unless_the_user_set_one_or_torch_is_loaded(env: dict[str, str], pre: str,
                                                                        expected: str) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", WAIT.format(pre=pre)], capture_output=True, text=True, check=True,
                         env=base | env, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == expected


def test_run_json_records_threads_precision_and_the_cpu_flags(data: Path, tmp_path: Path) -> None:
    import torch
    from typer.testing import CliRunner

    from sslkit.cli import app
    from sslkit.training.device import cpu_bf16_flags

    before = torch.get_num_threads()
    try:
        r = CliRunner().invoke(app, ["train", str(data / "schema.yaml"), "--out", str(tmp_path / "run"), "--threads", "1",
                                     "--steps", "1", "--batch-size", "32", "--precision", "fp32"])
        assert r.exit_code == 0, r.stderr
        meta = json.loads((tmp_path / "run/run.json").read_text())
        assert meta["threads"]["threads"] == 1 and meta["threads"]["reason"] == "train.threads"
        assert meta["precision"] == meta["precision_choice"]["precision"] == "fp32"
        assert meta["precision_choice"]["cpu_bf16_flags"] == cpu_bf16_flags()
        assert "1 thread(s) (train.threads)" in " ".join(r.stderr.split()) and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
