"""``mlcycle init``: the project it lays out and what it refuses to overwrite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlcycle.project import FOLDERS
from mlcycle.settings import find_project_root

Invoke = Callable[..., Result]


def test_init_in_the_working_directory(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("init")
    assert result.exit_code == 0, result.output
    assert "Initialised an mlcycle project" in result.stdout
    assert find_project_root(tmp_path) == tmp_path.resolve()
    for name in FOLDERS:
        assert (tmp_path / name / "README.md").is_file()


def test_init_creates_a_new_directory(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "a" / "b"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "b" / "mlcycle.toml").is_file()


def test_init_keeps_an_existing_project_without_force(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path)).exit_code == 0
    config = tmp_path / "mlcycle.toml"
    config.write_text('actor = "mine"\n')
    result = invoke("init", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert str(config) in result.stderr
    assert "--force" in result.stderr
    assert config.read_text() == 'actor = "mine"\n'
    assert invoke("init", str(tmp_path), "--force").exit_code == 0
    assert "[store]" in config.read_text()


def test_init_in_an_unwritable_place_is_a_clear_error(invoke: Invoke, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke("init", str(blocker / "project"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot create the mlcycle project")
    assert "Traceback" not in result.stderr
    assert blocker.read_text() == "x"
