"""Reading tables with Polars (CSV / Parquet / NDJSON, globs, '-' = stdin) and atomic writes.

No torch here. Every error names the file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import polars as pl

from sslkit.errors import DataError, LockedError, ResourceError

_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
               ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}


def infer_format(path: str, fmt: str | None = None) -> str:
    """The file format from an explicit setting or the extension (stdin defaults to CSV)."""
    if fmt:
        return fmt
    if path == "-":
        return "csv"
    ext = Path(path.replace("*", "x")).suffix.lower()
    if ext not in _EXTENSIONS:
        raise DataError(f"{path}: cannot tell the file format from '{ext or 'no extension'}'",
                        hint="set format: csv | parquet | ndjson")
    return _EXTENSIONS[ext]


def expand(path: str) -> list[str]:
    """The files a path or glob names (sorted); '-' is stdin."""
    if path == "-":
        return ["-"]
    if any(c in path for c in "*?["):
        files = sorted(glob.glob(path))
        if not files:
            raise DataError(f"{path}: no files match this pattern")
        return files
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found", hint="check the path (relative to the schema file)")
    return [path]


def read_table(path: str, fmt: str | None = None, *, strings: Iterable[str] = ()) -> pl.DataFrame:
    """Read a table eagerly (columns named in `strings` are read as text, so ids keep '007').

    Raises:
        DataError: missing/empty/unreadable file.
    """
    fmt = infer_format(path, fmt)
    files = expand(path)
    overrides = {c: pl.String for c in strings}
    try:
        if files == ["-"]:
            data = sys.stdin.buffer.read()
            if not data.strip():
                raise DataError("stdin: no data on standard input")
            df = _read_one(io.BytesIO(data), fmt, overrides)
        else:
            for f in files:
                if os.path.getsize(f) == 0:
                    raise DataError(f"{f}: file is empty")
            frames = [_read_one(f, fmt, overrides) for f in files]
            df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as {fmt}: {first}")
    if df.height == 0:
        raise DataError(f"{path}: no rows", hint="the file has a header but no data")
    return df


def _read_one(src: Any, fmt: str, overrides: dict[str, Any]) -> pl.DataFrame:
    if fmt == "csv":
        sep = "\t" if isinstance(src, str) and src.endswith(".tsv") else ","
        try:
            df = pl.read_csv(src, separator=sep, schema_overrides=overrides, infer_schema_length=10000)
        except pl.exceptions.ComputeError as e:
            if "more fields" in str(e):
                check_field_counts(src, sep)  # names the line
            raise
        if df.width > 1 and df[df.columns[-1]].null_count():  # a short row reads as nulls: find out
            check_field_counts(src, sep)
        return df
    if fmt == "parquet":
        df = pl.read_parquet(src)
    else:
        df = pl.read_ndjson(src, infer_schema_length=10000)
    casts = {c: pl.String for c in overrides if c in df.columns}
    return df.with_columns(pl.col(c).cast(t) for c, t in casts.items()) if casts else df


_FIELD_CHECK_MAX_BYTES = 1 << 29


def check_field_counts(src: Any, sep: str) -> None:
    """Raise DataError naming the first CSV record whose field count differs from the header's.

    Vectorized over the bytes (quotes respected: separators and newlines inside quotes do not
    count); blank lines are skipped as the reader skips them. Files over 512 MiB are not checked.

    Raises:
        DataError: "FILE: line N has X fields, the header has Y".
    """
    import numpy as np

    if isinstance(src, io.BytesIO):
        name, data = "stdin", src.getvalue()
    elif os.path.getsize(src) <= _FIELD_CHECK_MAX_BYTES:
        name, data = src, Path(src).read_bytes()
    else:
        return
    buf = np.frombuffer(data, np.uint8)
    inside = (np.cumsum(buf == ord('"'), dtype=np.int64 if len(buf) >= 2**31 else np.int32) & 1).astype(bool)
    ends = np.flatnonzero((buf == 10) & ~inside)
    if not len(ends) or ends[-1] != len(buf) - 1:
        ends = np.append(ends, len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1])
    fields = np.diff(np.searchsorted(np.flatnonzero((buf == ord(sep)) & ~inside), ends), prepend=0) + 1
    length = ends - starts
    last = buf[np.maximum(ends - 1, 0)] if len(buf) else np.zeros(0, np.uint8)
    blank = (length == 0) | ((length == 1) & (last == 13))
    bad = np.flatnonzero((fields != fields[0]) & ~blank)
    if len(bad):
        i = int(bad[0])
        line = int(np.count_nonzero(buf[: starts[i]] == 10)) + 1
        raise DataError(f"{name}: line {line} has {int(fields[i])} fields, the header has {int(fields[0])}",
                        hint="fix that row (an empty value is still a field: keep its separator)")


@contextlib.contextmanager
def named_errors(path: str | Path) -> Iterator[None]:
    """An OSError inside names `path` when it names no file: a write on an open file that hits a
    full disk (ENOSPC) or the file-size limit (EFBIG) carries no filename of its own."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers never see it half-written (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with named_errors(path), os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def dumps(obj: Any) -> str:
    """One-line JSON (numpy scalars and arrays allowed)."""
    return json.dumps(obj, default=_json_default)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def digest_bytes(data: bytes | memoryview) -> str:
    """Checksum of bytes (blake2b, 128-bit): cheap enough to verify every file sslkit trusts."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def digest_file(path: str | Path) -> str:
    """blake2b checksum of a file's bytes, read in 8 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


LOCK_FILE = ".lock"


@contextlib.contextmanager
def dir_lock(path: str | Path, *, name: str = LOCK_FILE, what: str = "run directory", wait: bool = False,
             on_wait: Any = None) -> Iterator[None]:
    """Hold an exclusive `flock` on `path/name` (created, with `path`, when missing).

    The kernel drops the lock when the process ends, also on kill -9, so a crashed writer never
    leaves a stale lock. With `wait`, block until the holder finishes (cache builds); else raise.
    A directory this call created is removed again if the body fails and left nothing but the lock.

    Raises:
        LockedError: another process holds the lock (and `wait` is false).
    """
    import fcntl

    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = path / name
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    ok = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if wait:
                if on_wait:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                raise LockedError(f"{path}: another sslkit process (pid {holder}) is writing this {what}",
                                  hint="wait for it to finish, or use another --out")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
        ok = True
    finally:
        if created and not ok and {p.name for p in path.iterdir()} <= {name}:
            lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.rmdir()
        os.close(fd)  # releases the flock


def os_error(e: OSError, *, doing: str = "") -> ResourceError | DataError:
    """One user-facing line for an OSError the machine caused (disk full, read-only, permissions)."""
    where = e.filename2 or e.filename or "a file"  # a rename names its destination second
    what = f" while {doing}" if doing else ""
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return ResourceError(f"{where}: no space left on the device{what}",
                             hint="free disk space (or point --out / cache_dir elsewhere) and rerun; "
                                  "nothing half-written was kept")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ResourceError(f"{where}: {e.strerror.lower() if e.strerror else 'not writable'}{what}",
                             hint="make it writable, or write elsewhere (--out, cache_dir)")
    if e.errno == errno.EFBIG:
        return ResourceError(f"{where}: file too large for this file system or the process's file-size limit{what}",
                             hint="write elsewhere (--out, cache_dir), or raise the limit (ulimit -f)")
    if e.errno == errno.EISDIR:
        return DataError(f"{where}: is a directory{what}", hint="give a file path")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return DataError(f"{where}: {e.strerror or 'not a directory'}{what}",
                         hint="a path component is a file; choose another path")
    if e.errno == errno.ENAMETOOLONG:
        return DataError(f"{str(where)[:80]}…: file name too long", hint="use a shorter name or --out")
    return ResourceError(f"{where}: {e.strerror or type(e).__name__}{what}")
