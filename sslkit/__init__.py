"""sslkit: two-tower retrieval with self-supervised feature masking for tabular data.

The Python API, one call per stage (docs/api.md; each call's docstring states its contract)::

    import sslkit
    cfg = sslkit.load_config("schema.yaml", settings={"ssl.aug": "cfm"})
    store = sslkit.load_store(cfg)                  # also: sslkit.profile(cfg), sslkit.mi(cfg)
    sslkit.train(cfg, out="runs/cfm")
    sslkit.evaluate("runs/cfm").metrics             # also: sslkit.embed, sslkit.recommend, sslkit.run_study

The names load lazily (module `__getattr__`): `import sslkit` imports nothing heavy (no torch, no
hnswlib, no polars), so `sslkit --help` stays instant; a call imports its stage when it runs.
"""

from typing import Any

__version__ = "0.1.0"

# Bumped whenever training arithmetic changes, i.e. whenever the same config and seed could give
# different numbers. Sweep cells hash it (with __version__), so a cell trained by older arithmetic
# gets another name and is retrained, never mixed in; every run.json records it.
#   1  cells named before the constant existed (autograd backward, torch Adagrad)
#   2  closed-form softmax-CE / L2-normalize backward, fused dense Adagrad, in-place ReLU; SSL batch
#      without false negatives (drawn without replacement, accidental hits masked)
#   3  an SSL batch larger than the items it is drawn from is capped at their number (it was drawn
#      with replacement and its duplicates masked)
NUMERICS_VERSION = 3


def source_revision() -> dict[str, object] | None:
    """The git commit sslkit runs from, and whether its tracked files differ from it.

    Cheap (two git calls, 2 s timeout each) and never fails: None when sslkit is not in a git
    checkout (an installed wheel) or git is missing.
    """
    import subprocess
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=2,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))
    except Exception:  # no git, not a checkout, timeout: provenance is best effort
        return None
    return {"commit": commit, "dirty": dirty}


# The public API (docs/api.md): each name is imported from its module on first use. Not re-exported under
# TYPE_CHECKING: stage modules import this package root (for the versions), so it must not import them
# back (tests/test_layout.py); type checkers see the calls, fully typed, in `sslkit.api`.
__all__ = ["NUMERICS_VERSION", "SslkitError", "__version__", "embed", "evaluate", "init_schema", "load_config",
           "load_store", "mi", "profile", "recommend", "run_study", "train"]
_LAZY = {name: "sslkit.api" for name in __all__ if name[0].islower() and not name.startswith("__")}
_LAZY["SslkitError"] = "sslkit.errors"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sslkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
