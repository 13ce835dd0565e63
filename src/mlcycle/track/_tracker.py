"""The collaborators tracking works with, held together: stores, clock, settings and actor.

A workspace builds one ``Tracker``; ``track`` never reaches for the workspace
itself. The tracker owns the background writer, starts runs (capturing their
environment) without waiting on the database, lets reads see what this process
buffered, and reaps runs whose process died before anyone reads runs.
"""

from __future__ import annotations

import atexit
import math
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlcycle.clock import Clock
from mlcycle.ids import Digest, RunId, new_id
from mlcycle.settings import TrackingSettings
from mlcycle.store import (
    ArtifactRecord,
    ArtifactStore,
    Experiment,
    MetadataStore,
    MetricPoint,
    Run,
    RunStart,
    RunStatus,
    WriteBatch,
)
from mlcycle.track._environment import (
    capture_command,
    capture_environment,
    capture_variables,
    git_state,
)
from mlcycle.track._redact import redact_mapping
from mlcycle.track._runs import ActiveRun, current_run, outcome
from mlcycle.track._search import RunView, runs_frame
from mlcycle.track._seed import take_pending_seed
from mlcycle.track._values import check_name, text_values
from mlcycle.track._writer import START, BatchWriter

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_EXPERIMENT", "Tracker"]

DEFAULT_EXPERIMENT = "default"
REAP_EVERY_S = 1.0
_open_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


@dataclass(eq=False)
class Tracker:
    """Starts, writes, reads and reaps runs against one metadata store and artifact store."""

    metadata: MetadataStore
    artifacts: ArtifactStore
    clock: Clock
    settings: TrackingSettings
    actor: str
    project_root: Path | None = None
    writer: BatchWriter = field(init=False, repr=False)
    _experiments: dict[str, Experiment] = field(default_factory=dict, repr=False)
    _environments: set[Digest] = field(default_factory=set, repr=False)
    _active: dict[RunId, ActiveRun] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _reaped_at: float = field(default=-math.inf, repr=False)

    def __post_init__(self) -> None:
        self.writer = BatchWriter(
            self.metadata,
            clock=self.clock,
            capacity=self.settings.buffer_size,
            flush_interval_s=self.settings.flush_interval_s,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
        )
        _open_trackers.add(self)

    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,  # Any: stored as text
        tags: Mapping[str, Any] | None = None,  # Any: stored as text
        parent: str | None = None,
        stored: bool = False,
        write: Callable[[RunId, WriteBatch], None] | None = None,
    ) -> ActiveRun:
        """Start a run; inside another run of this tracker in the same thread it is a child.

        The run's id is made here and its start is buffered like a logged
        value, so starting waits on the database only the first time an
        experiment name is used in this process (or for an explicit ``parent``
        this process did not start). With ``stored``, the start is written
        in this thread before this returns (a pipeline step's record points
        at its run at once), without waiting for the writer thread. With
        ``write``, the start is handed to it as a batch (with the run's id) to
        store in the same transaction as the caller's own rows, before this
        returns: a pipeline step's run and its record cost one transaction.
        """
        check_name(experiment, what="experiment")
        run_name = check_name(name, what="run") if name is not None else _default_name()
        checked_params = redact_mapping(text_values(params, kind="param"))
        checked_tags = {
            **capture_variables(self.settings.env_allowlist),
            **redact_mapping(text_values(tags, kind="tag")),
        }
        parent_id = self._parent(parent)
        found = self._experiment(experiment)
        environment = self._environment()
        git = git_state(self.project_root) if self.project_root else None
        inputs = [(f"env:{environment}", "environment")]
        if parent_id is not None:
            inputs.append((f"run:{parent_id}", "parent"))
        now = self.clock.now()
        start = RunStart(
            id=RunId(new_id()),
            experiment_id=found.id,
            name=run_name,
            actor=self.actor,
            start_time=now,
            parent_id=parent_id,
            environment_digest=environment,
            git_commit=git.commit if git else None,
            git_dirty=git.dirty if git else None,
            command=capture_command(),
            seed=take_pending_seed(),
            params=checked_params,
            tags=checked_tags,
            inputs=inputs,
        )
        self.writer.register(start.id)
        try:
            if write is not None:
                write(start.id, WriteBatch([start]))
            elif stored:
                self.metadata.apply(WriteBatch([start]))
            else:
                self.writer.put((START, start.id, "", start, 0, 0.0))
        except BaseException:
            self.writer.unregister(start.id)
            raise
        run = ActiveRun(
            _record(start, experiment=found), tracker=self, stored=stored or write is not None
        )
        with self._lock:
            self._active[start.id] = run
        return run

    def _parent(self, parent: str | None) -> RunId | None:
        if parent is not None:
            with self._lock:
                if parent in self._active:
                    return RunId(parent)
            self.writer.settle()
            return self.metadata.get_run(parent).id
        enclosing = current_run()
        if enclosing is not None and enclosing.tracker_is(self):
            return enclosing.id
        return None

    def _experiment(self, name: str) -> Experiment:
        found = self._experiments.get(name)
        if found is None:
            found = self._experiments[name] = self.metadata.ensure_experiment(
                name, actor=self.actor
            )
        return found

    def _environment(self) -> Digest:
        environment = capture_environment(packages=self.settings.capture_packages)
        if environment.digest not in self._environments:
            self.metadata.put_environment(environment)
            self._environments.add(environment.digest)
        return environment.digest

    def forget(self, run: ActiveRun) -> None:
        """Drop a run that has ended from the runs this tracker keeps alive."""
        with self._lock:
            self._active.pop(run.id, None)

    def flush(self) -> None:
        """Write everything logged so far; raises what went wrong writing it."""
        self.writer.flush()

    def settle(self) -> None:
        """Before a read: let what this process buffered reach the store (raises nothing)."""
        self.writer.settle()

    def reap_stale_runs(self, *, force: bool = True) -> list[RunId]:
        """Mark runs whose heartbeat is older than ``stale_after_s`` as killed; returns their ids.

        This process's own live runs are heartbeated first if they are due, so
        fast-forwarding a simulated clock kills only runs whose process is gone.
        Without ``force``, runs are reaped at most once a second (of clock time),
        so reading runs in a loop does not write each time.
        """
        now = self.clock.now()
        if not force and now.timestamp() - self._reaped_at < REAP_EVERY_S:
            return []
        self.writer.heartbeat_if_due()
        older_than = now - timedelta(seconds=self.settings.stale_after_s)
        reaped = self.metadata.reap_stale_runs(older_than=older_than, at=now)
        self._reaped_at = now.timestamp()
        return reaped

    def search_runs(
        self,
        experiments: str | Sequence[str] | None = None,
        *,
        where: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """Runs matching ``where``, as a DataFrame (see ``runs_frame`` for the columns)."""
        self.settle()
        self.reap_stale_runs(force=False)
        names = [experiments] if isinstance(experiments, str) else experiments
        keys = [order_by] if isinstance(order_by, str) else list(order_by or ())
        found = self.metadata.search_runs(
            experiments=names, where=where, order_by=keys, limit=limit
        )
        return runs_frame(found)

    def get_run(self, run_id: str) -> RunView:
        """The run with id ``run_id``, with its metric history a call away."""
        self.settle()
        self.reap_stale_runs(force=False)
        return RunView.of(self.metadata.get_run(run_id), source=self)

    def metric_history(self, run_id: RunId, key: str) -> list[MetricPoint]:
        """Every value of ``key`` the run logged, including values still buffered here."""
        self.settle()
        return self.metadata.metric_history(run_id, key)

    def list_artifacts(self, run_id: RunId) -> list[ArtifactRecord]:
        """The run's artifacts, by name."""
        self.settle()
        return self.metadata.list_artifacts(run_id)

    def close(self, *, cause: BaseException | None = None) -> None:
        """End the runs still open here and stop the writer; stores stay open.

        Open runs end as finished, or as ``cause`` (an uncaught exception) says.
        """
        status, error = outcome(cause) if cause is not None else (RunStatus.FINISHED, None)
        with self._lock:
            still_open = list(self._active.values())
        for run in reversed(still_open):
            run.finish(status, error=error)
        self.writer.close()
        _open_trackers.discard(self)


def _record(start: RunStart, *, experiment: Experiment) -> Run:
    """The record of a run as its start made it, before the store has it."""
    return Run(
        id=start.id,
        experiment_id=experiment.id,
        experiment_name=experiment.name,
        name=start.name,
        status=RunStatus.RUNNING,
        start_time=start.start_time,
        end_time=None,
        heartbeat_at=start.start_time,
        actor=start.actor,
        parent_id=start.parent_id,
        environment_digest=start.environment_digest,
        git_commit=start.git_commit,
        git_dirty=start.git_dirty,
        command=start.command,
        seed=start.seed,
        params=dict(start.params),
        tags=dict(start.tags),
    )


def _default_name() -> str:
    return f"run-{new_id()[-8:].lower()}"


_uncaught: list[BaseException] = []
_previous_hook = sys.excepthook


def _remember_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """Keep the exception that is ending the program, so open runs end as failed, not finished."""
    _uncaught.append(value)
    _previous_hook(kind, value, tb)


sys.excepthook = _remember_uncaught


@atexit.register
def _close_at_exit() -> None:
    """Write what is buffered and end open runs when the interpreter exits."""
    cause = _uncaught[-1] if _uncaught else None
    for tracker in list(_open_trackers):
        try:
            tracker.close(cause=cause)
        except Exception as exc:  # noqa: BLE001  (at exit, report and go on)
            print(f"mlcycle: could not write the last logged values: {exc}", file=sys.stderr)  # noqa: T201
