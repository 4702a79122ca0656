"""Where and in what precision a run trains: device resolution and `train.precision`.

Below both the training loop and the torchrun launcher, which each need it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from sslkit.errors import TrainingError

if TYPE_CHECKING:
    from sslkit.config import Config


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device=cuda (--device cuda): no CUDA device is available",
                            hint="use --device cpu or auto")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """Does this CPU multiply bf16 in hardware (Intel AMX-BF16)? Read from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def uses_bf16(precision: str, device: torch.device, amx: bool | None = None) -> bool:
    """train.precision → bf16 autocast? auto = bf16 where the hardware has bf16 matmuls: CUDA, and CPUs
    with AMX (`amx`, default: this CPU); fp32 elsewhere, where bf16 would be emulated and slower."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and (cpu_has_amx_bf16() if amx is None else amx))


def training_precision(cfg: Config) -> str:
    """"fp32" or "bf16": what `train.precision` means for a run of `cfg` on this machine."""
    return "bf16" if uses_bf16(cfg.train.precision, resolve_device(cfg.train.device)) else "fp32"
