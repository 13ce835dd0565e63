"""The registry benchmark runs end to end on its quick workload and reports every figure.

No timing is asserted here (timings belong to the benchmark); only that the command
works and that its last line holds the keys ``docs/benchmarks.md`` is written from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAVORS = {"gbm", "ridge", "gbm_onnx", "onnx", "xgboost", "lightgbm", "pyfunc"}


@pytest.mark.slow
def test_the_registry_benchmark_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "registry.py"), "--quick"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "registry"
    assert {"machine", "versions", "load_average_end", "workload", "goals"} <= set(report)
    assert "load_average_start" in report["machine"]
    assert set(report["load_warm"]) == FLAVORS
    assert set(report["load_cold"]) == FLAVORS
    assert all("first_prediction_s" in report["load_cold"][key] for key in FLAVORS)
    assert {"gbm", "gbm_no_onnx", "ridge", "ridge_no_onnx"} <= set(report["register"])
    assert report["register"]["gbm"]["tags"]["mlcycle.onnx"].startswith("converted")
    predict = report["predict"]
    for size in ("single", "batch64"):
        assert {"sklearn", "onnx", "sklearn_raw", "onnx_raw", "ratio"} <= set(predict[size])
    assert predict["same_predictions"]["within_tolerance"]
    assert {"no_production", "against_production", "breakdown"} <= set(report["evaluate"])
    assert report["evaluate"]["against_production"]["passed"]
    assert {goal["verdict"] for goal in report["goals"].values()} <= {"PASS", "MISS"}
    assert "| goal | figure | goal |  |" in done.stdout
