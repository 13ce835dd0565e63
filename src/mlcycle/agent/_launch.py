"""How the agent starts a schedule's target: a command in its own process.

The target runs as ``mlcycle pipelines run TARGET --param k=v ...`` by
default, in a process of its own, so a crashing pipeline never takes the
agent down, and the agent records its exit code. The command prefix is a
setting (``agent.command``), and the launcher an argument of ``Agent``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlcycle.errors import MlcycleError
from mlcycle.settings import Settings
from mlcycle.store import Schedule, TriggerFiring

__all__ = ["CommandLauncher", "Launch", "Launcher", "pipeline_command", "run_retrain"]


@dataclass(frozen=True, slots=True)
class Launch:
    """What launching a target did: the command, its process id and exit code, or an error."""

    command: tuple[str, ...]
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None


class Launcher(Protocol):
    """Starts the target of a schedule whose trigger fired."""

    def __call__(self, schedule: Schedule, firing: TriggerFiring) -> Launch:
        """Run ``schedule.target`` for ``firing``; report what happened, never raise for it."""
        ...


class CommandLauncher:
    """Runs ``[*prefix, target, --param k=v ...]`` and waits for it to end.

    >>> import sys
    >>> from datetime import UTC, datetime
    >>> launcher = CommandLauncher([sys.executable, "-c", "import sys; sys.exit(3)"])
    >>> schedule = Schedule(name="s", target="t", kind="cron", spec="@daily")
    >>> firing = TriggerFiring(schedule="s", key="k", trigger="cron",
    ...                        fired_at=datetime.now(UTC), agent="a")
    >>> launcher(schedule, firing).exit_code
    3
    """

    def __init__(
        self, prefix: Sequence[str], *, cwd: Path | None = None, timeout_s: float | None = None
    ) -> None:
        self.prefix = tuple(prefix)
        self.cwd = cwd
        self.timeout_s = timeout_s

    def command(self, schedule: Schedule) -> tuple[str, ...]:
        """The command line for ``schedule``: the prefix, the target, then its parameters."""
        params = [
            part for k, v in sorted(schedule.params.items()) for part in ("--param", f"{k}={v}")
        ]
        return (*self.prefix, schedule.target, *params)

    def __call__(self, schedule: Schedule, firing: TriggerFiring) -> Launch:
        """Run the command; a timeout kills it (its exit code is then negative)."""
        del firing  # the command is the same whatever fired it
        command = self.command(schedule)
        try:
            process = subprocess.Popen(command, cwd=self.cwd)
        except OSError as exc:
            return Launch(command=command, error=f"cannot start {command[0]!r}: {exc}")
        try:
            code = process.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
            return Launch(
                command=command,
                pid=process.pid,
                exit_code=code,
                error=f"killed after {self.timeout_s:g} s (agent.launch_timeout_s)",
            )
        return Launch(command=command, pid=process.pid, exit_code=code)


def pipeline_command(settings: Settings) -> tuple[str, ...]:
    """The command prefix targets run with: ``agent.command``, else ``mlcycle pipelines run``.

    The project and its stores are passed on, so the pipeline writes where the agent reads.
    """
    if settings.agent.command:
        return tuple(settings.agent.command)
    store = [
        part
        for option, url in (
            ("--metadata-url", settings.store.metadata_url),
            ("--artifacts-url", settings.store.artifacts_url),
        )
        # A URL with a password stays in the environment the process inherits, off its argv.
        if url is not None and not _has_password(url)
        for part in (option, url)
    ]
    home = ["--home", str(settings.home)]
    return (sys.executable, "-m", "mlcycle", *home, *store, "pipelines", "run")


def run_retrain(settings: Settings, target: str, params: Mapping[str, object]) -> str:
    """Run pipeline ``target`` in a process of its own, every step anew; says what ran.

    Raises ``MlcycleError`` with the end of its output when it fails, cannot
    start, or outlives ``agent.launch_timeout_s``.
    """
    pairs = [part for k, v in sorted(params.items()) for part in ("--param", f"{k}={v}")]
    command = (*pipeline_command(settings), target, "--no-cache", *pairs)
    shown = f"`mlcycle pipelines run {target}`"
    timeout = settings.agent.launch_timeout_s
    try:
        done = subprocess.run(
            command, cwd=settings.home, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise MlcycleError(
            f"{shown} was killed after {timeout:g} s (agent.launch_timeout_s)"
        ) from None
    except OSError as exc:
        raise MlcycleError(f"cannot start {shown}: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise MlcycleError(f"{shown} exited with {done.returncode}: {tail}")
    return f"{shown} (process)"


def _has_password(url: str) -> bool:
    head = url.partition("://")[2].partition("/")[0]
    return ":" in head.partition("@")[0] and "@" in head
