"""One checkpoint file per run: weights, optimizer state, progress, and the config that made it.

Saved atomically (bytes in memory, temp file, rename) and loaded with `weights_only=True`, so a
checkpoint can never run code. Later stages (`eval`, `embed`) need nothing but the run directory.
"""

from __future__ import annotations

import hashlib
import io as _bytes
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sslkit import NUMERICS_VERSION, __version__, source_revision

from sslkit.data import io
from sslkit.config import Config, dump_config
from sslkit.errors import CheckpointError

FORMAT = "sslkit-checkpoint"
VERSION = 1
FILE = "checkpoint.pt"


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
                    cfg: Config, progress: dict[str, Any], *, data: dict[str, str] | None = None) -> None:
    """Write `run_dir/checkpoint.pt` atomically, with a digest of its contents and the data pin
    (`sslkit.data.store.fingerprint` of the data it trains on)."""
    state = {"format": FORMAT, "version": VERSION, "sslkit": __version__, "model": model.state_dict(),
             "optimizers": [o.state_dict() for o in optimizers], "progress": progress,
             "config": dump_config(cfg), "data": data or {}}
    state["digest"] = state_digest(state)
    buf = _bytes.BytesIO()
    torch.save(state, buf)
    io.atomic_write_bytes(run_dir / FILE, buf.getvalue())


def read_checkpoint(run_dir: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and sanity-check a checkpoint (weights only, no code)."""
    path = Path(run_dir) / FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found", hint="pass a directory made by `sslkit train --out`")
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint in this run directory",
                              hint="train it first (`sslkit train SCHEMA --out RUN`)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbled files
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__})",
                              hint="the file is corrupt or not an sslkit checkpoint; retrain or restore it")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an sslkit checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state.get('version')} is not supported "
                              f"by sslkit {__version__} (expects {VERSION})")
    if not all(isinstance(state.get(k), dict) for k in ("model", "config", "progress")):
        raise CheckpointError(f"{path}: checkpoint lacks its model, config or progress", hint="retrain into a fresh --out")
    if "digest" in state and state_digest({k: v for k, v in state.items() if k != "digest"}) != state["digest"]:
        raise CheckpointError(f"{path}: checkpoint is damaged (its contents fail their checksum)",
                              hint="restore it from a backup, or retrain")
    return state


def state_digest(obj: Any) -> str:
    """blake2b over a checkpoint's contents: every tensor's dtype, shape and bytes, every other value's repr.

    Stored inside the checkpoint, so weights damaged on disk (same size, even with the zip CRCs
    left stale) are caught at load; costs one pass over the weights.
    """
    h = hashlib.blake2b(digest_size=16)
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.is_sparse:
            t = t.coalesce()
            _feed(h, ["sparse", t.indices(), t.values(), list(t.shape)])
            return
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
                    cfg: Config) -> dict[str, Any]:
    """Restore model and optimizer state for `--resume`; returns the saved progress."""
    state = read_checkpoint(run_dir)
    saved = state["config"]
    now = dump_config(cfg)
    for section in ("model", "interactions", "items", "queries", "split"):
        if saved.get(section) != now.get(section):
            raise CheckpointError(f"{run_dir}: cannot resume: '{section}' differs from the checkpoint's config",
                                  hint="resume with the same schema, or train into a new --out")
    load_state(model, state["model"], run_dir)
    try:
        for opt, opt_state in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{run_dir}: optimizer state does not match ({e})",
                              hint="resume with the same --optimizer and sslkit version that wrote it, "
                                   "or train into a new --out")
    return state["progress"]


def load_state(model: torch.nn.Module, weights: dict[str, Any], run_dir: Path) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{run_dir}: checkpoint does not fit this model ({first})",
                              hint="the schema or model settings changed since training")


def run_metadata(store: Any, argv: list[str] | None, device: torch.device, precision: str = "fp32") -> dict[str, Any]:
    """Provenance written into every run directory."""
    import numpy
    import polars
    import pydantic

    from sslkit.data.store import fingerprint

    return {"argv": argv or sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "feature_store": {"key": store.key, "path": str(store.path) if store.path else None},
            "data": fingerprint(store),
            "device": str(device), "precision": precision, "python": platform.python_version(),
            "numerics": NUMERICS_VERSION, "source": source_revision(),  # source: git commit or None
            "versions": {"sslkit": __version__, "torch": torch.__version__, "polars": polars.__version__,
                         "numpy": numpy.__version__, "pydantic": pydantic.__version__}}
