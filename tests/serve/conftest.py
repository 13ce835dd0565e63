"""Fixtures for serving: a project with a small Bike Sharing-like model registered three times."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from sklearn.linear_model import Ridge
from typer.testing import CliRunner

from mlcycle.cli._app import app
from mlcycle.project import init_project
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLCYCLE_* variable from the outside changes what a test sees."""
    for name in list(os.environ):
        if name.startswith("MLCYCLE_") and name != "MLCYCLE_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project, and the working directory set to it."""
    root = init_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def workspace(project: Path) -> Iterator[Workspace]:
    with Workspace.open(Settings(home=project, actor="ana")) as opened:
        yield opened


@pytest.fixture
def hours() -> pd.DataFrame:
    """Rows shaped like Bike Sharing's hourly data (a few columns of it) with the count."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "station": rng.integers(1, 4, 60),
            "hr": rng.integers(0, 24, 60),
            "temp": rng.uniform(0, 1, 60),
        }
    )
    frame["cnt"] = 40 * frame["temp"] + 3 * frame["hr"] + frame["station"]
    return frame


@pytest.fixture
def bike_models(workspace: Workspace, hours: pd.DataFrame) -> Workspace:
    """``bike-demand`` versions 1 to 3 (Ridge of growing alpha); production names version 1."""
    features = hours[["station", "hr", "temp"]]
    for alpha in (0.1, 1.0, 10.0):
        model = Ridge(alpha=alpha).fit(features, hours["cnt"])
        workspace.registry.register("bike-demand", model, input_example=features.head(5))
    workspace.registry.promote("bike-demand", 1, "production", force=True, reason="tests")
    return workspace


@pytest.fixture
def invoke() -> Invoke:
    """Run ``mlcycle`` in-process; our own errors come back as exit codes, others raise."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False, prog_name="mlcycle")

    return run
