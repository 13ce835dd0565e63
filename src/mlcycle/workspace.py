"""The workspace: settings, stores and clock opened together, and the SDK acting on them.

Tests, servers and the agent hold an explicit ``Workspace`` built from
settings; the module-level SDK (``mc.start_run``) acts on the one found from
the working directory. Its reads first let what this process buffered reach the
store, so users always see what they logged.

>>> import tempfile
>>> from mlcycle.settings import Settings
>>> with tempfile.TemporaryDirectory() as home, Workspace.open(Settings(home=home)) as ws:
...     with ws.start_run("demo", params={"model": "gbm"}) as run:
...         run.log_metric("rmse", 41.2)
...     ws.get_run(run.id).metrics
{'rmse': 41.2}
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from mlcycle.clock import Clock, open_clock
from mlcycle.errors import AlreadyExists, ValidationFailed, WorkspaceError
from mlcycle.settings import CONFIG_FILE, Settings, load_settings
from mlcycle.store import (
    ArtifactStore,
    Event,
    Experiment,
    LineageTree,
    MetadataStore,
    ancestry,
    open_artifact_store,
    open_metadata_store,
)
from mlcycle.track import DEFAULT_EXPERIMENT, ActiveRun, RunView, Tracker

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from mlcycle.agent import Agent, Launcher, Schedules, Training
    from mlcycle.data import DatasetRegistry, PolicyFinding
    from mlcycle.ids import Digest
    from mlcycle.monitor import Alerts, Monitor
    from mlcycle.registry import ModelRegistry
    from mlcycle.serve import Deployments, FeedbackLog, PredictionLog
    from mlcycle.store import (
        AlertLog,
        DatasetCatalog,
        DeploymentCatalog,
        ModelCatalog,
        MonitorResultLog,
        ScheduleCatalog,
        TableArea,
    )

__all__ = ["SCHEMAS_DIR", "Workspace", "open_prediction_log", "open_registry"]

SCHEMAS_DIR = "schemas"
"""The project folder of dataset schemas: ``schemas/bike.yaml`` is the schema of ``bike``."""


class Workspace:
    """An open project: its settings, metadata store, artifact store, clock and actor."""

    def __init__(
        self,
        *,
        settings: Settings,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.artifacts = artifacts
        self.clock = clock
        self.actor = settings.actor
        self.tracker = Tracker(
            metadata=metadata,
            artifacts=artifacts,
            clock=clock,
            settings=settings.tracking,
            actor=settings.actor,
            project_root=settings.home,
        )
        self._closed = False
        self._data: DatasetRegistry | None = None
        self._registry: ModelRegistry | None = None
        self._monitor: Monitor | None = None
        self._alerts: Alerts | None = None
        self._training: Training | None = None

    @property
    def data(self) -> DatasetRegistry:
        """Versioned datasets: ``ws.data.register("bike", "data/hour.csv")``, ``ws.data.load``."""
        self._check_open()
        if self._data is None:
            from mlcycle.data import DatasetRegistry  # noqa: PLC0415  (pyarrow loads on first use)

            self._data = DatasetRegistry(
                catalog=cast("DatasetCatalog", self.metadata),  # the SQL store is every catalog
                lineage=self.metadata,
                tables=cast("TableArea", self.artifacts),  # every artifact store has a table area
                artifacts=self.artifacts,
                clock=self.clock,
                actor=self.actor,
                tracker=self.tracker,
                policy_scan=self._scan_policy,
                schema_check=self._check_schema,
                schemas_dir=self.schemas_dir,
                validate_on_register=self.settings.data.validate_on_register,
                on_erase=self._forget_derived,
            )
        return self._data

    @property
    def registry(self) -> ModelRegistry:
        """Registered models: ``ws.registry.register("bike", model)``, ``load``, ``promote``."""
        self._check_open()
        if self._registry is None:
            from mlcycle.registry import ModelRegistry  # noqa: PLC0415  (loads on first use)

            self._registry = ModelRegistry(
                catalog=cast("ModelCatalog", self.metadata),  # the SQL store is every catalog
                lineage=self.metadata,
                runs=self.metadata,
                artifacts=self.artifacts,
                clock=self.clock,
                actor=self.actor,
                settings=self.settings.registry,
                tracker=self.tracker,
                data=self.data,
                environments=self.metadata,
            )
        return self._registry

    @property
    def monitor(self) -> Monitor:
        """Drift against dataset versions: ``ws.monitor.drift("bike/3", window_df)``."""
        self._check_open()
        if self._monitor is None:
            from mlcycle.monitor import Monitor, Sources  # noqa: PLC0415  (loads on first use)
            from mlcycle.serve import spool_dir  # noqa: PLC0415

            self._monitor = Monitor(
                data=self.data,
                artifacts=self.artifacts,
                lineage=self.metadata,
                clock=self.clock,
                actor=self.actor,
                sources=Sources(
                    spool_dir=spool_dir(self.settings),
                    tables=cast("TableArea", self.artifacts),  # every artifact store has one
                    deployments=cast("DeploymentCatalog", self.metadata),  # the SQL store
                    results=cast("MonitorResultLog", self.metadata),  # is every catalog
                    registry=lambda: self.registry,
                    monitors=self.settings.monitors,
                    alerts=lambda: self.alerts,
                ),
            )
        return self._monitor

    @property
    def alerts(self) -> Alerts:
        """The rules of ``[alerts]`` over monitor results: ``ws.alerts.evaluate(result)``, ``list``.

        Built on first use, which checks every rule and notifier; notifications
        are sent from a background thread, which makes a last bounded pass when
        the workspace closes (or the process exits).
        """
        self._check_open()
        if self._alerts is None:
            from mlcycle.monitor import (  # noqa: PLC0415  (loads on first use)
                Alerts,
                RetryPolicy,
                build_notifiers,
                rules_from_settings,
            )

            config = self.settings.alerts
            self._alerts = Alerts(
                log=cast("AlertLog", self.metadata),  # the SQL store is every catalog
                clock=self.clock,
                actor=self.actor,
                rules=rules_from_settings(config),
                notifiers=build_notifiers(config, home=self.settings.home),
                retry=RetryPolicy(
                    max_attempts=config.max_attempts,
                    initial_s=config.retry_initial_s,
                    max_s=config.retry_max_s,
                ),
            )
        return self._alerts

    @property
    def schedules(self) -> Schedules:
        """Schedules: ``ws.schedules.add("nightly", "pipelines.py:training", cron="0 2 * * *")``."""
        self._check_open()
        from mlcycle.agent import Schedules  # noqa: PLC0415  (loads on first use)

        catalog = cast("ScheduleCatalog", self.metadata)  # the SQL store is every catalog
        return Schedules(catalog=catalog, clock=self.clock, actor=self.actor)

    @property
    def deployments(self) -> Deployments:
        """Deployments: ``ws.deployments.deploy("bike", model="bike@production")``, ``list``."""
        self._check_open()
        from mlcycle.serve import (  # noqa: PLC0415  (loads on first use)
            Deployments,
            read_log_schema,
            spool_dir,
        )

        catalog = cast("DeploymentCatalog", self.metadata)  # the SQL store is every catalog
        tables = cast("TableArea", self.artifacts)  # every artifact store has a table area
        return Deployments(
            catalog=catalog,
            registry=self.registry,
            clock=self.clock,
            actor=self.actor,
            logged=functools.partial(
                read_log_schema, spool_dir=spool_dir(self.settings), tables=tables
            ),
        )

    def prediction_log(self, **options: Any) -> PredictionLog:  # Any: PredictionLog's knobs
        """A new prediction log writer for this process (servers hand it their predictions).

        ``options`` are ``PredictionLog``'s knobs (``flush_interval_s``,
        ``roll_bytes``, ``roll_age_s``, ``max_pending``). Close it on shutdown.
        """
        self._check_open()
        from mlcycle.serve import PredictionLog, spool_dir  # noqa: PLC0415  (loads on first use)

        tables = cast("TableArea", self.artifacts)  # every artifact store has a table area
        return PredictionLog(
            spool_dir=spool_dir(self.settings),
            tables=tables,
            **options,
        )

    @property
    def feedback(self) -> FeedbackLog:
        """Labels for served predictions: ``ws.feedback.record("bike", [(request_id, 41.0)])``."""
        self._check_open()
        from mlcycle.serve import FeedbackLog, spool_dir  # noqa: PLC0415  (loads on first use)

        tables = cast("TableArea", self.artifacts)  # every artifact store has a table area
        return FeedbackLog(tables=tables, spool_dir=spool_dir(self.settings), clock=self.clock)

    @property
    def training(self) -> Training:
        """Continuous training under ``[training.NAME]``: ``ws.training.run_once()``, ``status``.

        Built on first use, which checks every policy: its alert rules exist in
        ``[alerts.rules]`` and its pipeline loads (``ValidationFailed`` names the key).
        """
        self._check_open()
        if self._training is None:
            from mlcycle.agent import Training, parse_policies  # noqa: PLC0415  (on first use)
            from mlcycle.pipeline import load_target  # noqa: PLC0415

            home = self.settings.home
            policies = parse_policies(
                self.settings.training,
                rules=self.settings.alerts.rules,
                check_pipeline=lambda target: load_target(target, root=home),
            )
            self._training = Training(host=self, policies=policies, group=self.settings.agent.group)
        return self._training

    def agent(self, *, launcher: Launcher | None = None, name: str | None = None) -> Agent:
        """An agent for this project's schedules, configured by ``settings.agent``.

        ``launcher`` defaults to running ``mlcycle pipelines run TARGET`` (see
        ``agent.command``) in a process of its own. With notifiers in
        ``[alerts.notifiers]``, each pass also sends the alert notifications that are due.
        """
        self._check_open()
        from zoneinfo import ZoneInfo  # noqa: PLC0415

        from mlcycle.agent import Agent, CommandLauncher, pipeline_command  # noqa: PLC0415

        config = self.settings.agent
        if launcher is None:
            launcher = CommandLauncher(
                pipeline_command(self.settings),
                cwd=self.settings.home,
                timeout_s=config.launch_timeout_s,
            )
        return Agent(
            catalog=cast("ScheduleCatalog", self.metadata),  # the SQL store is every catalog
            events=self.metadata,
            clock=self.clock,
            launcher=launcher,
            name=name,
            group=config.group,
            lease_ttl_s=config.lease_ttl_s,
            timezone=ZoneInfo(config.timezone),
            training=self.training if self.settings.training else None,
            alerts=self.alerts if self.settings.alerts.notifiers else None,
        )

    @property
    def schemas_dir(self) -> Path:
        """The project's ``schemas/`` folder, where ``<dataset>.yaml`` schema files live."""
        return self.settings.home / SCHEMAS_DIR

    def _forget_derived(self, digests: set[Digest]) -> None:
        """Delete what the monitor derived from dataset contents an erasure replaced.

        A hook rather than an event follower: it runs inside ``erase``, so no
        copy of the erased rows outlives the call, whether or not an agent runs.
        """
        self.monitor.forget(digests)

    def _scan_policy(self, table: pa.Table) -> list[PolicyFinding]:
        from mlcycle.data import scan_policy  # noqa: PLC0415  (pyarrow loads on first use)

        rules = self.settings.data
        return scan_policy(
            table,
            personal_names=rules.personal_names,
            deny_columns=rules.deny_columns,
            sample_rows=rules.pii_sample_rows,
        )

    def _check_schema(self, name: str, table: pa.Table) -> None:
        from mlcycle.validate import check, load_schema  # noqa: PLC0415  (loads on first use)

        path = self.schemas_dir / f"{name}.yaml"
        if not path.is_file():
            raise ValidationFailed(
                f"cannot validate dataset '{name}': there is no schema file {path}; infer it "
                f"from a registered version with `mlcycle data schema {name}` (or "
                f"mc.validate.infer_schema('{name}')) or write it, or register with "
                "validate=False (--no-validate); nothing was registered"
            )
        report = dataclasses.replace(check(table, load_schema(path)), dataset=name)
        try:
            report.raise_for_errors()
        except ValidationFailed as exc:
            raise ValidationFailed(f"{exc}\nSchema: {path}. Nothing was registered.") from exc

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Open the stores ``settings`` name, creating ``.mlcycle/`` when a store lives there."""
        if settings.store.metadata_url is None or settings.store.artifacts_url is None:
            _ensure_writable(settings.workspace_dir)
        metadata = open_metadata_store(
            settings.metadata_url, busy_timeout_s=settings.store.busy_timeout_s
        )
        try:
            artifacts = open_artifact_store(settings.artifacts_url, s3=settings.store.s3)
        except BaseException:
            metadata.close()
            raise
        return cls(
            settings=settings, metadata=metadata, artifacts=artifacts, clock=open_clock(settings)
        )

    @classmethod
    def find(cls, start: Path | None = None) -> Workspace:
        """Open the project found by walking up from ``start`` (default: the working directory).

        Where no ``mlcycle.toml`` is found, a project is initialised in ``start``.
        """
        settings = load_settings(start)
        if not (settings.home / CONFIG_FILE).is_file():
            from mlcycle.project import init_project  # noqa: PLC0415  (rarely needed)

            with contextlib.suppress(AlreadyExists):  # another process was quicker
                init_project(settings.home)
            settings = load_settings(settings.home)
        return cls.open(settings)

    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,  # Any: stored as text
        tags: Mapping[str, Any] | None = None,  # Any: stored as text
        parent: str | None = None,
    ) -> ActiveRun:
        """Start a run in ``experiment`` (created if new); use it as a context manager."""
        self._check_open()
        return self.tracker.start_run(
            experiment, name=name, params=params, tags=tags, parent=parent
        )

    def search_runs(
        self,
        experiment_or_list: str | Sequence[str] | None = None,
        *,
        where: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """Runs matching ``where`` as a DataFrame, ordered by ``order_by`` (``metrics.rmse DESC``).

        Columns: ``run_id, experiment, name, status, start_time, end_time, actor,
        parent_id``, then ``params.<k>``, ``metrics.<k>`` (latest values) and ``tags.<k>``.
        """
        self._check_open()
        return self.tracker.search_runs(
            experiment_or_list, where=where, order_by=order_by, limit=limit
        )

    def get_run(self, run_id: str) -> RunView:
        """The run ``run_id``; ``.metric_history(key)`` gives every logged value."""
        self._check_open()
        return self.tracker.get_run(run_id)

    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        self._check_open()
        self.tracker.settle()
        return self.metadata.list_experiments()

    def reap_stale_runs(self) -> list[str]:
        """Mark runs whose process stopped heartbeating as killed; returns their ids."""
        self._check_open()
        return list(self.tracker.reap_stale_runs())

    def events(
        self, since: int = 0, *, types: Iterable[str] | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events after cursor position ``since``, oldest first; poll on from the last one."""
        self._check_open()
        self.tracker.settle()
        return self.metadata.read_events(since=since, types=types, limit=limit)

    def lineage(self, ref: str, *, max_depth: int | None = None) -> LineageTree:
        """The ancestry of ``ref`` (``run:<id>``, ``data:/bike/3``, ``models:/bike@production``).

        A bare id means a run; a model reference with an alias (or none) is
        resolved to the version it names, whose chain runs model version <-
        run <- dataset versions <- sources.
        """
        self._check_open()
        self.tracker.settle()
        if ":" not in ref:
            ref = f"run:{ref}"
        elif ref.startswith("models:/"):
            ref = self.registry.get(ref).ref
        return ancestry(self.metadata, ref, max_depth=max_depth)

    def flush(self) -> None:
        """Write everything logged so far to the metadata store."""
        self.tracker.flush()

    def close(self) -> None:
        """End open runs, write what is buffered and release the stores; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._alerts is not None:
                self._alerts.close()
            self.tracker.close()
        finally:
            self.metadata.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace(home={str(self.settings.home)!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise WorkspaceError(
                f"the workspace at {self.settings.home} is closed; open it again with "
                "Workspace.open(settings)"
            )


def open_registry(settings: Settings) -> ModelRegistry:
    """The model registry of the project ``settings`` name, for a process of its own.

    A server's shadow variant predicts in a process it starts, which calls
    ``functools.partial(open_registry, settings)`` to load the model with the
    project's own trust rules. The workspace stays open while the process runs.
    """
    return Workspace.open(settings).registry


def open_prediction_log(settings: Settings) -> PredictionLog:
    """A prediction log of the project ``settings`` name, for a process of its own.

    A server's shadow variant logs the copies it predicts from the process it
    runs in, which calls ``functools.partial(open_prediction_log, settings)``.
    The workspace stays open while the process runs; close the log on exit.
    """
    return Workspace.open(settings).prediction_log()


def _ensure_writable(folder: Path) -> None:
    fix = (
        "make it writable (or remove it if it is not a folder), or point MLCYCLE_HOME "
        "at a project you can write to"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise WorkspaceError(
            f"cannot write the workspace folder {folder}: {reason}; {fix}"
        ) from exc
