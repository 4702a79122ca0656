"""The fault catalog: bad input, damaged files, changed data, concurrent writers, a full disk.

Every case asserts the exit code, that stderr is exactly one `Error:` line (no traceback, run with
`-q` so no log lines), and that the run directory / cache is unchanged or absent afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sslkit.data import io
from sslkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ("--steps", "2", "--batch-size", "256")


def invoke(*args: Any, stdin: bytes | str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-q", *[str(a) for a in args]], input=stdin)
    return r.exit_code, r.stdout, r.stderr


def one_line(err: str) -> str:
    """stderr is exactly one `Error:` line (what `-q` leaves of a failure), never a traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def fails(code: int, text: str, *args: Any, stdin: bytes | str | None = None) -> str:
    got, out, err = invoke(*args, stdin=stdin)
    assert got == code, (got, err)
    line = one_line(err)
    assert text in line, line
    return out


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (lock files aside) → content hash."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.fixture(scope="module")
def trained(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with its cache and a 2-step run in `run/` (copied per test by `ds`)."""
    base = tmp_path_factory.mktemp("faults") / "ds"
    shutil.copytree(tiny_dir, base, ignore=shutil.ignore_patterns(".sslkit-cache"))
    code, _, err = invoke("train", base / "schema.yaml", *TRAIN, "--out", base / "run")
    assert code == 0, err
    return base


@pytest.fixture()
def ds(trained: Path, tmp_path: Path) -> Path:
    """A private copy of `trained`; its run now reads the copy's data and cache (tests may break them)."""
    import torch

    from sslkit.training.checkpoint import state_digest

    dst = tmp_path / "ds"
    shutil.copytree(trained, dst, ignore=shutil.ignore_patterns(".sslkit-cache"))  # keyed by path: rebuilt here
    ck = dst / "run/checkpoint.pt"
    state = torch.load(ck, weights_only=True)
    state["config"]["base_dir"] = str(dst)
    state["digest"] = state_digest({k: v for k, v in state.items() if k != "digest"})
    torch.save(state, ck)
    return dst


def cache_entries(ds: Path) -> list[str]:
    root = ds / ".sslkit-cache"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.exists() else []


# ---------------------------------------------------------------------------------------------
# 1. schema files: encoding, YAML limits, silent acceptances → exit 2, nothing built

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

SCHEMA_CASES = [
    # id, transform of the schema text (str → str | bytes), expected text
    ("latin1-byte", lambda t: t.encode().replace(b"synthetic", b"synth\xe9tic"), "byte 0xe9 is not UTF-8 — save the file as UTF-8"),
    ("utf16-bom", lambda t: t.encode("utf-16"), "the file is UTF-16 encoded — save it as UTF-8"),
    ("nesting-bomb", lambda t: "[" * 900, "nested deeper than 64 levels"),
    ("billion-laughs", lambda t: BILLION_LAUGHS, "aliases expand to more than 100,000 values"),
    ("recursive-alias", lambda t: "a: &a [*a]\n", "an alias refers to the node that contains it"),
    ("duplicate-feature", lambda t: t.replace("    brand: {type: categorical}\n",
                                              "    brand: {type: categorical}\n    brand: {type: text}\n"),
     "duplicate key 'brand' at lines"),
    ("duplicate-section", lambda t: t + "items:\n  features: {x: {type: categorical}}\n", "duplicate key 'items' at lines"),
    ("epochs-true", lambda t: t + "train:\n  epochs: true\n", "train.epochs: expected a number, got true/false"),
    ("batch-false", lambda t: t + "train:\n  batch_size: false\n", "train.batch_size: expected a number"),
    ("hidden-bool", lambda t: t + "model:\n  hidden: [true, 4]\n", "model.hidden: expected a number"),
    ("lr-inf", lambda t: t + "train:\n  lr: .inf\n", "train.lr: Input should be a finite number"),
    ("alpha-nan", lambda t: t + "ssl:\n  alpha: .nan\n", "ssl.alpha: Input should be a finite number"),
    ("empty-separator", lambda t: t.replace('separator: "|"', 'separator: ""'), "'separator' must not be empty"),
    ("time-split-no-time", lambda t: t.replace("  time: ts", "").replace("method: random", "method: time"),
     "split.method: time needs interactions.time"),
    ("top-level-list", lambda t: "- a\n- b\n", "expected a mapping of sections at the top level"),
    ("python-tag", lambda t: "name: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    ("two-documents", lambda t: t + "---\nname: x\n", "but found another document"),
    ("too-large", lambda t: t + "#" * (1 << 20), "schema file is larger than 1024 KiB"),
    ("empty", lambda t: "", "schema file is empty"),
    ("tab-indent", lambda t: "name: x\n\titems: 1\n", "found character '\\t' that cannot start any token"),
]


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_file_faults(case: tuple, data: Path) -> None:
    _, transform, text = case
    schema = data / "schema.yaml"
    new = transform(schema.read_text())
    schema.write_bytes(new if isinstance(new, bytes) else new.encode())
    fails(2, text, "profile", schema)
    assert not (data / ".sslkit-cache").exists()


SET_CASES = [
    ("set-epochs-bool", ["--set", "train.epochs=true"], "--set: train.epochs: expected a number"),
    ("set-lr-inf", ["--set", "train.lr=.inf"], "--set: train.lr: Input should be a finite number"),
    ("set-bad-yaml", ["--set", "model.hidden=[1,"], "--set model.hidden: cannot parse value"),
    ("set-nesting-bomb", ["--set", "name=" + "[" * 500], "--set name: cannot parse value"),
    ("flag-lr-nan", ["--lr", "nan"], "--lr: train.lr: Input should be a finite number"),
]


@pytest.mark.parametrize("case", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_override_faults(case: tuple, data: Path) -> None:
    _, args, text = case
    fails(2, text, "train", data / "schema.yaml", *args, "--out", data / "r")
    assert not (data / "r").exists() and not (data / ".sslkit-cache").exists()


def test_schema_is_a_directory(tmp_path: Path) -> None:
    fails(2, "cannot read schema file (Is a directory)", "profile", tmp_path)


# ---------------------------------------------------------------------------------------------
# 2. data files → exit 1, one line naming the file and the line/column

def test_csv_row_with_too_few_fields(data: Path) -> None:
    items = data / "data/items.csv"
    lines = items.read_text().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:6])
    items.write_text("\n".join(lines) + "\n")
    fails(1, "items.csv: line 6 has 6 fields, the header has 8", "profile", data / "schema.yaml")


def test_csv_row_with_too_many_fields_names_the_line(data: Path) -> None:
    items = data / "data/items.csv"
    lines = items.read_text().splitlines()
    lines[9] += ",extra"
    items.write_text("\n".join(lines) + "\n")
    fails(1, "items.csv: line 10 has 9 fields, the header has 8", "profile", data / "schema.yaml")


def test_quoted_separators_are_not_fields() -> None:
    from sslkit.data.io import check_field_counts
    import io as _io

    check_field_counts(_io.BytesIO(b'a,b,c\n"x,\ny",2,3\n\n4,5,6\n'), ",")  # no error: quotes hold the comma and newline
    with pytest.raises(Exception, match="stdin: line 5 has 2 fields"):
        check_field_counts(_io.BytesIO(b'a,b,c\n"x,\ny",2,3\n\n4,5\n'), ",")


def test_all_null_numeric_column(data: Path) -> None:
    items = data / "data/items.csv"
    rows = [ln.split(",") for ln in items.read_text().splitlines()]
    year = rows[0].index("year")
    items.write_text("\n".join(",".join(r[:year] + [""] + r[year + 1:]) if i else ",".join(r)
                               for i, r in enumerate(rows)) + "\n")
    fails(1, "column 'year' (items.features.year) is empty (every value is null)", "profile", data / "schema.yaml")


def test_inf_in_dense_numeric_column(data: Path) -> None:
    edit(data / "schema.yaml", "price: {type: numeric, buckets: 10}", "price: {type: numeric, dense: true}")
    items = data / "data/items.csv"
    lines = items.read_text().splitlines()
    cells = lines[3].split(",")
    price = lines[0].split(",").index("price")
    cells[price] = "inf"
    lines[3] = ",".join(cells)
    items.write_text("\n".join(lines) + "\n")
    fails(1, "column 'price' (items.features.price) holds 1 non-finite value(s) (inf/NaN), e.g. row 3",
          "train", data / "schema.yaml", *TRAIN, "--out", data / "r")
    assert not (data / "r").exists()


def test_stdin_with_a_short_row(data: Path) -> None:
    edit(data / "schema.yaml", "path: data/pairs.csv", "path: '-'")
    text = (data / "data/pairs.csv").read_text().splitlines()
    text[3] = text[3].split(",")[0]
    fails(1, "stdin: line 4 has 1 fields, the header has 3", "profile", data / "schema.yaml", stdin="\n".join(text) + "\n")


# ---------------------------------------------------------------------------------------------
# 3. a run is pinned to its data

def reorder_pairs(ds: Path) -> None:
    pairs = ds / "data/pairs.csv"
    head, *rows = pairs.read_text().splitlines()
    pairs.write_text("\n".join([head, *rows[::-1]]) + "\n")  # the same pairs, another order: another split


@pytest.mark.parametrize("cmd", ["eval", "embed", "recommend"])
def test_reordered_pairs_are_refused(cmd: str, ds: Path) -> None:
    reorder_pairs(ds)
    before = snapshot(ds / "run")
    out = fails(1, "run: the data changed since training: the test split, the train split", cmd, ds / "run",
                stdin="i000001\n")
    assert out == "" and snapshot(ds / "run") == before


def test_changed_item_values_are_refused_then_allowed(ds: Path) -> None:
    items = ds / "data/items.csv"
    items.write_text(items.read_text().replace("brand001,", "brandX,"))
    fails(1, "the items (ids or features)", "embed", ds / "run")
    code, out, err = invoke("embed", ds / "run", "--allow-data-change")
    assert code == 0 and "WARNING" in err and "data changed since training" in err
    assert len(out.splitlines()) == 300


def test_eval_with_allow_data_change_warns(ds: Path) -> None:
    reorder_pairs(ds)
    code, out, err = invoke("eval", ds / "run", "--allow-data-change", "--json")
    assert code == 0 and "WARNING" in err and "the test split" in err
    assert json.loads(out)["runs"][0]["metrics"]


def test_resume_on_changed_data_is_refused_before_writing(ds: Path) -> None:
    reorder_pairs(ds)
    before = snapshot(ds / "run")
    fails(1, "cannot resume: the data changed since this run started (the test split",
          "train", ds / "schema.yaml", "--steps", "4", "--batch-size", "256", "--out", ds / "run", "--resume")
    assert snapshot(ds / "run") == before


def test_vocabs_json_edited_is_caught(ds: Path) -> None:
    vocabs = ds / "run/vocabs.json"
    obj = json.loads(vocabs.read_text())
    feat = next(iter(obj["items"]))
    vocabs.write_text(json.dumps({"items": {**obj["items"], feat: obj["items"][feat]}}, indent=1).replace("i000001", "i999999"))
    fails(1, "vocabs.json: does not match the checkpoint (items vocabularies differ)", "eval", ds / "run")


def test_run_json_records_the_pin(trained: Path) -> None:
    run = json.loads((trained / "run/run.json").read_text())
    assert {"split.train", "split.test", "items", "vocab.items"} <= set(run["data"])
    assert run["feature_store"]["key"] in cache_entries(trained)


# ---------------------------------------------------------------------------------------------
# 4. checksums: damaged checkpoints, caches and derived files

def damage_checkpoint(path: Path) -> None:
    """Flip bytes inside a tensor's data, same size, zip CRCs left stale."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[start:start + 8] = bytes(b ^ 0xFF for b in raw[start:start + 8])
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("cmd", ["eval", "embed", "recommend"])
def test_damaged_checkpoint_is_refused(cmd: str, ds: Path) -> None:
    damage_checkpoint(ds / "run/checkpoint.pt")
    fails(1, "checkpoint.pt: checkpoint is damaged (its contents fail their checksum) — restore it",
          cmd, ds / "run", *(["--queries", "-"] if cmd == "recommend" else []), stdin="i000001\n")


def test_damaged_checkpoint_refused_on_resume(ds: Path) -> None:
    damage_checkpoint(ds / "run/checkpoint.pt")
    before = snapshot(ds / "run")
    fails(1, "fail their checksum", "train", ds / "schema.yaml", "--steps", "4", "--batch-size", "256",
          "--out", ds / "run", "--resume")
    assert snapshot(ds / "run") == before


def test_truncated_checkpoint(ds: Path) -> None:
    ck = ds / "run/checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    fails(1, "cannot read checkpoint", "eval", ds / "run")


def entry(ds: Path) -> Path:
    (name,) = cache_entries(ds)
    return ds / ".sslkit-cache" / name


CACHE_DAMAGE = {
    "test-split-replaced-by-train-rows": lambda e: np.save(e / "split.test.npy", np.load(e / "split.train.npy")[:400]),
    "meta-json-wrong-structure": lambda e: (e / "meta.json").write_text("[1, 2, 3]"),
    "meta-json-missing-keys": lambda e: (e / "meta.json").write_text(json.dumps({"format_version": 2})),
    "items-npy-truncated": lambda e: (e / "items.ids.npy").write_bytes((e / "items.ids.npy").read_bytes()[:200]),
    "object-dtype-npy": lambda e: np.save(e / "split.test.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "out-of-range-ids": lambda e: np.save(e / "split.test.npy", np.load(e / "split.test.npy") + 10_000),
    "feature-ids-flipped": lambda e: np.save(e / "items.f.brand.npy", np.load(e / "items.f.brand.npy")[::-1].copy()),
    "file-deleted": lambda e: (e / "items.f.brand.npy").unlink(),
}


@pytest.mark.parametrize("name", list(CACHE_DAMAGE))
def test_damaged_cache_is_reported_and_rebuilt(name: str, data: Path) -> None:
    from sslkit.config import load_config
    from sslkit.data.store import fingerprint, load_or_build

    cfg = load_config(data / "schema.yaml")
    want = fingerprint(load_or_build(cfg))
    CACHE_DAMAGE[name](entry(data))
    logged: list[str] = []
    store = load_or_build(cfg, log=logged.append)
    assert any("is damaged (" in m and m.endswith("rebuilding it") for m in logged), logged
    assert fingerprint(store) == want  # rebuilt from the data: the same split, the same encoding
    logged.clear()
    assert fingerprint(load_or_build(cfg, log=logged.append)) == want and not any("is damaged (" in m for m in logged)


def test_damaged_stdin_store_is_an_error(data: Path) -> None:
    edit(data / "schema.yaml", "path: data/pairs.csv", "path: '-'")
    pairs = (data / "data/pairs.csv").read_text()
    code, _, err = invoke("train", data / "schema.yaml", *TRAIN, "--out", data / "r", stdin=pairs)
    assert code == 0, err
    np.save(entry(data) / "split.test.npy", np.load(entry(data) / "split.train.npy")[:100])
    fails(1, "trained from standard input, and the feature store cached then is gone or damaged", "eval", data / "r")


def test_rotated_ids_file_is_not_trusted(ds: Path) -> None:
    (ds / "q.txt").write_text("i000001\ni000002\n")
    code, first, err = invoke("recommend", ds / "run", "--queries", ds / "q.txt")
    assert code == 0, err
    ids = ds / "run/items.npy.ids.ndjson"
    lines = ids.read_text().splitlines()
    ids.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # the same size, shifted by one
    code, again, err = invoke("recommend", ds / "run", "--queries", ds / "q.txt")
    assert code == 0 and again == first
    assert ids.read_text().splitlines() == lines  # recomputed and rewritten


# ---------------------------------------------------------------------------------------------
# 5. --resume means the same run

RESUME_CASES = [  # the value before → is the run's (a default): only the key and the new value are pinned
    ("aug", ["--aug", "so"], ('ssl.aug "', '" → "so"')),
    ("lr", ["--lr", "0.02"], ("train.lr ", " → 0.02")),
    ("batch-size", ["--batch-size", "128"], ("train.batch_size 256", " → 128")),
    ("seed", ["--seed", "3"], ("train.seed ", " → 3")),
    ("hidden", ["--set", "model.hidden=[32,16]"], ("model.hidden ", " → [32, 16]")),
    ("split", ["--set", "split.test_fraction=0.2"], ("split.test_fraction ", " → 0.2")),
]


@pytest.mark.parametrize("case", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resume_with_other_settings_is_refused(case: tuple, ds: Path) -> None:
    _, args, text = case
    before = snapshot(ds / "run")
    base = ["--steps", "4", "--batch-size", "256"]
    flags = [a for a in base if not (args[0] == "--batch-size" and a in ("--batch-size", "256"))]
    code, _, err = invoke("train", ds / "schema.yaml", *flags, *args, "--out", ds / "run", "--resume")
    line = one_line(err)
    assert code == 1 and "only --steps/--epochs may change" in line
    assert "run: cannot resume with different settings: " + text[0] in line and text[1] in line, line
    assert snapshot(ds / "run") == before  # config.json, run.json, checkpoint untouched


def test_resume_may_extend_the_run(ds: Path) -> None:
    code, out, err = invoke("train", ds / "schema.yaml", "--steps", "4", "--batch-size", "256", "--out", ds / "run",
                            "--resume", "--json")
    assert code == 0, err and json.loads(out)["steps"] == 4
    assert json.loads((ds / "run/config.json").read_text())["train"]["steps"] == 4


# ---------------------------------------------------------------------------------------------
# 6. one writer per run directory and per cache entry

def test_second_writer_is_refused(ds: Path) -> None:
    before = snapshot(ds / "run")
    with io.dir_lock(ds / "run"):
        fails(1, f"pid {os.getpid()}) is writing this run directory", "train", ds / "schema.yaml", *TRAIN,
              "--out", ds / "run", "--overwrite")
    assert snapshot(ds / "run") == before


def test_lock_of_a_killed_writer_is_released(tmp_path: Path) -> None:
    code = "import sys, time; from sslkit.data import io\nwith io.dir_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match="another sslkit process"):
        with io.dir_lock(tmp_path / "run"):
            pass
    p.kill()  # kill -9: no cleanup ran, the kernel dropped the lock
    p.wait()
    with io.dir_lock(tmp_path / "run"):
        pass


def test_failed_first_train_leaves_no_directory(data: Path) -> None:
    edit(data / "schema.yaml", "path: data/items.csv", "path: data/missing.csv")
    fails(1, "missing.csv: file not found", "train", data / "schema.yaml", *TRAIN, "--out", data / "r")
    assert not (data / "r").exists()


def test_concurrent_builds_of_one_cache_entry_all_succeed(data: Path) -> None:
    code = ("import sys; from sslkit.config import load_config; from sslkit.data.store import load_or_build\n"
            "s = load_or_build(load_config(sys.argv[1])); print(s.key, len(s.splits['test']))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(data / "schema.yaml")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-300:] for o in outs]
    assert len({o[0] for o in outs}) == 1  # one key, the same split for all
    assert len(cache_entries(data)) == 1
    assert not [p for p in (data / ".sslkit-cache").iterdir() if p.name.startswith(".") and p.is_dir()]  # no temp dirs


def test_replacing_an_existing_entry_is_atomic(data: Path) -> None:
    from sslkit.config import load_config
    from sslkit.data.store import load, load_or_build, save

    store = load_or_build(load_config(data / "schema.yaml"))
    assert store.path is not None
    save(store, store.path)  # over an existing, non-empty entry (was: OSError Directory not empty)
    assert np.array_equal(np.asarray(load(store.path).splits["test"]), np.asarray(store.splits["test"]))


# ---------------------------------------------------------------------------------------------
# 7. --out, run names

def test_out_is_a_file_checked_before_the_store_build(data: Path) -> None:
    (data / "afile").write_text("x")
    fails(1, "afile: is a file, not a directory — choose another --out", "train", data / "schema.yaml", "--out", data / "afile")
    fails(1, "lies under", "train", data / "schema.yaml", "--out", data / "afile/sub/run")
    assert not (data / ".sslkit-cache").exists()  # refused before any work


@pytest.mark.parametrize("name,want", [("../../x", "x-none-s0"), ("a" * 300, "a" * 64 + "-none-s0"),
                                       ("/etc/passwd", "etc_passwd-none-s0"), ("..", "dataset-none-s0")])
def test_default_run_name_is_sanitized(name: str, want: str) -> None:
    from sslkit.cli import default_run_name

    assert default_run_name(name, "none", 0) == want


def test_dotdot_name_trains_inside_runs(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(data / "schema.yaml", "name: synthetic", "name: ../../escaped")
    monkeypatch.chdir(data)
    code, _, err = invoke("train", "schema.yaml", *TRAIN)
    assert code == 0, err
    assert (data / "runs/escaped-none-s0/checkpoint.pt").exists() and not (data.parent / "escaped-none-s0").exists()


# ---------------------------------------------------------------------------------------------
# 8. the machine: full disk, read-only directories, memory

def enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "/full/disk/file")


def test_disk_full_while_training(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslkit.training import checkpoint

    monkeypatch.setattr(checkpoint.io, "atomic_write_bytes", enospc)
    fails(1, "/full/disk/file: no space left on the device — free disk space", "train", data / "schema.yaml",
          *TRAIN, "--out", data / "r")


def test_disk_full_while_building_the_cache(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.data.store

    monkeypatch.setattr(sslkit.data.store.np, "save", enospc)
    fails(1, "no space left on the device", "profile", data / "schema.yaml")
    assert cache_entries(data) == []  # no half-written entry


def test_disk_full_while_writing_embed_out(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.retrieval.embed

    monkeypatch.setattr(sslkit.retrieval.embed.io, "atomic_write_bytes", enospc)
    fails(1, "no space left on the device", "embed", ds / "run", "--out", ds / "v.parquet", "--format", "parquet")
    assert not (ds / "v.parquet").exists()


def test_real_atomic_write_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd: int, mode: str) -> None:
            self.fh = real_fdopen(fd, mode)

        def __enter__(self) -> "Full":
            return self

        def __exit__(self, *a: Any) -> None:
            self.fh.close()

        def write(self, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fdopen", Full)
    with pytest.raises(OSError):
        io.atomic_write_bytes(tmp_path / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def erofs(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.EROFS, "Read-only file system", "/ro/run/file")


def test_eval_in_a_read_only_run_dir_still_answers(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.evaluation.evaluate

    assert invoke("profile", ds / "schema.yaml")[0] == 0  # the cache exists; the run directory is what is read-only
    monkeypatch.setattr(sslkit.evaluation.evaluate.io, "write_json", erofs)
    code, out, err = invoke("eval", ds / "run", "--json")
    assert code == 0, err and json.loads(out)["runs"][0]["metrics"]


def test_recommend_in_a_read_only_run_dir_still_answers(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.retrieval.embed

    assert invoke("profile", ds / "schema.yaml")[0] == 0
    monkeypatch.setattr(sslkit.retrieval.embed.io, "atomic_write_bytes", erofs)
    monkeypatch.setattr(sslkit.retrieval.embed.io, "write_json", erofs)
    code, out, err = invoke("recommend", ds / "run", "--k", "3", stdin="i000001\n")
    assert code == 0, err
    assert len(json.loads(out)["items"]) == 3


def test_read_only_run_dir_on_train(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.training.train

    monkeypatch.setattr(sslkit.training.train.io, "write_json", erofs)
    fails(1, "/ro/run/file: read-only file system — make it writable, or write elsewhere", "train",
          data / "schema.yaml", *TRAIN, "--out", data / "r")


def test_huge_hidden_layer_is_refused_before_allocating(data: Path) -> None:
    fails(1, "model.hidden=[4000000000], model.embedding_dim=32: the model would need about", "train",
          data / "schema.yaml", *TRAIN, "--set", "model.hidden=[4000000000]", "--out", data / "r")
    assert not (data / "r").exists()


def test_out_of_memory_is_one_line(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.data.profile

    def oom(*a: Any, **k: Any) -> None:
        raise MemoryError()

    monkeypatch.setattr(sslkit.data.profile, "profile", oom)
    fails(1, "out of memory — use smaller settings", "profile", data / "schema.yaml")


def test_unexpected_exception_is_one_line_naming_a_bug(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.data.profile

    def bug(*a: Any, **k: Any) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(sslkit.data.profile, "profile", bug)
    fails(1, "internal error (ZeroDivisionError: division by zero) — this is a bug in sslkit", "profile", data / "schema.yaml")


# ---------------------------------------------------------------------------------------------
# 9. the MI file

MI_CASES = [
    ("json-list", "[1, 2]", "not an MI file"),
    ("unknown-feature", None, "its features do not match this schema's item features (unknown: nope)"),
    ("not-json", "{mask_sets", "cannot read MI JSON"),
    ("sets-not-lists", '{"mask_sets": {"brand": "brand"}}', "not an MI file"),
]


@pytest.mark.parametrize("case", MI_CASES, ids=[c[0] for c in MI_CASES])
def test_malformed_mi_file(case: tuple, data: Path) -> None:
    _, text, msg = case
    mi = data / "mi.json"
    if text is None:
        feats = ["item_id", "category", "subcategory", "brand", "tags", "title", "price", "year"]
        text = json.dumps({"mask_sets": {f: [f, "nope"] for f in feats}})
    mi.write_text(text)
    fails(2, msg, "train", data / "schema.yaml", *TRAIN, "--aug", "cfm", "--mi", mi, "--out", data / "r")
    assert not (data / "r").exists()


# ---------------------------------------------------------------------------------------------
# 10. recommend: hostile input stays bounded and the good lines are answered

def test_invalid_utf8_lines_are_reported_by_number(ds: Path) -> None:
    code, out, err = invoke("recommend", ds / "run", "--k", "2", stdin=b"i000001\ncaf\xe9\ni000002\n")
    assert code == 1
    assert [json.loads(ln)["query"] for ln in out.splitlines()] == ["i000001", "i000002"]
    assert "line 2: not valid UTF-8 (byte 0xe9 at position 4)" in err and "Traceback" not in err


def test_megabyte_line_is_skipped_and_not_echoed(ds: Path) -> None:
    code, out, err = invoke("recommend", ds / "run", "--k", "2", stdin=b"x" * (2 << 20) + b"\ni000001\n")
    assert code == 1 and len(out.splitlines()) == 1
    assert "line 1: longer than 1024 KiB; skipped" in err and len(err) < 1000


def test_long_id_is_capped_and_echo_clipped(ds: Path) -> None:
    code, out, err = invoke("recommend", ds / "run", "--k", "2", stdin="y" * 5000 + "\n" + "z" * 500 + "\ni000001\n")
    assert code == 1 and len(out.splitlines()) == 1
    assert "line 1: an id of 5,000 characters" in err and "ids are at most 1024" in err
    assert "line 2: unknown item id 'zzzz" in err and "z" * 100 not in err


def test_broken_pipe_keeps_the_failure_status(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.retrieval.recommend

    def fake(run: Any, source: str, k: int, *, write: Any, warn: Any, **kw: Any) -> int:
        warn("line 1: unknown item id 'nope'")
        raise BrokenPipeError()

    monkeypatch.setattr(sslkit.retrieval.recommend, "recommend_lines", fake)
    code, _, _ = invoke("recommend", ds / "run")
    assert code == 1


def test_broken_pipe_without_failures_is_success(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.retrieval.recommend

    def fake(run: Any, source: str, k: int, *, write: Any, warn: Any, **kw: Any) -> int:
        raise BrokenPipeError()

    monkeypatch.setattr(sslkit.retrieval.recommend, "recommend_lines", fake)
    assert invoke("recommend", ds / "run")[0] == 0


def test_one_item_catalog_has_nothing_to_recommend(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.retrieval.recommend

    real = sslkit.retrieval.recommend.load_index

    def one_item(run: Any, log: Any, kind: str = "hnsw") -> Any:
        ids, vectors, index = real(run, log, kind)
        return ids[:1], vectors[:1], index

    monkeypatch.setattr(sslkit.retrieval.recommend, "load_index", one_item)
    fails(1, "the catalog has 1 item(s), so there is nothing to recommend", "recommend", ds / "run", stdin="i000000\n")


# ---------------------------------------------------------------------------------------------
# 11. the sweep trusts only results it wrote with its own settings

def test_sweep_result_written_with_other_settings_is_not_trusted(ds: Path) -> None:
    from sslkit.errors import CheckpointError
    from sslkit.study.cells import _save_per_query, _seal, eval_settings, load_result
    from sslkit.study.spec import Cell
    from sslkit.config import load_config

    cell = Cell(values={}, cfg=load_config(ds / "schema.yaml"), dir=ds / "run")
    split = getattr(cell, "split", "test")
    code, out, err = invoke("eval", ds / "run", "--json", *(["--split", split] if split != "test" else []))
    assert code == 0, err
    from sslkit.study.spec import PER_QUERY_FILES

    q = np.arange(3)
    _save_per_query(ds / "run" / PER_QUERY_FILES[split], q, {"recall@10": np.zeros(3)}, eval_settings(cell))
    _seal(cell)
    assert load_result(cell).queries.tolist() == [0, 1, 2]
    code, _, err = invoke("eval", ds / "run", "--k", "5", *(["--split", split] if split != "test" else []))
    assert code == 0, err
    with pytest.raises(CheckpointError, match="eval.json fails its checksum"):
        load_result(cell)
    _seal(cell)  # sealed again, its settings still disagree
    with pytest.raises(CheckpointError, match="was written by another evaluation \\(k=\\[5\\]\\)"):
        load_result(cell)
    _save_per_query(ds / "run" / PER_QUERY_FILES[split], q, {"recall@10": np.zeros(3)}, {**eval_settings(cell), "k": [5]})
    _seal(cell)
    with pytest.raises(CheckpointError, match="written with other evaluation settings"):
        load_result(cell)


def test_nan_loss_before_any_checkpoint_does_not_claim_one(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslkit.model.losses as losses

    monkeypatch.setattr(losses, "spread_out_loss", lambda v, temperature, **kw: (v * float("nan")).sum())
    fails(1, "loss became nan at step 1; no checkpoint was written yet — lower --lr", "train", data / "schema.yaml",
          *TRAIN, "--aug", "so", "--out", data / "r")
    assert not (data / "r/checkpoint.pt").exists()


def test_embed_out_is_a_directory(ds: Path) -> None:
    fails(1, "run: is a directory — give a file path", "embed", ds / "run", "--out", ds / "run", "--format", "csv")


def test_cache_dir_under_a_file(data: Path) -> None:
    (data / "afile").write_text("x")
    fails(1, "afile", "profile", data / "schema.yaml", "--set", f"cache_dir={data / 'afile' / 'cache'}")


def test_sweep_spec_not_utf8(data: Path) -> None:
    spec = data / "spec.yaml"
    spec.write_bytes(b"schema: schema.yaml\ngrid: {aug: [none]}\n# caf\xe9\n")
    fails(2, "spec.yaml: line 3: byte 0xe9 is not UTF-8 — save the file as UTF-8", "sweep", spec, "--dry-run")


def test_resume_from_stdin_on_other_data_is_refused(data: Path) -> None:
    edit(data / "schema.yaml", "path: data/pairs.csv", "path: '-'")
    head, *rows = (data / "data/pairs.csv").read_text().splitlines()
    code, _, err = invoke("train", data / "schema.yaml", *TRAIN, "--out", data / "r", stdin="\n".join([head, *rows]) + "\n")
    assert code == 0, err
    before = snapshot(data / "r")
    fails(1, "cannot resume: the data changed since this run started", "train", data / "schema.yaml",
          "--steps", "4", "--batch-size", "256", "--out", data / "r", "--resume", stdin="\n".join([head, *rows[::-1]]) + "\n")
    assert snapshot(data / "r") == before


def test_allow_data_change_never_caches_into_the_run(ds: Path) -> None:
    code, first, err = invoke("recommend", ds / "run", "--k", "3", stdin="i000001\n")
    assert code == 0, err
    cached = snapshot(ds / "run")
    items = ds / "data/items.csv"
    original = items.read_text()
    items.write_text(original.replace("brand001,", "brandX,"))
    code, _, err = invoke("recommend", ds / "run", "--k", "3", "--allow-data-change", stdin="i000001\n")
    assert code == 0 and "WARNING" in err
    assert snapshot(ds / "run") == cached  # vectors of other data are not stored as the run's
    items.write_text(original)
    assert invoke("recommend", ds / "run", "--k", "3", stdin="i000001\n")[1] == first
