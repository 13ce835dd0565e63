"""docs/serving.md's canary and shadow walk-through, its commands and its TOML, run as written
on Bike Sharing models."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from tests.serve.test_server_process import serving
from typer.testing import CliRunner

from mlcycle.cli._app import app
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.project import init_project
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.slow
PAGE = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
FEATURES = ["season", "mnth", "hr", "weekday", "weathersit", "yr", "holiday", "workingday",
            "temp", "atemp", "hum", "windspeed"]  # fmt: skip
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(heading: str) -> list[tuple[str, str]]:
    """The fenced blocks (language, text) of the section under ``heading``."""
    section = PAGE.read_text().split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return BLOCK.findall(section)


def commands(text: str) -> list[list[str]]:
    """The ``mlcycle`` commands of a shell block, continuations joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        words = shlex.split(line.removeprefix("$ "), comments=True)
        if words[:1] == ["mlcycle"]:
            found.append(words[1:])
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A project with four ``bike-demand`` versions; production is 1, challenger 2."""
    root = init_project(tmp_path / "project")
    hours = pd.read_csv(BIKE_SHARING_HOURLY).head(2000)
    with Workspace.open(Settings(home=root, actor="ana")) as workspace:
        for alpha in (0.1, 1.0, 10.0, 100.0):
            model = Ridge(alpha=alpha).fit(hours[FEATURES], hours["cnt"])
            workspace.registry.register("bike-demand", model, input_example=hours[FEATURES][:5])
        workspace.registry.promote("bike-demand", 1, "production", force=True, reason="docs")
        workspace.registry.promote("bike-demand", 2, "challenger", force=True, reason="docs")
    return root


def mlcycle(home: Path, args: list[str]) -> str:
    done = CliRunner().invoke(app, ["--home", str(home), *args], catch_exceptions=False)
    assert done.exit_code == 0, f"mlcycle {shlex.join(args)}:\n{done.output}"
    return done.output


def python(home: Path, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_canary_and_shadow_walk_through_runs_on_bike_sharing(home: Path) -> None:
    (_, console), (compare_language, compare) = blocks("### Canary and shadow with Bike Sharing")
    assert compare_language == "python"
    steps = commands(console)
    assert [step[0] for step in steps] == ["deploy", "serve", "deploy"]
    canary, _, shadow = steps
    mlcycle(home, canary)
    assert '"policy": "canary"' in mlcycle(home, ["deployments", "show", "bike-demand", "--json"])
    mlcycle(home, shadow)
    row = pd.read_csv(BIKE_SHARING_HOURLY).iloc[[5000]][FEATURES].to_dict("records")
    with serving(home, "bike-demand") as url:
        for _ in range(3):
            answer = httpx.post(
                f"{url}/v1/models/bike-demand:predict", json={"instances": row}, timeout=30
            )
            assert answer.status_code == 200, answer.text
    printed = python(home, f"{compare}\nprint(sorted(log['variant'].unique()))")
    assert "['primary', 'shadow']" in printed


def test_the_commands_and_the_python_api_run(home: Path) -> None:
    (bash, shell), (language, code) = blocks("### Commands and the Python API")
    assert (bash, language) == ("bash", "python")
    for args in commands(shell):
        if args[0] != "serve":  # serving is shown by the walk-through above
            mlcycle(home, args)
    python(home, code)


def test_the_toml_desired_state_applies_and_is_idempotent(home: Path) -> None:
    (toml_language, toml), (bash, shell) = blocks("### `mlcycle.toml` as the desired state")
    assert (toml_language, bash) == ("toml", "bash")
    settings = home / "mlcycle.toml"
    settings.write_text(settings.read_text() + "\n" + toml)
    for args in commands(shell):
        mlcycle(home, args)
    names = mlcycle(home, ["deployments", "list"])
    for name in ("bike-demand", "bike-shadow", "bike-simple"):
        assert name in names
    again = mlcycle(home, ["deploy", "--from-toml", "--dry-run"])
    assert "would apply 0 change(s); 3 left as they are" in again
