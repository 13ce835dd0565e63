"""``mlcycle runs`` and ``mlcycle experiments`` over runs tracked with the real SDK."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlcycle import Workspace
from mlcycle.settings import Settings

Invoke = Callable[..., Result]


@pytest.fixture
def tracked(project_settings: Settings) -> dict[str, str]:
    """Three finished runs in two experiments, and a failed one; returns run ids by name."""
    ids = {}
    with Workspace.open(project_settings) as workspace:
        for name, model, rmse, r2 in (("gbm", "gbm", 41.2, 0.81), ("ridge", "ridge", 60.5, 0.6)):
            with workspace.start_run(
                "bike-demand", name=name, params={"model": model}, tags={"owner": "ana"}
            ) as run:
                run.log_metric("rmse", rmse + 10, step=1)
                run.log_metric("rmse", rmse, step=2)
                run.log_metrics({"r2": r2, "odd": math.nan})
                run.log_artifact({"model": model}, name="report.json")
            ids[name] = run.id
        with workspace.start_run("other", name="lonely", params={"model": "mean"}) as run:
            run.log_metric("rmse", 99.0)
        ids["lonely"] = run.id
        with (
            pytest.raises(RuntimeError),
            workspace.start_run("bike-demand", name="broken", parent=ids["gbm"]) as run,
        ):
            raise RuntimeError("out of memory")
        ids["broken"] = run.id
    return ids


def test_runs_list_shows_every_run_newest_first(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("runs", "list")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line[:2] == "01"]
    assert [line.split()[0] for line in lines] == [
        tracked[name] for name in ("broken", "lonely", "ridge", "gbm")
    ]
    assert "failed" in result.stdout
    assert "experiment" in result.stdout  # two experiments: the column is shown


def test_runs_list_filters_orders_and_limits(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke(
        "runs", "list", "-e", "bike-demand", "--where", "metrics.rmse < 100",
        "--order-by", "metrics.rmse DESC", "--limit", "5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["run_id"] for row in rows] == [tracked["ridge"], tracked["gbm"]]
    assert rows[1]["metrics"]["rmse"] == 41.2  # the latest value, not the first
    assert rows[1]["metrics"]["odd"] == "NaN"
    assert rows[1]["params"] == {"model": "gbm"}
    assert rows[1]["tags"]["owner"] == "ana"
    limited = json.loads(invoke("runs", "list", "--limit", "1", "--json").stdout)
    assert [row["run_id"] for row in limited] == [tracked["broken"]]


def test_runs_list_with_no_match_says_so(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("runs", "list", "--where", "params.model = 'nothing'")
    assert result.exit_code == 0
    assert "no runs match" in result.stdout


def test_invalid_where_points_at_the_token(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("runs", "list", "--where", "metrics.rmse << 45")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ")
    caret = next(line for line in lines if line.strip() == "^")
    expression = next(line for line in lines if "metrics.rmse << 45" in line)
    assert expression[caret.index("^")] == "<"
    assert "Traceback" not in result.stderr


def test_injection_in_where_changes_nothing(
    invoke: Invoke, tracked: dict[str, str], project: Path
) -> None:
    attempt = invoke("runs", "list", "--where", "params.model = 'x'' OR 1=1; DROP TABLE runs; --'")
    assert attempt.exit_code == 0
    assert "no runs match" in attempt.stdout
    assert len(json.loads(invoke("runs", "list", "--json").stdout)) == 4


def test_runs_show_gives_everything_about_a_run(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("runs", "show", tracked["gbm"])
    assert result.exit_code == 0, result.output
    for text in (tracked["gbm"], "bike-demand", "finished", "model", "41.2", "NaN", "owner"):
        assert text in result.stdout
    assert "report.json" in result.stdout
    assert "Python" in result.stdout
    details = json.loads(invoke("runs", "show", tracked["gbm"], "--json").stdout)
    assert details["metrics"]["rmse"] == 41.2
    assert [artifact["name"] for artifact in details["artifacts"]] == ["report.json"]
    assert details["environment"]["python"]
    assert details["lineage"]["ref"] == f"run:{tracked['gbm']}"


def test_runs_show_of_a_failed_child_run(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("runs", "show", tracked["broken"])
    assert result.exit_code == 0, result.output
    assert "RuntimeError: out of memory" in result.stdout
    assert tracked["gbm"] in result.stdout  # its parent
    details = json.loads(invoke("runs", "show", tracked["broken"], "--json").stdout)
    assert details["parent_id"] == tracked["gbm"]
    assert "Traceback" in details["error"]["traceback"]


def test_unknown_run_id_is_named(invoke: Invoke, tracked: dict[str, str]) -> None:
    for args in (
        ("runs", "show", "01NOSUCHRUN"),
        ("runs", "compare", tracked["gbm"], "01NOSUCHRUN"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ")
        assert "01NOSUCHRUN" in result.stderr
        assert "Traceback" not in result.stderr


def _row(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if line.lstrip("│ ").startswith(label))


def test_runs_compare_stars_the_best_value(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("runs", "compare", tracked["gbm"], tracked["ridge"], tracked["lonely"])
    assert result.exit_code == 0, result.output
    rmse = _row(result.stdout, "metrics.rmse")
    assert "lowest best" in rmse
    assert "★ 41.2" in rmse
    assert "★ 60.5" not in rmse
    r2 = _row(result.stdout, "metrics.r2")
    assert "highest best" in r2
    assert "★ 0.81" in r2
    assert "ridge" in _row(result.stdout, "params.model")
    assert "lowest for loss-like names" in result.stdout


def test_experiments_list(invoke: Invoke, tracked: dict[str, str]) -> None:
    result = invoke("experiments", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.index("bike-demand") < result.stdout.index("other")


def test_empty_project_says_what_to_do(invoke: Invoke, project: Path) -> None:
    assert "mlcycle demo" in invoke("experiments", "list").stdout
    assert "mlcycle demo" in invoke("runs", "list").stdout


def test_a_dead_run_is_shown_as_killed(invoke: Invoke, project: Path, tmp_path: Path) -> None:

    (project / "mlcycle.toml").write_text(
        "[tracking]\nheartbeat_interval_s = 0.2\nstale_after_s = 1.0\n"
    )
    script = (
        "import os, mlcycle as mc\n"
        "run = mc.start_run('crash', name='dies')\n"
        "run.log_metric('loss', 1.0)\n"
        "mc.current_workspace().flush()\n"
        "print(run.id, flush=True)\n"
        "os._exit(9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    run_id = done.stdout.strip()
    assert run_id, done.stderr
    time.sleep(1.5)  # longer than stale_after_s: the heartbeat has stopped
    rows = json.loads(invoke("runs", "list", "--json").stdout)
    assert [(row["run_id"], row["status"]) for row in rows] == [(run_id, "killed")]
    assert rows[0]["metrics"] == {"loss": 1.0}
