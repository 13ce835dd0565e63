"""The pipeline benchmark runs end to end on its quick workload and reports every figure.

No timing is asserted here (timings belong to the benchmark); only that the command
works and that its last line holds the keys ``docs/benchmarks.md`` is written from.
Prefect is left out: installing it needs the network and a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_pipeline_benchmark_reports_every_figure() -> None:
    pytest.importorskip("distributed")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pipelines.py"), "--quick", "--skip-prefect"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "pipelines"
    assert {"machine", "versions", "load_average_end", "workload", "goals"} <= set(report)
    assert "load_average_start" in report["machine"]
    chains = report["local"]["chains"]
    assert set(chains) == {"10", "50"}
    assert all("overhead_per_step_s" in figures for figures in chains.values())
    assert {"per_step_s", "fixed_s"} <= set(report["local"]["marginal"])
    assert {"median_s", "first_run_median_s", "steps"} <= set(report["cached"])
    assert {"raw", "mlcycle", "ratio", "ideal_s"} <= set(report["dask"])
    assert set(report["goals"]) == {"overhead", "cached", "dask", "prefect"}
    assert report["goals"]["prefect"]["verdict"] == "n/a"
    assert {goal["verdict"] for goal in report["goals"].values()} <= {"PASS", "MISS", "n/a"}
    assert "| goal | figure | goal |  |" in done.stdout
