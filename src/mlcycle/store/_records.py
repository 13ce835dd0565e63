"""The records the metadata store keeps, as frozen dataclasses every backend returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeAlias

from mlcycle.ids import Digest, EventId, ExperimentId, RunId

__all__ = [
    "AliasMove",
    "ArtifactRecord",
    "Dataset",
    "DatasetVersion",
    "Deployment",
    "Environment",
    "Event",
    "Experiment",
    "LineageEdge",
    "MetricPoint",
    "ModelVersion",
    "MonitorPoint",
    "PointTuple",
    "RegisteredModel",
    "Run",
    "RunEnd",
    "RunError",
    "RunStart",
    "RunStatus",
    "RunValues",
    "Schedule",
    "ScheduleKind",
    "TrafficPolicy",
    "TriggerFiring",
    "Variant",
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


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model in the registry: what stays the same across its versions.

    ``aliases`` maps each alias the model has now (``production``,
    ``staging``, ``challenger`` or the user's own) to the version it names.
    """

    name: str
    created_at: datetime
    actor: str
    description: str | None = None
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model: its stored files, signature, origin and results.

    ``digest`` names the model file the flavor wrote (verified on every load);
    ``files`` holds the other stored files by role (``onnx`` for a converted
    copy, ``input_example``, ...). ``signature`` is the JSON form of the
    inferred ``Signature`` (input columns and types, output). ``dataset_versions``
    are references such as ``data:/bike/1`` the training run loaded;
    ``code_version`` is the git commit (``<sha>-dirty`` when the tree had changes).
    ``evaluation`` holds the last gate evaluation (JSON, see ``mlcycle.registry``);
    ``publisher`` is the actor who registered it, which a trusted-publisher list
    names. ``safe`` is false for flavors that load through pickle.
    """

    name: str
    version: int
    flavor: str
    digest: Digest
    signature: dict[str, Any]  # Any: JSON values
    run_id: RunId | None
    dataset_versions: tuple[str, ...]
    code_version: str | None
    created_at: datetime
    actor: str
    size: int = 0
    safe: bool = True
    files: dict[str, Digest] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    limitations: str | None = None
    evaluation: dict[str, Any] | None = None  # Any: JSON values

    @property
    def ref(self) -> str:
        """The lineage reference of this version, such as ``models:/bike-demand/3``."""
        return f"models:/{self.name}/{self.version}"

    @property
    def publisher(self) -> str:
        """Who registered this version: the actor a trusted-publisher list is checked against."""
        return self.actor


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One move of a model's alias, as the audit trail keeps it.

    ``from_version`` is what the alias named before (``None`` when it was
    new), ``to_version`` what it names after (``None`` when it was removed).
    ``kind`` is ``promote``, ``rollback`` or ``remove``; ``forced`` marks a
    promotion past failed gates, whose ``reason`` is then required.
    ``gates`` holds the gate results the move was decided on (JSON).
    ``position`` is the event log position of the ``model.alias_moved`` event.
    """

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    kind: str
    actor: str
    time: datetime
    reason: str | None = None
    forced: bool = False
    gates: dict[str, Any] | None = None  # Any: JSON values
    position: int = 0


ScheduleKind: TypeAlias = Literal["cron", "dataset", "alert"]
"""What fires a schedule: cron ticks, new versions of a dataset, or an alert."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A target the agent launches when its trigger fires.

    ``spec`` is the cron expression, the dataset name or the alert name, by
    ``kind``. ``params`` are passed to the target as ``--param k=v``.
    ``added_position`` is the event position of its ``schedule.added`` event:
    only later events fire it. ``last_fired_tick`` is the newest cron tick
    fired; ticks only move forward.
    """

    name: str
    target: str
    kind: ScheduleKind
    spec: str
    params: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    created_at: datetime | None = None
    actor: str = ""
    added_position: int = 0
    last_fired_at: datetime | None = None
    last_fired_tick: datetime | None = None


@dataclass(frozen=True, slots=True)
class TriggerFiring:
    """One firing of a schedule, claimed once by one agent.

    ``key`` is unique per schedule: ``cron:<tick>`` or ``event:<position>``.
    ``exit_code`` and ``command`` are set when the launched target has ended
    (``pid`` when it was started); ``None`` while it runs, or when the agent
    that claimed it died before launching.
    """

    schedule: str
    key: str
    trigger: ScheduleKind
    fired_at: datetime
    agent: str
    tick: datetime | None = None
    position: int | None = None
    command: tuple[str, ...] = ()
    pid: int | None = None
    exit_code: int | None = None
    finished_at: datetime | None = None


TrafficPolicy: TypeAlias = Literal["single", "canary", "ab", "shadow"]
"""How a deployment splits requests between its variants.

``single``: one variant answers everything. ``canary``: a weighted split
(90/10), sticky by a request key when the deployment names one. ``ab``: a
weighted split whose assignment is recorded per request for comparison.
``shadow``: the primary answers; every shadow variant gets a copy off the
request path, and its output is logged, never returned.
"""


@dataclass(frozen=True, slots=True)
class Variant:
    """One model a deployment serves.

    ``model`` is a registry reference (``bike-demand@production``,
    ``bike-demand/3``); an alias is followed when it moves. ``weight`` is the
    variant's share of the traffic among the variants that answer (it is
    ignored for a shadow). A ``shadow`` variant answers nobody.
    """

    name: str
    model: str
    weight: float = 1.0
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class Deployment:
    """A named serving target: its variants and the policy that routes between them.

    ``sticky_key`` names a request field (a column or header value) whose
    hash picks the variant, so one user stays on one variant. ``key_columns``
    are the input columns that identify a prediction when labels are joined
    later from a dataset. ``revision`` counts applied changes, from 1; every
    change is a ``deployment.applied`` event, which servers follow.
    """

    name: str
    variants: tuple[Variant, ...]
    policy: TrafficPolicy = "single"
    sticky_key: str | None = None
    key_columns: tuple[str, ...] = ()
    revision: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    actor: str = ""


@dataclass(frozen=True, slots=True)
class MonitorPoint:
    """One metric of one monitored window of a deployment (``value`` ``None``: missing or NaN)."""

    window_start: datetime
    window_end: datetime
    metric: str
    value: float | None
