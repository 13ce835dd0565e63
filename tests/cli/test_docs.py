"""The documentation's examples run: the Python blocks of docs/tracking.md, in a fresh project."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


def test_tracking_page_has_a_runnable_example() -> None:
    blocks = python_blocks(ROOT / "docs" / "tracking.md")
    assert blocks
    assert "mc.start_run" in blocks[0]
    assert "mc.search_runs" in blocks[0]


@pytest.mark.slow
def test_tracking_example_runs_in_a_fresh_folder(tmp_path: Path) -> None:
    example = python_blocks(ROOT / "docs" / "tracking.md")[0]
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlcycle.toml").is_file()  # the SDK initialised a project here
    assert "gbm" in result.stdout
    assert "41.2" in result.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "mlcycle", "runs", "list", "--where", "params.model = 'gbm'"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "1 run(s)" in listed.stdout


def test_readme_sdk_snippet_matches_the_tracking_example_names() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    for name in ("mc.start_run", "run.log_metric", "mc.search_runs", "metric_history"):
        assert name in readme
