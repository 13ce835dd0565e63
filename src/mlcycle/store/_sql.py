"""The SQL metadata store: every metadata Protocol on one SQLite or PostgreSQL database.

>>> import tempfile
>>> from datetime import UTC, datetime
>>> store = SqlMetadataStore.open(f"sqlite:///{tempfile.mkdtemp()}/mlcycle.db")
>>> experiment = store.ensure_experiment("bike-demand", actor="ana")
>>> run = store.create_run(experiment_id=experiment.id, name="gbm", actor="ana",
...                        start_time=datetime.now(UTC), params={"model": "gbm"})
>>> store.get_run(run.id).params
{'model': 'gbm'}
>>> [event.type for event in store.read_events()]
['experiment.created', 'run.started']
>>> store.close()
"""

from __future__ import annotations

from mlcycle.store._sql_alerts import AlertsMixin
from mlcycle.store._sql_datasets import DatasetsMixin
from mlcycle.store._sql_db import Database
from mlcycle.store._sql_deployments import DeploymentsMixin
from mlcycle.store._sql_events import EventsMixin
from mlcycle.store._sql_metrics import MetricsMixin
from mlcycle.store._sql_models import ModelsMixin
from mlcycle.store._sql_monitor import MonitorResultsMixin
from mlcycle.store._sql_pipelines import PipelinesMixin
from mlcycle.store._sql_runs import RunsMixin
from mlcycle.store._sql_schedules import SchedulesMixin

__all__ = ["SqlMetadataStore"]


class SqlMetadataStore(
    RunsMixin,
    MetricsMixin,
    EventsMixin,
    DatasetsMixin,
    ModelsMixin,
    PipelinesMixin,
    SchedulesMixin,
    DeploymentsMixin,
    AlertsMixin,
    MonitorResultsMixin,
):
    """Experiments, runs, metrics, environments, artifacts, events, lineage, datasets, models,
    pipeline runs, schedules, deployments, alerts, monitor results."""

    def __init__(self, database: Database) -> None:
        self._db = database

    @classmethod
    def open(cls, url: str, *, busy_timeout_s: float = 30.0) -> SqlMetadataStore:
        """Connect to ``url``, check it, and bring its schema up to date."""
        database = Database(url, busy_timeout_s=busy_timeout_s)
        try:
            database.check()
            database.upgrade()
        except BaseException:
            database.close()
            raise
        return cls(database)

    @classmethod
    def upgrade(cls, url: str, *, busy_timeout_s: float = 30.0) -> str:
        """Apply pending migrations to ``url``; returns the schema revision it is at."""
        database = Database(url, busy_timeout_s=busy_timeout_s)
        try:
            database.check()
            return database.upgrade()
        finally:
            database.close()

    @property
    def url(self) -> str:
        """The database URL, without its password."""
        return self._db.display

    def revision(self) -> str | None:
        """The schema revision the database is at."""
        return self._db.revision()

    def close(self) -> None:
        """Release connections."""
        self._db.close()

    def __repr__(self) -> str:
        return f"SqlMetadataStore({self.url!r})"
