"""``init_project``: the layout it writes, the defaults it documents, and what it refuses."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from mlcycle.errors import AlreadyExists, WorkspaceError
from mlcycle.project import FOLDERS, init_project
from mlcycle.settings import Settings, load_settings

DEFAULT_LINE = re.compile(r"^# (\w+ = .+)$")


def test_init_lays_out_the_project(tmp_path: Path) -> None:
    root = init_project(tmp_path / "bikes")
    assert root == (tmp_path / "bikes").resolve()
    assert (root / "mlcycle.toml").is_file()
    assert (root / ".mlcycle").is_dir()
    for name, purpose in FOLDERS.items():
        assert purpose in (root / name / "README.md").read_text()


def test_written_settings_load_as_the_defaults(tmp_path: Path) -> None:
    root = init_project(tmp_path)
    assert load_settings(root) == Settings(home=root)


def test_every_section_is_shown_and_the_commented_values_are_the_real_defaults(
    tmp_path: Path,
) -> None:
    text = init_project(tmp_path).joinpath("mlcycle.toml").read_text()
    for section in ("[store]", "[store.s3]", "[tracking]", "[clock]"):
        assert f"\n{section}\n" in text
    assert "secrets.toml" in text
    assert "MLCYCLE_" in text
    uncommented = "\n".join(
        match.group(1) if (match := DEFAULT_LINE.match(line)) else line
        for line in text.splitlines()
    )
    data = tomllib.loads(uncommented)
    assert data.pop("actor") == "ana"  # the example actor is the only non-default shown this way
    shown = Settings(home=tmp_path, actor="x", **data)
    defaults = Settings(home=tmp_path, actor="x")
    assert shown == defaults
    assert len(data["tracking"]) == len(Settings.model_fields["tracking"].annotation.model_fields)  # type: ignore[union-attr]


def test_workspace_is_ignored_by_git(tmp_path: Path) -> None:
    root = init_project(tmp_path)
    (root / ".mlcycle" / "mlcycle.db").write_bytes(b"x")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mlcycle.toml" in status
    assert "data/README.md" in status
    assert ".mlcycle" not in status


def test_secrets_file_is_private(tmp_path: Path) -> None:
    root = init_project(tmp_path)
    assert (root / ".mlcycle" / "secrets.toml").stat().st_mode & 0o077 == 0


def test_existing_config_is_kept_without_force(tmp_path: Path) -> None:
    root = init_project(tmp_path)
    config = root / "mlcycle.toml"
    config.write_text('actor = "mine"\n')
    with pytest.raises(AlreadyExists, match=r"mlcycle\.toml.*--force"):
        init_project(root)
    assert config.read_text() == 'actor = "mine"\n'


def test_force_rewrites_config_but_keeps_user_files(tmp_path: Path) -> None:
    root = init_project(tmp_path)
    (root / "mlcycle.toml").write_text('actor = "mine"\n')
    (root / "data" / "README.md").write_text("my notes\n")
    init_project(root, force=True)
    assert "[store]" in (root / "mlcycle.toml").read_text()
    assert (root / "data" / "README.md").read_text() == "my notes\n"


def test_unwritable_directory_is_a_clear_error(unwritable_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match="cannot create"):
        init_project(unwritable_dir / "p")
    assert list(unwritable_dir.iterdir()) == []


def test_path_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(WorkspaceError, match=r"cannot create the mlcycle project in .*file"):
        init_project(tmp_path / "file" / "project")
