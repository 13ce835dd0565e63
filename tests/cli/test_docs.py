"""The documentation's examples run: the first Python blocks of docs/tracking.md and
docs/registry.md, each in a fresh folder."""

from __future__ import annotations

import json
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


def test_registry_page_has_a_runnable_example() -> None:
    blocks = python_blocks(ROOT / "docs" / "registry.md")
    assert blocks
    for name in (
        "mc.registry.register",
        "run.log_split",
        "mc.registry.evaluate",
        "mc.registry.promote",
        "mc.registry.rollback",
        "mc.lineage",
        'runtime="onnx"',
    ):
        assert name in blocks[0], name


@pytest.mark.slow
def test_registry_example_runs_in_a_fresh_folder(tmp_path: Path) -> None:
    example = python_blocks(ROOT / "docs" / "registry.md")[0]
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "models:/bike-demand/1 1 of 8 gates failed" in out  # the mean fails beats_baseline
    assert "FAILED beats_baseline" in out
    assert "refused: model models:/bike-demand/1 cannot become 'production'" in out
    assert "production: models:/bike-demand/1" in out  # forced, with a reason
    assert "rolled back production: version 1 -> 3" in out
    assert "rolled back production: version 3 -> 2" in out  # skips 1, rolled back from
    assert "promote 3 -> 1 forced=True fallback during an outage" in out
    assert "data:/bike/1 (training_data)" in out
    assert (tmp_path / "model-cards" / "bike-demand-v3.html").is_file()
    shown = subprocess.run(
        [sys.executable, "-m", "mlcycle", "models", "show", "bike-demand@production", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert (version["version"], version["aliases"]) == (2, ["production"])
    assert version["evaluation"]["passed"] is True


def test_readme_sdk_snippet_matches_the_tracking_example_names() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    for name in ("mc.start_run", "run.log_metric", "mc.search_runs", "metric_history"):
        assert name in readme
