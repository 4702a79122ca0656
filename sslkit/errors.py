"""Errors a user can cause. The library raises them; only `cli.py` turns them into exit codes.

Every message is one line that names the file and field/column at fault and, where there is one,
the fix (in the style of "Try --set split.test_fraction=0.2").
"""

from __future__ import annotations


class SslkitError(Exception):
    """Base class: a user-facing error. `exit_code` follows the CLI contract (DESIGN §6)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The single line shown to the user."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(SslkitError):
    """Invalid schema/config file, flag or `--set` override (usage error: exit 2)."""

    exit_code = 2


class SchemaError(SslkitError):
    """The data does not match the schema: missing column, wrong dtype."""


class DataError(SslkitError):
    """Bad or unusable data: empty file, null ids, duplicate ids, empty split, unknown ids."""


class CheckpointError(SslkitError):
    """A run directory or checkpoint is missing, corrupt or incompatible."""


class TrainingError(SslkitError):
    """Training could not continue (e.g. a non-finite loss)."""


class LockedError(SslkitError):
    """Another sslkit process is writing the same run directory."""


class DataChangedError(CheckpointError):
    """The data behind a run is not the data it was trained on (see `sslkit.data.store.fingerprint`)."""


class ResourceError(SslkitError):
    """The machine ran out of something: disk space, memory, permission to write."""
