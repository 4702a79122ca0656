"""`interactions.where` is data, not code: no file read, no URL contacted, no crash, one line.

The conditions come from shared schema files, so every refusal is checked to happen at validation,
before anything is evaluated, and never to echo what a refused construct would have read.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from sslkit.data.where import MAX_DEPTH, MAX_TERMS, WhereError, columns_of, parse, to_polars
from typer.testing import CliRunner

from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
MARKER = "sslkit-marker-6b1f0c"


def with_where(data: Path, where: str) -> Path:
    """`where.yaml` beside the dataset's schema: the schema with this `interactions.where`."""
    where_yaml = "'" + where.replace("'", "''") + "'"
    out = data / "where.yaml"
    out.write_text((data / "schema.yaml").read_text().replace(
        "  on_unknown_item: drop", f"  where: {where_yaml}\n  on_unknown_item: drop"))
    return out


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text(f"{MARKER}\n1\n")
    return path


@pytest.mark.parametrize("reader", ["read_csv", "read_parquet", "read_json", "read_ipc"])
def test_where_cannot_read_a_local_file(reader: str, data: Path, secret: Path) -> None:
    for where in (f"item_id IN (SELECT nosuch FROM {reader}('{secret}'))",
                  f"item_id = (SELECT {MARKER} FROM {reader}('{secret}'))",
                  f"{reader}('{secret}') IS NULL"):
        got, out, err = _run(data, where)
        assert got == 2, err
        assert MARKER not in out + err, err
        assert ("a subquery (SELECT) is not allowed" in err or f"the function '{reader}'" in err), err
    assert not (data / ".sslkit-cache").exists()


def _run(data: Path, where: str) -> tuple[int, str, str]:
    """`sslkit -q profile` on the schema with this `where`; stderr holds at most one line, never a traceback."""
    r = CliRunner().invoke(app, ["-q", "profile", str(with_where(data, where))])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr and len(lines) <= 1, r.stderr
    return r.exit_code, r.stdout, r.stderr


class Listener:
    """A TCP server on 127.0.0.1 that records whether anything connected (it answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.contacted = False
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.contacted = True
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=2)
        self.sock.close()


def test_where_cannot_contact_a_url(data: Path) -> None:
    server = Listener()
    try:
        url = f"http://127.0.0.1:{server.port}/pairs.csv"
        for where in (f"item_id IN (SELECT item_id FROM read_csv('{url}'))", f"read_parquet('{url}') IS NULL"):
            got, _, err = _run(data, where)
            assert got == 2 and ("is not allowed" in err), err
    finally:
        server.close()
    assert not server.contacted


def test_ten_thousand_or_terms_end_in_one_line_not_a_crash(data: Path) -> None:
    """Polars' SQL parser segfaulted on this (exit 139); the parser's caps end it at validation."""
    with_where(data, " OR ".join(f"item_id = 'i{i:06d}'" for i in range(10_000)))
    proc = subprocess.run([sys.executable, "-m", "sslkit", "-q", "profile", str(data / "where.yaml")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-500:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"more than {MAX_TERMS:,} parts" in lines[0], proc.stderr[-500:]


def test_a_long_in_list_is_one_flat_term(data: Path) -> None:
    ids = ", ".join(f"'i{i:06d}'" for i in range(0, 300, 2))
    got, _, err = _run(data, f"item_id IN ({ids}) OR ts < 0")
    assert got == 0, err


@pytest.mark.parametrize("where, message", [
    ("(" * (MAX_DEPTH + 5) + "ts > 1" + ")" * (MAX_DEPTH + 5), f"nested deeper than {MAX_DEPTH} levels"),
    ("NOT " * (MAX_DEPTH + 5) + "ts > 1", f"nested deeper than {MAX_DEPTH} levels"),
    ("ts" + " + 1" * (MAX_DEPTH + 5) + " > 0", f"nested deeper than {MAX_DEPTH} levels"),
    ("ts > 1 -- and more", "a comment ('--')"),
    ("ts > 1 /* x */", "a comment ('/*')"),
    ("ts > 1; SELECT 1", "';' (a second statement)"),
    ("ts IN (SELECT 1)", "a subquery (SELECT)"),
    ("EXISTS (SELECT 1)", "EXISTS is not allowed"),
    ("CASE WHEN ts > 1 THEN 1 END = 1", "CASE is not allowed"),
    ("ts = ANY(1)", "ANY is not allowed"),
    ("getenv('HOME') = 'x'", "the function 'getenv'"),
    ("ts > 1 FROM pairs", "FROM is not allowed"),
    ("title LIKE brand", "LIKE takes a quoted pattern"),
    ("ts IN (1, 'x')", "an IN list mixes text and numbers"),
    ("ts > 'unterminated", "an unterminated text value"),
])
def test_constructs_outside_the_grammar_are_named(where: str, message: str) -> None:
    with pytest.raises(WhereError) as e:
        parse(where)
    assert message in str(e.value) and "\n" not in str(e.value)


FRAME = pl.DataFrame({
    "a": [1, 2, 3, None], "s": ["x", "Y", "z%", None], "my col": [1, 1, 2, 2], "f": [1.5, 2.5, None, 4.0],
    "t": [dt.datetime(2020, 1, 1), dt.datetime(2021, 5, 1), None, dt.datetime(2019, 1, 1)]})


@pytest.mark.parametrize("where, rows", [
    ("a % 2 = 1", [0, 2]), ("a <> 1 AND a != 3", [1]), ("a == 1 OR a IS NULL", [0, 3]),
    ("NOT a = 1", [1, 2]), ("-a < -1", [1, 2]), ("a / 2 >= 1", [1, 2]), ("a * 2 + 1 = 5", [1]),
    ("s LIKE 'z%'", [2]), ("s LIKE 'z\\%'", []), ("s ILIKE 'y'", [1]), ("s NOT LIKE '_'", [2]),
    ("a IN (1, 3)", [0, 2]), ("a NOT IN (1, 3)", [1]), ("a BETWEEN 1 AND 2", [0, 1]),
    ("a NOT BETWEEN 2 AND 3", [0]), ("lower(s) = 'y'", [1]), ("upper(s) = 'X'", [0]), ("length(s) = 1", [0, 1]),
    ("CAST(a AS VARCHAR) = '1'", [0]), ("EXTRACT(year FROM t) = 2020", [0]), ("date_part('year', t) = 2020", [0]),
    ("year(t) >= 2020", [0, 1]), ("substr(s, 1, 1) = 'x'", [0]), ("a || 'x' = '1x'", [0]),
    ("\"my col\" = 2 AND NOT (a > 2)", []), ("coalesce(a, 0) = 0", [3]), ("round(f) = 2", [0, 1]),
    ("abs(-a) = 2", [1]), ("trim(' x ') = s", [0]), ("starts_with(s, 'z')", [2]), ("TRUE AND a = 2", [1]),
])
def test_allowed_conditions_select_the_right_rows(where: str, rows: list[int]) -> None:
    got = FRAME.with_row_index("_r").filter(to_polars(parse(where)))["_r"].to_list()
    assert got == rows


def test_columns_of_names_every_column_read() -> None:
    assert columns_of(parse("a > 1 AND (lower(\"my col\") = 'x' OR b IN (1, 2))")) == ["a", "my col", "b"]


def test_where_at_the_caps_is_shallow_and_fast_to_evaluate() -> None:
    """1,600 OR terms (4,800 parts, under the cap) become a balanced tree that Polars evaluates."""
    tree = parse(" OR ".join(f"a = {i}" for i in range(1_600)))
    assert FRAME.filter(to_polars(tree)).height == 3
