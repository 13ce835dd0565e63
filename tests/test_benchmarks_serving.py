"""The serving benchmark runs end to end on its quick workload and reports every figure.

No timing is asserted here (timings belong to the benchmark); only that the command works,
that every server answered every request with the model's own prediction, and that its last
line holds the keys ``docs/benchmarks.md`` is written from. MLflow is left out: installing it
needs the network and a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"plumbing", "ours_v2", "ours_v1", "ours_v2_unbatched"}
GOALS = {
    "throughput_v2_w1",
    "p99_v2_w1",
    "throughput_v1_w1",
    "p99_v1_w1",
    "plumbing_w1",
    "shadow_median",
    "shadow_p99",
    "shadow_shed_first",
    "hot_switch",
}


def _serve_command_exists() -> bool:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlcycle"), "serve", "--help"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return done.returncode == 0


@pytest.mark.slow
def test_the_serving_benchmark_reports_every_figure() -> None:
    pytest.importorskip("uvicorn", reason="the server extra is not installed")
    pytest.importorskip("starlette", reason="the server extra is not installed")
    if shutil.which("wrk") is None:
        pytest.skip("wrk (the Debian package) is not installed")
    if not _serve_command_exists():
        pytest.skip("this build has no `mlcycle serve`")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--quick", "--skip-mlflow"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "serving"
    assert {"machine", "versions", "load_average_end", "workload", "goals"} <= set(report)
    assert "load_average_start" in report["machine"]
    servers = report["servers"]["1"]
    assert set(servers) == TARGETS
    for name, figures in servers.items():
        assert "error" not in figures["server"], (name, figures["server"])
        for connections in ("c1", "c32"):
            assert figures[connections]["requests"] > 0, (name, connections)
            assert figures[connections]["non_2xx"] == 0, (name, connections)
            assert figures[connections]["socket_errors"] == 0, (name, connections)
        if name != "plumbing":
            assert figures["probe"]["same_prediction"] is True, (name, figures["probe"])
    assert {"onnx_single", "onnx_raw_single", "sklearn_single"} <= set(report["in_process"])
    shadow = report["shadow"]
    assert "error" not in shadow, shadow
    assert set(shadow["paced"]) == {"with", "without"}
    assert shadow["probe"]["same_prediction"] is True, shadow["probe"]
    # Two servers in turn, each once with the shadow: its process only in the runs with.
    assert [phase["shadowed"] for phase in shadow["phases"]] == ["bench-one", "bench-two"]
    for side, paced in shadow["paced"].items():
        assert paced["with_shadow"] == [side == "with"] * paced["repeats"], side
        assert paced["repeats"] == 2 * 2  # QUICK: two pairs per phase
        assert paced["non_2xx"] == 0
        assert paced["server_cpu_s_per_request"]["median"] > 0
    shadow_cpu = {
        side: paced["shadow_cpu_s_per_request"]["median"] for side, paced in shadow["paced"].items()
    }  # the shadow's process apart: none without it
    assert shadow_cpu["without"] == 0
    assert 0 < shadow_cpu["with"] < shadow["paced"]["with"]["server_cpu_s_per_request"]["median"]
    assert shadow["copies"]["requests"] > 0
    assert shadow["copies"]["predicted"] > 0, shadow["copies"]  # the shadow did predict meanwhile
    for pooled in [shadow["without_pooled"], *(p["pooled"] for p in shadow["paced"].values())]:
        assert pooled["requests"] > 0, pooled  # every request of the runs, from wrk's histogram
        assert 0 < pooled["p50_s"] <= pooled["p99_s"], pooled
    for phase in shadow["phases"]:
        assert phase["median_ratio"] > 0
        assert phase["p99_ratio"] > 0
        assert len(phase["pair_ratios"]) == 2
    intervals = shadow["intervals"]  # the ratios over resamples of the runs
    assert set(intervals) == {"median", "p99"}
    assert all(0 < low <= high for low, high in intervals.values()), intervals
    assert "come from 400 resamples of the runs" in done.stdout
    assert "The two servers' own difference, from the phases' ratios" in done.stdout
    idle = shadow["idle_penalty"]  # the same work after idle waits, measured without a server
    assert set(idle["work_us"]) == {"none", "200 µs", "1000 µs"}
    assert all(value > 0 for value in idle["work_us"].values())
    assert set(idle["ratio"]) == {"200 µs", "1000 µs"}
    assert "Idle penalty: the same Python work" in done.stdout
    assert {"requests", "shadow_shed", "metrics_moved"} <= set(shadow["overload"])
    switch = report["switch"]
    assert "error" not in switch, switch
    assert switch["switched"] is True, switch
    assert switch["failed"] == 0, switch
    goals = report["goals"]
    assert set(goals) == GOALS
    assert goals["throughput_v2_w1"]["verdict"] == "n/a"  # no MLflow in this run
    assert goals["plumbing_w1"]["verdict"] in {"PASS", "MISS"}
    assert goals["shadow_median"]["interval"] == intervals["median"]
    assert goals["shadow_p99"]["interval"] == intervals["p99"]
    assert {goal["verdict"] for goal in goals.values()} <= {"PASS", "MISS", "n/a"}
    assert "| goal | figure | goal |  |" in done.stdout
