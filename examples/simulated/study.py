#!/usr/bin/env python
"""The simulated controls' studies (SIMULATED data) and their report, docs/RESULTS-simulated.md.

    python examples/simulated/study.py                  # both controls: data, studies (2 processes), report
    python examples/simulated/study.py --controls positive
    python examples/simulated/study.py --report-only    # the report from finished studies

Each study is `sslkit sweep examples/simulated/sweeps/SPEC.yaml` (positive, negative, positive-10pct:
two-stage tuning, 3 replicates, early stopping, fresh final seeds; see docs/studies.md); resumable:
run it again after an interruption and finished cells are skipped. Wall times go to runs/wall.jsonl.
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
    """Generate the data, then run the studies: one process per control (side by side), the positive
    control's Table 3 after its Table 2. Wall times go to runs/wall.jsonl (one line per study run)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for c in controls:
        if not (HERE / "data" / c / "truth.npz").exists():
            subprocess.run([sys.executable, str(HERE / "controls.py"), "--control", c], check=True, env=env)
    queues = {c: [c] + (["positive-10pct"] if c == "positive" else []) for c in controls}
    (ROOT / "runs").mkdir(exist_ok=True)

    def queue(specs: list[str]) -> int:
        for spec in specs:
            start, t0 = _now(), time.time()
            rc = subprocess.run([sys.executable, "-m", "sslkit", "sweep", str(HERE / "sweeps" / f"{spec}.yaml")],
                                env=env).returncode
            with open(ROOT / "runs" / "wall.jsonl", "a") as f:
                f.write(json.dumps({"spec": f"examples/simulated/sweeps/{spec}.yaml", "start": start, "end": _now(),
                                    "seconds": round(time.time() - t0), "rc": rc}) + "\n")
            if rc:
                return rc
        return 0

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(queues)) as pool:
        codes = dict(zip(queues, pool.map(queue, queues.values())))
    bad = {c: rc for c, rc in codes.items() if rc}
    if bad:
        raise SystemExit(f"the {', '.join(bad)} study ended with exit code {next(iter(bad.values()))}; "
                         "run this script again to resume it")


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
