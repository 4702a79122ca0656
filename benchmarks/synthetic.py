"""The synthetic data generator (`examples/synthetic/generate.py`) as a module, for the benchmarks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def generator() -> ModuleType:
    """`examples/synthetic/generate.py`, imported once (its `generate(out, preset=…, …)` writes a dataset)."""
    if "sslkit_synthetic_generate" not in sys.modules:
        spec = importlib.util.spec_from_file_location("sslkit_synthetic_generate", ROOT / "examples/synthetic/generate.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = mod  # type: ignore[union-attr]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return sys.modules["sslkit_synthetic_generate"]
