"""``mlcycle pipelines``: run, list, show and resume, and clear errors with non-zero exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.cli.conftest import Invoke

REPO = Path(__file__).resolve().parents[2]

FLOW = """
from pathlib import Path
from mlcycle import pipeline, step

@step
def load(rows: int) -> list[int]:
    print(f"loading {rows}")
    return list(range(rows))

@step(retries=1, retry_delay=0.01)
def total(values: list[int], scale: float) -> float:
    if Path("broken").exists():
        raise RuntimeError("total is broken")
    return sum(values) * scale

@step
def report(value: float, values: list[int]) -> dict[str, float]:
    return {"total": value, "count": len(values)}

@pipeline
def training(rows: int = 3, scale: float = 1.0, label: str = "x") -> None:
    values = load(rows)
    report(total(values, scale), values)
"""


@pytest.fixture
def flow(project: Path) -> Path:
    path = project / "pipelines.py"
    path.write_text(textwrap.dedent(FLOW))
    return path


def test_run_list_show_and_a_cached_rerun(invoke: Invoke, flow: Path) -> None:
    result = invoke(
        "pipelines", "run", "pipelines.py:training", "--param", "rows=4", "-p", "scale=0.5"
    )
    assert result.exit_code == 0, result.output
    assert "✓ load" in result.stdout
    assert "completed: 3 steps, 0 from the cache" in result.stdout
    again = invoke(
        "pipelines", "run", f"{flow}:training", "-p", "rows=4", "-p", "scale=0.5", "--json"
    )
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["status"] == "completed"
    assert summary["params"] == {"rows": 4, "scale": 0.5, "label": "x"}
    assert summary["param_sources"] == {"rows": "cli", "scale": "cli", "label": "code"}
    assert [s["status"] for s in summary["steps"]] == ["cached"] * 3
    listed = invoke("pipelines", "list")
    assert listed.exit_code == 0
    assert summary["run_id"] in listed.stdout
    shown = invoke("pipelines", "show", summary["run_id"], "--logs")
    assert shown.exit_code == 0, shown.output
    assert "training run" in shown.stdout
    assert "cache hit from run" in shown.stdout
    assert "(also after load)" in shown.stdout
    assert "rows=4 (cli)" in shown.stdout
    as_json = json.loads(invoke("pipelines", "list", "--json", "--pipeline", "training").stdout)
    assert len(as_json) == 2
    nocache = invoke(
        "pipelines", "run", "pipelines.py:training", "-p", "rows=4", "-p", "scale=0.5", "--no-cache"
    )
    assert "3 steps, 0 from the cache" in nocache.stdout


def test_a_failed_run_exits_non_zero_and_resumes(invoke: Invoke, flow: Path, project: Path) -> None:
    (project / "broken").touch()
    failed = invoke("pipelines", "run", "pipelines.py:training", "--json")
    assert failed.exit_code == 1
    assert "step 'total' failed after 2 attempts" in failed.stderr
    run_id = failed.stderr.split("mlcycle pipelines resume ")[1].split("`")[0]
    shown = invoke("pipelines", "show", run_id)
    assert "total is broken" in shown.stdout
    (project / "broken").unlink()
    resumed = invoke("pipelines", "resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    assert f"run {run_id} completed" in resumed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nofile.py:training"], "no pipeline file"),
        (
            ["pipelines.py:nothing"],
            "pipelines.py has no 'nothing'; the pipelines it defines are: training",
        ),
        (["pipelines.py:Path"], "not a pipeline"),
        (["training"], "is not a pipeline target"),
        (["pipelines.py:training", "-p", "rows=many"], "'rows' is a number"),
        (["pipelines.py:training", "-p", "depth=3"], "no parameter 'depth'"),
        (["pipelines.py:training", "--executor", "yarn"], "unknown executor 'yarn'"),
    ],
)
def test_bad_input_is_a_clear_error(
    invoke: Invoke, flow: Path, args: list[str], message: str
) -> None:
    result = invoke("pipelines", "run", *args)
    assert result.exit_code == 1
    assert message in result.stderr


def test_a_malformed_param_is_a_usage_error(invoke: Invoke, flow: Path) -> None:
    result = invoke("pipelines", "run", "pipelines.py:training", "--param", "rows")
    assert result.exit_code == 2
    assert "is not NAME=VALUE" in result.output


def test_unknown_runs_are_named(invoke: Invoke, flow: Path) -> None:
    for command in ("show", "resume"):
        result = invoke("pipelines", command, "NOPE")
        assert result.exit_code == 1
        assert "no pipeline run 'NOPE'" in result.stderr


@pytest.mark.slow
def test_python_m_mlcycle_runs_a_pipeline_for_other_programs(flow: Path, project: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcycle",
            "pipelines",
            "run",
            "pipelines.py:training",
            "--param",
            "rows=2",
            "--param",
            "label=nightly",
            "--json",
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed"
    assert summary["params"]["label"] == "nightly"
