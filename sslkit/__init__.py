"""sslkit: two-tower retrieval with self-supervised feature masking for tabular data.

The package root imports nothing heavy (no torch, no hnswlib, no polars) so that
`sslkit --help` stays instant; the library functions live in their modules:

* `sslkit.config.load_config`  — YAML schema → validated `Config`
* `sslkit.data.store.load_store`    — Polars preprocessing → cached, memory-mapped `FeatureStore`
* `sslkit.data.profile.profile`     — dataset statistics
* `sslkit.data.mi.mutual_information` — pairwise MI between item features (drives CFM)
"""

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
