"""The command's process-wide malloc setting: a training step's freed tensors are reused, not faulted back in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
