"""Optional matplotlib plotting (the `plot` extra), imported lazily; figures are written atomically."""

from __future__ import annotations

import io
from typing import Any

from sslkit.errors import SslkitError
from sslkit.data.io import atomic_write_bytes


def figure(**kwargs: Any) -> tuple[Any, Any]:
    """A new (figure, axes) on the non-interactive Agg backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SslkitError("plotting needs matplotlib", hint="pip install 'sslkit[plot]'")
    return plt.subplots(**({"figsize": (6, 4)} | kwargs))


def save_figure(fig: Any, path: str) -> None:
    """Render to PNG in memory, then write atomically."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
