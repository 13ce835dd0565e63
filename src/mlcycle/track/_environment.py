"""What a run ran with: code version, interpreter, packages, command line and chosen variables.

The package list is read once per process (it takes a fifth of a second) and
stored once per distinct set, by digest. The git state is asked of ``git``
with a timeout and remembered for a few seconds, so creating many runs in a
loop does not start two processes per run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from mlcycle.ids import Digest
from mlcycle.store import Environment
from mlcycle.track._redact import redact_argv, redact_mapping

__all__ = [
    "GitState",
    "capture_command",
    "capture_environment",
    "capture_variables",
    "git_state",
]

GIT_TIMEOUT_S = 5.0
GIT_CACHE_S = 10.0
_git_cache: dict[Path, tuple[float, GitState]] = {}
_git_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class GitState:
    """The commit a project was at and whether tracked files had uncommitted changes."""

    commit: str | None
    dirty: bool | None


def git_state(root: Path) -> GitState:
    """The git state of the project at ``root``; ``None`` fields without git or a repository."""
    now = time.monotonic()
    with _git_lock:
        cached = _git_cache.get(root)
        if cached is not None and now - cached[0] < GIT_CACHE_S:
            return cached[1]
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    status = None if commit is None else _git(root, "status", "--porcelain", "--untracked-files=no")
    state = GitState(commit=commit, dirty=None if status is None else bool(status))
    with _git_lock:
        _git_cache[root] = (now, state)
    return state


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def capture_environment(*, packages: bool = True) -> Environment:
    """The interpreter, platform and (optionally) installed packages, named by their digest.

    Computed once per process: what is installed does not change under a running program.
    """
    installed = dict(_installed_packages()) if packages else {}
    python = f"{platform.python_implementation()} {platform.python_version()}"
    system = platform.platform()
    body = orjson.dumps(
        {"packages": installed, "platform": system, "python": python},
        option=orjson.OPT_SORT_KEYS,
    )
    digest = Digest("sha256:" + hashlib.sha256(body).hexdigest())
    return Environment(digest=digest, python=python, platform=system, packages=installed)


@functools.cache
def _installed_packages() -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return tuple(sorted(found.items()))


def capture_command(argv: Sequence[str] | None = None) -> str:
    """The command line the process was started with, credentials redacted."""
    return shlex.join(redact_argv(sys.argv if argv is None else argv))


def capture_variables(
    allowlist: Sequence[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Allow-listed environment variables as ``env.<NAME>`` tags, credentials redacted.

    This is the one place outside the settings that reads the process
    environment: capturing it is the point.
    """
    source = os.environ if environ is None else environ
    found = {name: source[name] for name in allowlist if name in source}
    return {f"env.{name}": value for name, value in redact_mapping(found).items()}
