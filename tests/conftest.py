"""Shared fixtures: a tiny generated dataset per test session (seconds to build), CLI runner."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("synthetic_generate", ROOT / "examples/synthetic/generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    _generator().generate(out, items=300, pairs=4000, users=60, user_pairs=2000, seed=1)
    return out


@pytest.fixture()
def data(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset (tests may break it)."""
    dst = tmp_path / "ds"
    shutil.copytree(tiny_dir, dst, ignore=shutil.ignore_patterns(".sslkit-cache"))
    return dst


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()
