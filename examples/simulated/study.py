#!/usr/bin/env python
"""The simulated controls' studies (SIMULATED data) and their report, docs/RESULTS-simulated.md.

    python examples/simulated/study.py                  # both controls: data, studies (2 processes), report
    python examples/simulated/study.py --controls positive
    python examples/simulated/study.py --report-only    # the report from finished studies

Each study is `sslkit sweep examples/simulated/sweeps/CONTROL.yaml` (two-stage tuning, 3 replicates,
early stopping, fresh final seeds; see docs/studies.md); resumable: run it again after an
interruption and finished cells are skipped. Wall time is added up in runs/simulated-CONTROL/wall.json.
The report (`report.py`) puts the reference rankers (`oracles.py`) beside the models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONTROLS = ("positive", "negative")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(controls: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for c in controls:
        if not (HERE / "data" / c / "truth.npz").exists():
            subprocess.run([sys.executable, str(HERE / "controls.py"), "--control", c], check=True, env=env)
    start, t0 = _now(), time.time()
    procs = {c: subprocess.Popen([sys.executable, "-m", "sslkit", "sweep", str(HERE / "sweeps" / f"{c}.yaml")], env=env)
             for c in controls}
    for c, p in procs.items():
        rc = p.wait()
        wall = ROOT / "runs" / f"simulated-{c}" / "wall.json"
        before = json.loads(wall.read_text())["seconds"] if wall.exists() else 0.0
        wall.parent.mkdir(parents=True, exist_ok=True)
        wall.write_text(json.dumps({"start": start, "end": _now(), "seconds": before + time.time() - t0, "rc": rc}))
        if rc:
            raise SystemExit(f"the {c} study ended with exit code {rc}; run this script again to resume it")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--controls", nargs="+", choices=CONTROLS, default=list(CONTROLS))
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args(argv)
    if not a.report_only:
        run(a.controls)
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True)


if __name__ == "__main__":
    main()
