"""The records the metadata store keeps, as frozen dataclasses every backend returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

from mlcycle.ids import Digest, EventId, ExperimentId, RunId

__all__ = [
    "ArtifactRecord",
    "Dataset",
    "DatasetVersion",
    "Environment",
    "Event",
    "Experiment",
    "LineageEdge",
    "MetricPoint",
    "PointTuple",
    "Run",
    "RunEnd",
    "RunError",
    "RunStart",
    "RunStatus",
    "RunValues",
    "WriteBatch",
    "WriteOperation",
]


class RunStatus(StrEnum):
    """Where a run is in its life; every status but ``running`` is final."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"


@dataclass(frozen=True, slots=True)
class Experiment:
    """A named group of runs."""

    id: ExperimentId
    name: str
    created_at: datetime
    actor: str


@dataclass(frozen=True, slots=True)
class RunError:
    """Why a run failed: the exception as it was raised."""

    type: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One logged value of a metric; ``timestamp`` is seconds since the epoch."""

    key: str
    value: float
    step: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of training code, with what it logged; ``metrics`` holds latest values."""

    id: RunId
    experiment_id: ExperimentId
    experiment_name: str
    name: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None
    heartbeat_at: datetime
    actor: str
    parent_id: RunId | None = None
    environment_digest: Digest | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    command: str | None = None
    seed: int | None = None
    error: RunError | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Environment:
    """The software a run ran with, stored once per distinct digest."""

    digest: Digest
    python: str
    platform: str
    packages: dict[str, str]


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """A named artifact of a run, pointing at a blob in the artifact store."""

    run_id: RunId
    name: str
    digest: Digest
    size: int
    media_type: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event log; ``position`` is the cursor to poll after."""

    position: int
    id: EventId
    time: datetime
    type: str
    subject: str
    actor: str
    payload: dict[str, Any]  # Any: JSON decoded from the store


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """``source`` was used to make ``target`` (``kind`` says how), both as references."""

    source: str
    target: str
    kind: str
    created_at: datetime
    actor: str


@dataclass(frozen=True, slots=True)
class RunStart:
    """A run to create, with the id its client chose (a ULID), so starting never waits.

    ``inputs`` are lineage edges into the new run, as ``(source, kind)`` pairs
    such as ``("env:sha256:...", "environment")`` or ``("run:<id>", "parent")``.
    """

    id: RunId
    experiment_id: ExperimentId
    name: str
    actor: str
    start_time: datetime
    parent_id: RunId | None = None
    environment_digest: Digest | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    command: str | None = None
    seed: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    inputs: Sequence[tuple[str, str]] = ()


PointTuple: TypeAlias = tuple[str, float, int, float]
"""A metric point as ``(key, value, step, timestamp)``: the compact form batches carry."""


@dataclass(frozen=True, slots=True)
class RunValues:
    """Metric points, params and tags logged to one run.

    ``points`` holds more metric points as plain tuples, which cost a tenth of
    a ``MetricPoint`` to make; the background writer sends its values that way.
    """

    run_id: RunId
    metrics: Sequence[MetricPoint] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    points: Sequence[PointTuple] = ()


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A running run to close with ``status`` (finished, failed or killed)."""

    run_id: RunId
    status: RunStatus
    end_time: datetime
    error: RunError | None = None


WriteOperation: TypeAlias = RunStart | RunValues | RunEnd


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """What a client wrote since its last flush, applied all or nothing in one transaction.

    ``operations`` take effect in order, and the events they make (``run.started``,
    ``lineage.edge_added``, ``run.<status>``) are appended in that order; a run
    must start before (or earlier in the batch than) what is logged to it. The
    runs in ``heartbeats`` that are still running are marked alive at
    ``heartbeat_at``. A REST client would send one batch as one request.
    """

    operations: Sequence[WriteOperation] = ()
    heartbeats: Sequence[RunId] = ()
    heartbeat_at: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.operations) or (bool(self.heartbeats) and self.heartbeat_at is not None)


@dataclass(frozen=True, slots=True)
class Dataset:
    """A named, versioned table: what stays the same across its versions."""

    name: str
    created_at: datetime
    actor: str
    time_column: str | None = None
    key: tuple[str, ...] = ()
    description: str | None = None
    table_path: str | None = None
    """The table's name in the table area when an erasure moved it (else ``datasets/<name>``)."""


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """One version of a dataset: its content digest, shape, origin and Delta commit.

    ``digest`` names the content (schema and rows, in order); ``source``
    describes where the rows came from (``file:/abs/hour.csv``,
    ``sql:postgresql://host/db``, ``pandas``, ``data:/bike/3`` for a rollback);
    ``operation`` is ``create``, ``append``, ``overwrite`` or ``rollback``.
    ``policy`` holds the policy findings as JSON objects.
    """

    name: str
    version: int
    rows: int
    columns: list[str]
    types: list[str]
    digest: Digest
    created_at: datetime
    source: str
    actor: str
    delta_version: int
    operation: str = "create"
    profile_digest: Digest | None = None
    policy: list[dict[str, Any]] = field(default_factory=list)  # Any: JSON values
    description: str | None = None

    @property
    def ref(self) -> str:
        """The lineage reference of this version, such as ``data:/bike/3``."""
        return f"data:/{self.name}/{self.version}"
