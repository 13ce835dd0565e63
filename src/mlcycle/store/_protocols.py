"""The narrow interfaces callers reach the stores through.

A SQL backend implements them today; a REST client for a team server can
implement the same ones later without touching any caller. Each Protocol is a
capability, a handful of methods; one backend object usually implements many.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO, Literal, Protocol

from mlcycle.ids import Digest, ExperimentId, RunId
from mlcycle.store._alert_records import Alert, AlertChange, AlertDelivery, AlertRuleState
from mlcycle.store._pipeline_records import PipelineRun, StepRun
from mlcycle.store._records import (
    AliasMove,
    ArtifactRecord,
    Dataset,
    DatasetVersion,
    Deployment,
    Environment,
    Event,
    Experiment,
    LineageEdge,
    MetricPoint,
    ModelVersion,
    MonitorPoint,
    RegisteredModel,
    Run,
    RunError,
    RunStatus,
    Schedule,
    TriggerFiring,
    WriteBatch,
)

__all__ = [
    "AlertLog",
    "ArtifactIndex",
    "ArtifactStore",
    "DatasetCatalog",
    "DeploymentCatalog",
    "EnvironmentCatalog",
    "EventLog",
    "ExperimentCatalog",
    "LineageGraph",
    "MetadataStore",
    "MetricLog",
    "ModelCatalog",
    "MonitorResultLog",
    "PipelineLog",
    "RunLog",
    "ScheduleCatalog",
    "TableArea",
]


class ExperimentCatalog(Protocol):
    """Named groups of runs."""

    def ensure_experiment(self, name: str, *, actor: str) -> Experiment:
        """Return the experiment called ``name``, creating it if it does not exist."""
        ...

    def get_experiment(self, name_or_id: str) -> Experiment:
        """Raise ``NotFound`` naming the experiment when there is none."""
        ...

    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        ...


class RunLog(Protocol):
    """Runs: their creation, status, heartbeats and search."""

    def apply(self, batch: WriteBatch) -> None:
        """Apply ``batch`` in one transaction, all or nothing (see ``WriteBatch``).

        Raises what the single-run methods raise: ``NotFound`` for an unknown
        experiment, parent or run, ``ImmutableValue`` for a param given a new
        value, ``ValidationFailed`` for a bad key or a run that is not running.
        """
        ...

    def create_run(
        self,
        *,
        experiment_id: ExperimentId,
        name: str,
        actor: str,
        start_time: datetime,
        parent_id: RunId | None = None,
        environment_digest: Digest | None = None,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        command: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Run:
        """Record a new running run (and a ``run.started`` event)."""
        ...

    def get_run(self, run_id: str) -> Run:
        """Raise ``NotFound`` naming the id when there is no such run."""
        ...

    def finish_run(
        self, run_id: RunId, *, status: RunStatus, end_time: datetime, error: RunError | None = None
    ) -> Run:
        """Close a running run (and record a ``run.<status>`` event)."""
        ...

    def heartbeat(self, run_ids: Sequence[RunId], *, at: datetime) -> None:
        """Mark these running runs alive at ``at``."""
        ...

    def reap_stale_runs(self, *, older_than: datetime, at: datetime) -> list[RunId]:
        """Mark running runs whose last heartbeat is before ``older_than`` as killed."""
        ...

    def set_seed(self, run_id: RunId, seed: int) -> None:
        """Record the seed a run set with ``seed_everything``."""
        ...

    def search_runs(
        self,
        *,
        experiments: Sequence[str] | None = None,
        where: str | None = None,
        order_by: Sequence[str] = (),
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Run]:
        """Runs matching a ``where`` expression, ordered by ``order_by`` keys."""
        ...


class MetricLog(Protocol):
    """What runs log: metric history, params and tags, written in batches."""

    def log_batch(
        self,
        run_id: RunId,
        *,
        metrics: Sequence[MetricPoint] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Store a batch atomically; a param logged again with a new value is ``ImmutableValue``."""
        ...

    def metric_history(self, run_id: RunId, key: str) -> list[MetricPoint]:
        """Every value logged for ``key``, ordered by step, then time."""
        ...


class EnvironmentCatalog(Protocol):
    """Software environments, stored once per digest."""

    def put_environment(self, environment: Environment) -> None:
        """Store ``environment`` unless its digest is already there."""
        ...

    def get_environment(self, digest: Digest) -> Environment:
        """Raise ``NotFound`` naming the digest when there is none."""
        ...


class ArtifactIndex(Protocol):
    """Which named artifacts each run has, and where their content is."""

    def record_artifact(self, record: ArtifactRecord) -> None:
        """Add an artifact to a run; a name already taken in that run raises ``AlreadyExists``."""
        ...

    def list_artifacts(self, run_id: RunId) -> list[ArtifactRecord]:
        """A run's artifacts, by name."""
        ...


class EventLog(Protocol):
    """The append-only log every stage hands work through."""

    def append_event(
        self,
        type: str,  # noqa: A002  (the event's type is its public name)
        *,
        subject: str,
        actor: str,
        time: datetime,
        payload: dict[str, Any] | None = None,  # Any: JSON-able
    ) -> Event:
        """Append an event; positions only increase, in commit order."""
        ...

    def read_events(
        self, *, since: int = 0, types: Iterable[str] | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events after position ``since``, oldest first."""
        ...

    def load_cursor(self, consumer: str) -> int:
        """The last position ``consumer`` acknowledged (0 if none)."""
        ...

    def save_cursor(self, consumer: str, position: int) -> None:
        """Remember that ``consumer`` has handled every event up to ``position``."""
        ...


class LineageGraph(Protocol):
    """Edges from what was used to what was made."""

    def add_edge(
        self, source: str, target: str, *, kind: str, actor: str, time: datetime
    ) -> LineageEdge:
        """Record that ``source`` was used to make ``target``; adding it again changes nothing."""
        ...

    def remove_edge(
        self, source: str, target: str, *, kind: str, actor: str, time: datetime
    ) -> bool:
        """Remove an edge to derived data that is deleted (erasure); ``False`` if there was none."""
        ...

    def edges_into(self, target: str) -> list[LineageEdge]:
        """The edges whose target is ``target``."""
        ...

    def edges_from(self, source: str) -> list[LineageEdge]:
        """The edges whose source is ``source``."""
        ...


class DatasetCatalog(Protocol):
    """Versioned datasets: their names, version records and a per-dataset write lease.

    The tables themselves live in the artifact store's table area; this keeps
    what each version is (digest, shape, origin, Delta commit) so versions are
    listed, compared and resolved without opening a table.
    """

    def ensure_dataset(
        self,
        name: str,
        *,
        actor: str,
        time: datetime,
        time_column: str | None = None,
        key: Sequence[str] = (),
        description: str | None = None,
    ) -> Dataset:
        """Return dataset ``name``, creating it (and a ``dataset.created`` event) if new."""
        ...

    def get_dataset(self, name: str) -> Dataset:
        """Raise ``NotFound`` naming the dataset when there is none."""
        ...

    def list_datasets(self) -> list[Dataset]:
        """Every dataset, by name."""
        ...

    def add_dataset_version(
        self,
        record: DatasetVersion,
        *,
        inputs: Sequence[tuple[str, str]] = (),
        release_lock: str | None = None,
        validation: str | None = None,
    ) -> DatasetVersion:
        """Record the next version of ``record.name`` (its ``version`` is ignored and assigned).

        In one transaction: the version row, a ``dataset.version_created``
        event (its ``validation`` is ``"passed"``, ``"skipped"`` or ``None``), a
        lineage edge from each ``(source ref, kind)`` of ``inputs`` to the
        version's ``data:/name/N``, and the release of the lease held by
        ``release_lock``. Returns the record as stored.
        """
        ...

    def get_dataset_version(self, name: str, version: int) -> DatasetVersion:
        """Raise ``NotFound`` naming the dataset and its latest version when there is none."""
        ...

    def latest_dataset_version(self, name: str) -> DatasetVersion | None:
        """The newest version of dataset ``name`` (``None`` before the first one)."""
        ...

    def list_dataset_versions(self, name: str) -> list[DatasetVersion]:
        """Every version of dataset ``name``, oldest first."""
        ...

    def lock_dataset(self, name: str, *, owner: str, now: datetime, ttl_s: float) -> str | None:
        """Take the write lease of ``name`` for ``ttl_s`` seconds.

        Returns ``None`` when taken (or already held by ``owner``), else the
        current holder, whose lease has not expired.
        """
        ...

    def unlock_dataset(self, name: str, *, owner: str) -> None:
        """Give the lease back if ``owner`` holds it."""
        ...

    def rewrite_dataset(
        self,
        name: str,
        *,
        versions: Sequence[DatasetVersion],
        table_path: str,
        owner: str,
        actor: str,
        time: datetime,
        payload: dict[str, Any],  # Any: JSON values
    ) -> list[DatasetVersion]:
        """Replace version records and the table location of ``name``, as an erasure does.

        In one transaction, while ``owner`` holds the lease: each of ``versions``
        (matched by number) gets its new rows, digest, Delta commit, profile and
        policy; the dataset's table moves to ``table_path``; a ``dataset.erased``
        event carries ``payload``. Returns every version as stored.
        """
        ...


class ModelCatalog(Protocol):
    """Registered models, their versions, and aliases with the history of every move.

    The model files live in the artifact store; this keeps what each version
    is (flavor, digest, signature, origin, evaluation) and which version each
    alias names. Alias moves are serialised with the event log, so two
    processes promoting at once leave both moves in the history, in the order
    they took effect, and the alias on the later one.
    """

    def ensure_model(
        self, name: str, *, actor: str, time: datetime, description: str | None = None
    ) -> RegisteredModel:
        """Return model ``name``, creating it (and a ``model.created`` event) if new."""
        ...

    def get_model(self, name: str) -> RegisteredModel:
        """Raise ``NotFound`` naming the model when there is none."""
        ...

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        ...

    def add_model_version(
        self, record: ModelVersion, *, inputs: Sequence[tuple[str, str]] = ()
    ) -> ModelVersion:
        """Record the next version of ``record.name`` (its ``version`` is ignored and assigned).

        In one transaction: the version row, a ``model.version_created`` event,
        and a lineage edge from each ``(source ref, kind)`` of ``inputs`` to the
        version's ``models:/name/N``. Returns the record as stored.
        """
        ...

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        """Raise ``NotFound`` naming the model and its latest version when there is none."""
        ...

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of model ``name``, oldest first."""
        ...

    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        time: datetime,
        evaluation: dict[str, Any] | None = None,  # Any: JSON values
        tags: dict[str, str] | None = None,
        description: str | None = None,
        limitations: str | None = None,
    ) -> ModelVersion:
        """Set the given fields of a version (tags are merged; ``None`` leaves a field as is).

        Records a ``model.evaluated`` event when ``evaluation`` is given, else
        ``model.version_updated``. Returns the version as stored.
        """
        ...

    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        kind: str,
        actor: str,
        time: datetime,
        reason: str | None = None,
        forced: bool = False,
        gates: dict[str, Any] | None = None,  # Any: JSON values
        expect_from: int | Literal["any"] | None = "any",
    ) -> AliasMove:
        """Point ``alias`` at ``to_version`` (``None`` removes it), with its history and event.

        In one transaction: the alias row, an ``AliasMove`` in the history and
        a ``model.alias_moved`` event whose payload is the move. With
        ``expect_from`` set to a version (or ``None`` for "no alias yet") the
        move is refused with ``AliasConflict`` when the alias names something
        else by then, so a rollback computed from a read cannot undo a
        concurrent move. Raises ``NotFound`` for an unknown model or version.
        """
        ...

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of ``name``'s aliases (or of one alias), oldest first."""
        ...


class ScheduleCatalog(Protocol):
    """Schedules, the firings of their triggers, and the lease agents take turns by.

    Exactly once: a firing is claimed by inserting its ``(schedule, key)`` row
    first, and only the agent whose insert went in launches the target. The
    lease keeps a second agent idle while one works; the key keeps a firing
    single even when a lease expires mid-pass.
    """

    def add_schedule(self, schedule: Schedule, *, time: datetime) -> Schedule:
        """Store a new schedule and a ``schedule.added`` event; a taken name: ``AlreadyExists``."""
        ...

    def get_schedule(self, name: str) -> Schedule:
        """Raise ``NotFound`` naming the schedule when there is none."""
        ...

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    def remove_schedule(self, name: str, *, actor: str, time: datetime) -> Schedule:
        """Delete a schedule (and record ``schedule.removed``); its firings stay as history."""
        ...

    def claim_firing(self, firing: TriggerFiring) -> bool:
        """Record ``firing`` unless its key was claimed already; whether this call claimed it.

        A cron firing is also refused unless its tick is newer than the
        schedule's ``last_fired_tick``, which it then becomes: ticks only move
        forward, so an agent that fell behind never fires an older tick.
        """
        ...

    def finish_firing(
        self,
        firing: TriggerFiring,
        *,
        payload: dict[str, Any],  # Any: JSON values
    ) -> TriggerFiring:
        """Store a firing's command, pid and exit code, with a ``schedule.fired`` event."""
        ...

    def list_firings(
        self, schedule: str | None = None, *, limit: int = 1000
    ) -> list[TriggerFiring]:
        """Firings, oldest first (of one schedule, when given)."""
        ...

    def take_lease(self, name: str, *, holder: str, now: datetime, ttl_s: float) -> str | None:
        """Take or renew lease ``name`` for ``ttl_s`` seconds.

        Returns ``None`` when ``holder`` has it now, else the other holder,
        whose lease has not expired.
        """
        ...

    def release_lease(self, name: str, *, holder: str) -> None:
        """Give the lease back if ``holder`` has it."""


class DeploymentCatalog(Protocol):
    """Deployments as applied: what each serving target serves and how it splits traffic.

    Every change commits with its event (``deployment.applied``,
    ``deployment.removed``), whose payload names the deployment and its
    revision, so servers follow changes from the event log.
    """

    def put_deployment(self, deployment: Deployment, *, time: datetime) -> Deployment:
        """Create ``deployment`` or change the stored one to it; returns it as stored.

        A change gets the next revision (a new deployment gets 1, and its
        ``revision`` and times as given are ignored) and a ``deployment.applied``
        event with the whole deployment as payload, in one transaction. A
        deployment equal to the stored one changes nothing and records nothing.
        """
        ...

    def get_deployment(self, name: str) -> Deployment:
        """Raise ``NotFound`` naming the deployment and the known ones when there is none."""
        ...

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, by name."""
        ...

    def remove_deployment(self, name: str, *, actor: str, time: datetime) -> Deployment:
        """Delete a deployment and record ``deployment.removed``; returns what it was."""
        ...


class AlertLog(Protocol):
    """Alerting's durable state: each rule's streak per deployment, alerts, queued notifications.

    An evaluation's outcome (``AlertChange``) commits with its ``alert.fired``,
    ``alert.reopened`` or ``alert.resolved`` event and its pending deliveries,
    and only from the rule state version it was computed from (else ``Conflict``).
    """

    def get_alert_rule_state(self, rule: str, deployment: str) -> AlertRuleState | None:
        """Where ``rule`` stands on ``deployment`` (``None`` before its first evaluation)."""
        ...

    def apply_alert_change(self, change: AlertChange) -> AlertRuleState:
        """Apply one evaluation's outcome in one transaction; returns the new rule state."""
        ...

    def get_alert(self, alert_id: str) -> Alert:
        """Raise ``NotFound`` naming the id when there is no such alert."""
        ...

    def list_alerts(
        self,
        *,
        state: str | None = None,
        rule: str | None = None,
        deployment: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, newest firing first, optionally of one state, rule or deployment."""
        ...

    def claim_deliveries(
        self,
        *,
        now: datetime,
        holder: str,
        lease_s: float,
        notifiers: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[AlertDelivery]:
        """Pending deliveries due by ``now`` that nobody holds (to ``notifiers``), leased."""
        ...

    def finish_delivery(
        self,
        delivery_id: str,
        *,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
        actor: str = "",
    ) -> AlertDelivery:
        """Record an attempt: delivered, to retry at ``retry_at``, or failed for good."""
        ...

    def list_deliveries(
        self, *, alert_id: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[AlertDelivery]:
        """Deliveries, oldest first, optionally of one alert or status."""
        ...

    def queue_deliveries(
        self,
        alert_id: str,
        *,
        event: str,
        payload: dict[str, Any],  # Any: JSON values
        notifiers: Sequence[str],
        time: datetime,
    ) -> list[AlertDelivery]:
        """Queue one pending delivery of ``event`` per notifier for what followed an alert.

        Raises ``NotFound`` (and queues nothing) when there is no such alert.
        """
        ...


class MonitorResultLog(Protocol):
    """Monitoring's time series: every metric of every scored window, stored once per window."""

    def record_monitor_window(
        self,
        deployment: str,
        *,
        window_start: datetime,
        window_end: datetime,
        values: Mapping[str, float | None],
        recorded_at: datetime,
    ) -> bool:
        """Store one window's metrics in one transaction; ``False`` if it was stored already."""
        ...

    def monitor_windows(
        self, deployment: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[datetime, datetime]]:
        """The stored windows ``(start, end)`` ending in ``(since, until]``, oldest first."""
        ...

    def monitored_deployments(self) -> list[str]:
        """The deployments with stored results, by name."""
        ...

    def read_monitor_results(
        self,
        deployment: str,
        *,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[MonitorPoint]:
        """The stored metrics of windows ending in ``(since, until]``, oldest first."""
        ...


class PipelineLog(Protocol):
    """Pipeline runs and their step runs, durable after every step.

    Starting, ending and killing a run record ``pipeline.started``,
    ``pipeline.finished`` or ``pipeline.failed`` in the same transaction; the
    dataset versions a run reads become lineage edges into ``pipeline:<id>``.
    """

    def create_pipeline_run(self, record: PipelineRun, steps: Sequence[StepRun]) -> PipelineRun:
        """Record a new run with its steps, lineage and ``pipeline.started`` event."""
        ...

    def get_pipeline_run(self, run_id: str) -> PipelineRun:
        """Raise ``NotFound`` naming the id when there is no such run."""
        ...

    def list_pipeline_runs(
        self, *, pipeline: str | None = None, limit: int = 100
    ) -> list[PipelineRun]:
        """Pipeline runs, newest first."""
        ...

    def list_step_runs(self, pipeline_run_id: str) -> list[StepRun]:
        """The run's steps in DAG order."""
        ...

    def save_step_run(self, record: StepRun) -> None:
        """Replace the stored state of one step of a run."""
        ...

    def save_step_runs(
        self, records: Sequence[StepRun], *, tracking: WriteBatch | None = None
    ) -> None:
        """Replace the stored state of several steps (``tracking`` first) in one transaction."""
        ...

    def update_pipeline_run(self, record: PipelineRun) -> PipelineRun:
        """Store a run's new state; a change of status records its event."""
        ...

    def heartbeat_pipeline_run(self, run_id: str, *, at: datetime) -> None:
        """Note that the process running ``run_id`` is alive."""
        ...

    def reap_stale_pipeline_runs(self, *, older_than: datetime, at: datetime) -> list[str]:
        """Mark running runs not heartbeated since ``older_than`` as killed; their ids."""
        ...

    def find_cached_step(self, cache_key: str) -> StepRun | None:
        """The newest completed step run with ``cache_key``, if any."""
        ...


class MetadataStore(
    ExperimentCatalog,
    RunLog,
    MetricLog,
    EnvironmentCatalog,
    ArtifactIndex,
    EventLog,
    LineageGraph,
    Protocol,
):
    """Every metadata capability, as one SQL database provides them."""

    def close(self) -> None:
        """Release connections."""
        ...


class ArtifactStore(Protocol):
    """Content-addressed blob storage: the same bytes are stored once, reads verify."""

    def put(self, source: BinaryIO) -> Digest:
        """Stream ``source`` in; returns its ``sha256:`` digest."""
        ...

    def put_file(self, path: str) -> Digest:
        """Stream a local file in."""
        ...

    def open(self, digest: Digest) -> BinaryIO:
        """A stream of the blob that raises ``IntegrityError`` at its end if the bytes changed."""
        ...

    def exists(self, digest: Digest) -> bool:
        """Whether a blob with this digest is stored."""
        ...

    def delete(self, digest: Digest) -> None:
        """Remove a blob (only erasure deletes blobs); a missing one is no error."""
        ...

    def location(self, digest: Digest) -> str:
        """Where the blob lives (a path or URL), for error messages and tools."""
        ...


class TableArea(Protocol):
    """Mutable tables (Delta) beside the blobs, under the same root, never mixed with them."""

    def table_uri(self, name: str) -> str:
        """The URI of table ``name``; the name is checked so it cannot escape the area."""
        ...

    def storage_options(self) -> dict[str, str]:
        """Options that let deltalake and pyarrow reach the area (empty when local)."""
        ...

    def delete_table(self, name: str) -> None:
        """Remove every file of table ``name``; a table that is not there is no error.

        Only erasure deletes tables: it is the one deliberate exception to never deleting.
        """
        ...
