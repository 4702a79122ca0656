"""Where and in what precision a run trains: device resolution and `train.precision`.

Below both the training loop and the torchrun launcher, which each need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sslkit import runtime
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


def cpu_bf16_flags() -> list[str]:
    """The flags by which this CPU says it multiplies bf16 natively (avx512_bf16, amx_bf16), from /proc/cpuinfo."""
    flags = runtime.cpu_info()[1]
    return [f for f in runtime.BF16_FLAGS if f in flags]


def cpu_has_native_bf16() -> bool:
    """Does this CPU do bf16 arithmetic in hardware (AVX512-BF16: AMD Zen 4+, Intel Cooper Lake+; or AMX-BF16)?"""
    return bool(cpu_bf16_flags())


def uses_bf16(precision: str, device: torch.device, native: bool | None = None) -> bool:
    """train.precision → bf16 autocast? auto = bf16 where the hardware multiplies bf16: CUDA, and CPUs with
    avx512_bf16 or amx_bf16 (`native`, default: this CPU); fp32 elsewhere, where bf16 is emulated."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and (cpu_has_native_bf16() if native is None else native))


def precision_record(bf16: bool, device: torch.device) -> dict[str, object]:
    """What run.json records about the precision choice: the result and the CPU facts behind it."""
    model, _ = runtime.cpu_info()
    return {"precision": "bf16" if bf16 else "fp32", "cpu": model, "cpu_bf16_flags": cpu_bf16_flags()} | (
        {"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {})


def apply_threads(requested: int | None, step_flops: float | None, device: torch.device) -> runtime.Threads:
    """Choose the CPU threads (`runtime.choose_threads`) and give them to torch. On CUDA the CPU only
    feeds the device: the choice is still made and recorded, the same way."""
    choice = runtime.choose_threads(requested, step_flops)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice


def training_precision(cfg: Config) -> str:
    """"fp32" or "bf16": what `train.precision` means for a run of `cfg` on this machine."""
    return "bf16" if uses_bf16(cfg.train.precision, resolve_device(cfg.train.device)) else "fp32"
