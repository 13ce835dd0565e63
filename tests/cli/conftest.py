"""Fixtures for the command line: a project folder to run in, and a way to invoke ``mlcycle``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mlcycle.cli._app import app
from mlcycle.project import init_project
from mlcycle.settings import Settings

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
def project_settings(project: Path) -> Settings:
    """Settings of ``project``, as the CLI would load them there."""
    return Settings(home=project, actor="tester")


@pytest.fixture
def invoke() -> Invoke:
    """Run ``mlcycle`` in-process; our own errors come back as exit codes, others raise."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False, prog_name="mlcycle")

    return run
