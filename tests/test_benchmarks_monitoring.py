"""The monitoring benchmark runs end to end on its quick workload and reports every figure.

No timing is asserted here (timings belong to the benchmark); only that the command
works, that our p-values and decisions agree with SciPy's, and that its last line holds
the keys ``docs/benchmarks.md`` is written from. Evidently is left out: installing it
needs the network and a minute.
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
def test_the_monitoring_benchmark_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "monitoring.py"), "--quick", "--skip-evidently"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "monitoring"
    assert {"machine", "versions", "workload", "goals", "agreement"} <= set(report)
    ours = report["mlcycle"]
    assert {"first_run", "prepare_reference", "cached_run", "window", "cache_read"} <= set(ours)
    assert ours["monitor_run"]["rows"] == 5_000
    assert ours["monitor_run"]["labelled_rows"] == 2_500
    assert len(ours["columns"]) == 25
    agreement = report["agreement"]
    assert agreement["scipy"]["decisions_differ"] == []
    assert agreement["scipy"]["max_p_value_gap"] <= 1e-6
    assert {"c0", "c1", "n00", "n01"} <= set(agreement["drifted_columns"])
    assert set(report["goals"]) == {"evidently", "scipy", "window", "monitor_run", "agreement"}
    assert report["goals"]["evidently"]["verdict"] == "n/a"
    assert report["goals"]["agreement"]["verdict"] == "PASS"
    assert "| goal | figure | goal |  |" in done.stdout
