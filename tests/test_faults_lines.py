"""Every failure a user meets is one line naming the file or field and the fix — never "internal
error": damaged Parquet, real write errors that carry no filename, one bad NDJSON line among good
ones; warnings about dropped data survive -q; a CSV with another delimiter says so."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: object, stdin: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-q", *[str(a) for a in args]], input=stdin)
    return r.exit_code, r.stdout, r.stderr


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "internal error" not in stderr, stderr
    return " ".join(stderr.split())


@pytest.mark.parametrize("which", ["pairs", "items"])
def test_truncated_parquet_is_one_line(which: str, data: Path) -> None:
    ids = {"query_item": pl.String, "item_id": pl.String}
    src = data / f"data/{which}.csv"
    pl.read_csv(src, schema_overrides={k: v for k, v in ids.items()}).write_parquet(data / f"data/{which}.parquet")
    whole = (data / f"data/{which}.parquet").read_bytes()
    (data / f"data/{which}.parquet").write_bytes(whole[: len(whole) // 2])
    schema = data / "schema.yaml"
    schema.write_text(schema.read_text().replace(f"data/{which}.csv", f"data/{which}.parquet"))
    code, _, err = invoke("profile", schema)
    assert code == 1 and f"{which}.parquet: cannot read as parquet" in one_line(err), err


# --- write errors as the kernel gives them: no filename on the exception ----------------------

def test_disk_full_on_a_write_names_the_file(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ENOSPC from write() on an open file carries no filename ("Error: a file: …" before)."""
    from sslkit.data import io

    real = os.fdopen

    class Full:
        def __init__(self, fh):  # type: ignore[no-untyped-def]
            self.fh = fh

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fdopen", lambda fd, mode="r", *a, **k: Full(real(fd, mode, *a, **k)))
    code, _, err = invoke("train", data / "schema.yaml", "--steps", "2", "--batch-size", "256", "--out", data / "r")
    line = one_line(err)
    assert code == 1 and "no space left on the device" in line and "a file:" not in line, line
    assert str(data) in line


@pytest.fixture(scope="module")
def run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("lines") / "ds"
    shutil.copytree(tiny_dir, base, ignore=shutil.ignore_patterns(".sslkit-cache"))
    code, _, err = invoke("train", base / "schema.yaml", "--steps", "2", "--batch-size", "256", "--out", base / "run")
    assert code == 0, err
    return base


def test_file_too_large_names_the_file(run: Path, tmp_path: Path) -> None:
    """A real EFBIG (the process's file-size limit), in a subprocess: the message names the file."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384)); from sslkit.cli import app; "
            "sys.argv = ['sslkit'] + sys.argv[1:]; app()")
    out = tmp_path / "v.npy"
    proc = subprocess.run([sys.executable, "-c", code, "-q", "embed", str(run / "run"), "--format", "npy", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr[-400:]
    line = one_line(proc.stderr)
    assert f"{out}: file too large" in line and "ulimit -f" in line, line
    assert not out.exists() and not list(tmp_path.glob(".v.npy.*"))  # nothing half-written kept


def test_one_over_nested_ndjson_line_is_skipped_not_the_batch(run: Path) -> None:
    """`{"brand": [[[[…` 100,000 deep aborted the whole recommend batch (RecursionError)."""
    deep = '{"brand": ' + "[" * 100_000 + "]" * 100_000 + "}"
    nested = '{"brand": {"a": 1}}'
    code, out, err = invoke("recommend", run / "run", stdin="\n".join(["i000001", deep, nested, "i000002"]) + "\n")
    answered = [json.loads(line)["query"] for line in out.splitlines()]
    assert code == 1 and answered == ["i000001", "i000002"], err
    text = " ".join(err.split())
    assert "line 2: JSON nested too deeply to read" in text and "line 3: key 'brand' holds nested JSON" in text
    assert "2 input line(s) could not be answered" in text and "Traceback" not in err


def test_quiet_keeps_warnings_about_dropped_pairs(data: Path) -> None:
    pairs = data / "data/pairs.csv"
    pairs.write_text(pairs.read_text() + "i000001,not-an-item,7\n")
    code, _, err = invoke("profile", data / "schema.yaml")
    assert code == 0 and "warning:" in err and "dropped (interactions.on_unknown_item: drop)" in " ".join(err.split()), err


@pytest.mark.parametrize("sep, name", [(";", "';'"), ("\t", "a tab")])
def test_csv_with_another_delimiter_gets_a_hint(sep: str, name: str, data: Path) -> None:
    items = data / "data/items.csv"
    df = pl.read_csv(items, infer_schema=False)
    items.write_text(df.write_csv(separator=sep))
    code, _, err = invoke("profile", data / "schema.yaml")
    line = one_line(err)
    assert code == 1 and f"the file reads as one column whose header holds {name}" in line and ".tsv" in line, line
