"""``benchmarks/shadow_pool.py`` pools the shadow goals of several serving benchmark runs.

Its runs here are written by the test: the figures are what the pooling is checked against.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "shadow_pool.py"


def _run_output(tmp_path: Path, name: str, p99: tuple[float, float, float]) -> Path:
    """A benchmark's output: progress, a table, then the JSON line with the shadow goals."""
    value, low, high = p99
    report = {
        "goals": {
            "shadow_median": {"value": 1.01, "interval": [1.0, 1.02]},
            "shadow_p99": {"value": value, "interval": [low, high]},
        }
    }
    path = tmp_path / name
    path.write_text(f"| goal | figure |\n| --- | --- |\n{json.dumps(report)}\n", encoding="utf-8")
    return path


def _pool(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _last_json(output: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return loaded


def test_runs_of_equal_intervals_pool_to_their_geometric_mean_with_a_narrower_interval(
    tmp_path: Path,
) -> None:
    spread = math.exp(0.04)
    first = _run_output(tmp_path, "a.txt", (0.99, 0.99 / spread, 0.99 * spread))
    second = _run_output(tmp_path, "b.txt", (1.03, 1.03 / spread, 1.03 * spread))
    done = _pool(first, second)
    assert done.returncode == 0, done.stderr
    pooled = _last_json(done.stdout)["pooled"]["shadow_p99"]
    assert pooled["value"] == pytest.approx(math.sqrt(0.99 * 1.03))
    low, high = pooled["interval"]
    # Two equal weights: the log interval's half-width shrinks by the square root of two.
    assert math.log(high / pooled["value"]) == pytest.approx(0.04 / math.sqrt(2))
    assert math.log(pooled["value"] / low) == pytest.approx(0.04 / math.sqrt(2))
    assert pooled["verdict"] == "PASS"
    assert pooled["decided"] is True
    assert "PASS, decided" in done.stdout


def test_a_narrower_run_weighs_more_and_a_spanning_interval_decides_nothing(
    tmp_path: Path,
) -> None:
    narrow = _run_output(tmp_path, "narrow.txt", (1.04, 1.00, 1.08))
    wide = _run_output(tmp_path, "wide.txt", (0.90, 0.70, 1.20))
    done = _pool(narrow, wide)
    assert done.returncode == 0, done.stderr
    pooled = _last_json(done.stdout)["pooled"]["shadow_p99"]
    assert 1.0 < pooled["value"] < 1.04  # near the narrow run's figure, not the midpoint
    assert pooled["interval"][1] > 1.05
    assert pooled["decided"] is False
    assert "the interval spans the goal" in done.stdout


def test_a_pooled_figure_past_the_goal_is_a_miss(tmp_path: Path) -> None:
    runs = [_run_output(tmp_path, f"{n}.txt", (1.09, 1.07, 1.11)) for n in range(3)]
    done = _pool(*runs)
    assert done.returncode == 0, done.stderr
    pooled = _last_json(done.stdout)["pooled"]["shadow_p99"]
    assert pooled["verdict"] == "MISS"
    assert pooled["decided"] is True
    assert "MISS, decided" in done.stdout


_NAN_P99 = (
    b'{"goals": {"shadow_median": {"value": 1.0, "interval": [1.0, 1.0]},'
    b' "shadow_p99": {"value": NaN, "interval": [0.9, 1.1]}}}\n'
)
_ZERO_LOW = (
    b'{"goals": {"shadow_median": {"value": 1.0, "interval": [0, 1.1]},'
    b' "shadow_p99": {"value": 1.0, "interval": [0.9, 1.1]}}}\n'
)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "cannot be read"),
        (b"\xff\xfe\x00binary", "cannot be read"),
        (b"[bench-serving] shadow: pair 3\n", "has no JSON line"),
        (b'| goal |\n{"goals": {"shadow_p99": \n', "is not JSON"),
        (b'{"benchmark": "serving"}\n', "'shadow_median' has no figure"),
        (_NAN_P99, "'shadow_p99' has no figure"),
        (_ZERO_LOW, "'shadow_median' has no figure"),
    ],
)
def test_a_file_without_a_runs_figures_is_refused_by_name(
    tmp_path: Path, content: bytes | None, named: str
) -> None:
    good = _run_output(tmp_path, "good.txt", (1.0, 0.96, 1.04))
    bad = tmp_path / "bad.txt"
    if content is not None:
        bad.write_bytes(content)
    done = _pool(good, bad)
    assert done.returncode == 2
    assert str(bad) in done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
