"""The root command: version, help, global options, lazy imports and how errors look."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result

import mlcycle
from mlcycle.cli._app import app

Invoke = Callable[..., Result]


def run_module(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_version_in_a_real_process(tmp_path: Path) -> None:
    result = run_module("-m", "mlcycle", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mlcycle {mlcycle.__version__}"


def test_version_in_process(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"mlcycle {mlcycle.__version__}\n"


def test_help_in_a_real_process_explains_mlcycle_and_imports_nothing_heavy(tmp_path: Path) -> None:
    result = run_module("-X", "importtime", "-m", "mlcycle", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("make demo", "make test", "experiments", "runs", "init", "demo", "db"):
        assert text in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    heavy = {"pandas", "sqlalchemy", "sklearn", "numpy", "pyarrow", "mlcycle.store"}
    assert not heavy & imported, f"--help imported {heavy & imported}"


def _commands(command: Any, path: str = "mlcycle") -> list[tuple[str, Any]]:
    found = [(path, command)]
    if hasattr(command, "commands"):  # a group (Typer vendors its own click)
        for name, sub in command.commands.items():
            found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in _commands(typer.main.get_command(app)):
        if not (command.help or "").strip():
            missing.append(path)
        missing.extend(
            f"{path} {param.name}"
            for param in command.params
            if param.name != "help" and not (getattr(param, "help", None) or "").strip()
        )
    assert missing == []


def test_command_groups_are_plural_nouns() -> None:
    root = typer.main.get_command(app)
    groups = {name for name, cmd in root.commands.items() if hasattr(cmd, "commands")}
    # data: a mass noun, as in DVC
    assert groups == {
        "alerts",
        "experiments",
        "runs",
        "data",
        "db",
        "models",
        "pipelines",
        "schedules",
        "deployments",
        "training",  # a mass noun too; the name issue 7's interfaces agreed on
        "monitor",  # as issue 7 names it: monitoring as a whole, like data
    }


def test_usage_errors_keep_exit_code_2(invoke: Invoke, project: Path) -> None:
    result = invoke("runs", "list", "--limit", "0")
    assert result.exit_code == 2


def test_commands_outside_a_project_refuse_and_create_nothing(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("--home", str(empty), "runs", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no mlcycle project")
    assert "mlcycle init" in result.stderr
    assert list(empty.iterdir()) == []


def test_metadata_url_flag_is_the_strongest_layer(invoke: Invoke, project: Path) -> None:
    (project / "mlcycle.toml").write_text(
        f'[store]\nmetadata_url = "sqlite:///{project / "from-toml.db"}"\n'
    )
    other = project / "from-flag.db"
    result = invoke("--metadata-url", f"sqlite:///{other}", "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert other.exists()
    assert not (project / "from-toml.db").exists()
    assert "schema revision" in result.stdout


def test_home_flag_selects_the_project(invoke: Invoke, project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert invoke("init", str(other)).exit_code == 0
    result = invoke("--home", str(other), "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (other / ".mlcycle" / "mlcycle.db").exists()
    assert not (project / ".mlcycle" / "mlcycle.db").exists()


def test_corrupted_metadata_file_is_a_clear_error_and_stays_untouched(
    invoke: Invoke, project: Path
) -> None:
    database = project / ".mlcycle" / "mlcycle.db"
    garbage = b"this is not a SQLite database\x00\x01" * 64
    database.write_bytes(garbage)
    for args in (("runs", "list"), ("experiments", "list"), ("db", "upgrade")):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.output + result.stderr
        assert database.read_bytes() == garbage


@pytest.mark.postgres
def test_team_database_through_the_metadata_url_flag(
    invoke: Invoke, project: Path, postgres_url: str
) -> None:
    upgraded = invoke("--metadata-url", postgres_url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "schema revision" in upgraded.stdout
    from mlcycle import Workspace
    from mlcycle.settings import Settings, StoreSettings

    team = Settings(home=project, actor="ana", store=StoreSettings(metadata_url=postgres_url))
    with Workspace.open(team) as workspace, workspace.start_run("shared", name="pg") as run:
        run.log_metric("rmse", 1.5)
    listed = invoke("--metadata-url", postgres_url, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(row["run_id"], row["metrics"]) for row in json.loads(listed.stdout)] == [
        (run.id, {"rmse": 1.5})
    ]
    assert "rmse" not in invoke("runs", "list").stdout  # the local SQLite store is separate
