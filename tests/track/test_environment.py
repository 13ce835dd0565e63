"""Each run records its code version, interpreter, packages, command line and allowed variables."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.settings import Settings
from mlcycle.track import capture_environment, git_state
from mlcycle.workspace import Workspace


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def test_git_commit_and_dirty_flag_of_the_project(settings: Settings) -> None:
    root = settings.home
    _git(root, "init", "-q")
    (root / "train.py").write_text("print('v1')\n")
    _git(root, "add", "train.py")
    _git(root, "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with Workspace.open(settings) as workspace:
        with workspace.start_run("exp") as run:
            pass
        found = workspace.get_run(run.id)
    assert (found.git_commit, found.git_dirty) == (head, False)
    (root / "train.py").write_text("print('v2')\n")
    nested = root / "sub"
    nested.mkdir()
    assert git_state(nested).commit == head
    assert git_state(nested).dirty is True


def test_no_git_or_no_repository_gives_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    state = git_state(outside)
    assert (state.commit, state.dirty) == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    assert git_state(elsewhere).commit is None


def test_the_environment_is_stored_once_by_digest(workspace: Workspace) -> None:
    with workspace.start_run("exp") as first:
        pass
    with workspace.start_run("exp") as second:
        pass
    one, two = workspace.get_run(first.id), workspace.get_run(second.id)
    assert one.environment_digest == two.environment_digest
    assert one.environment_digest is not None
    stored = workspace.metadata.get_environment(one.environment_digest)
    assert stored.python == f"{platform.python_implementation()} {platform.python_version()}"
    assert stored.platform == platform.platform()
    assert stored.packages["pytest"] == importlib.metadata.version("pytest")
    assert stored == capture_environment()
    tree = workspace.lineage(first.id).to_dict()
    assert f"env:{one.environment_digest}" in str(tree)


def test_without_packages_the_digest_differs(settings: Settings) -> None:
    lean = settings.tracking.model_copy(update={"capture_packages": False})
    with Workspace.open(settings.model_copy(update={"tracking": lean})) as workspace:
        with workspace.start_run("exp") as run:
            pass
        digest = workspace.get_run(run.id).environment_digest
        assert digest is not None
        assert digest != capture_environment().digest
        assert workspace.metadata.get_environment(digest).packages == {}


def test_command_line_and_allowed_variables(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", "--epochs", "3"])
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("NOT_ALLOWED", "x")
    with workspace.start_run("exp") as run:
        pass
    found = workspace.get_run(run.id)
    assert found.command == "train.py --epochs 3"
    assert found.tags["env.OMP_NUM_THREADS"] == "4"
    assert found.tags["env.PYTHONHASHSEED"] == "0"
    assert not any("NOT_ALLOWED" in key for key in found.tags)
