"""The machine-speed probe runs and reports its levels; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "benchmarks" / "machine_speed.py"


def probe(seconds: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROBE), "--seconds", seconds],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_probe_reports_each_second_and_the_two_levels() -> None:
    done = probe("3")
    assert done.returncode == 0, done.stderr
    *table, last = done.stdout.strip().splitlines()
    report = json.loads(last)
    assert report["benchmark"] == "machine-speed"
    assert len(report["per_second_ms"]) >= 2
    assert 0 < report["fast_ms"] <= report["slow_ms"]
    assert report["slow_over_fast"] == report["slow_ms"] / report["fast_ms"]
    assert 0 <= report["crossings"] < len(report["per_second_ms"])
    assert table[0].startswith("| seconds | fast level | slow level |")


def test_too_short_a_probe_is_refused() -> None:
    done = probe("1")
    assert done.returncode == 2
    assert "--seconds must be at least 2" in done.stderr
