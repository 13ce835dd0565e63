"""Experiments and runs in SQL: creation, status, heartbeats, reaping and search.

A run is read back as one ``Run`` record with its params, tags and latest
metrics, loaded for many runs at once in four batched queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest, ExperimentId, RunId, new_id
from mlcycle.store._keys import check_key
from mlcycle.store._records import (
    Experiment,
    Run,
    RunEnd,
    RunError,
    RunStart,
    RunStatus,
    WriteBatch,
)
from mlcycle.store._schema import experiments, latest_metrics, params, runs, tags
from mlcycle.store._sql_batch import prepare_batch, write_batch
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import append_event, inserted, require_run

__all__ = ["RunsMixin", "load_runs"]

_ANALYZE_LOCK = 0x6D6C_6379_616E_6C7A  # pg_try_advisory_xact_lock key: "mlcyanlz"
_STALE_STATISTICS = text(
    "SELECT coalesce(sum(n_mod_since_analyze), 0)"
    " > greatest(500, 0.2 * coalesce(sum(n_live_tup), 0))"
    " FROM pg_stat_user_tables WHERE schemaname = current_schema()"
    " AND relname IN ('runs', 'latest_metrics', 'params', 'tags')"
)
_CHUNK = 500  # ids per IN list: far below every backend's bound-parameter limit
_RUN_QUERY = select(runs, experiments.c.name.label("experiment_name")).join(
    experiments, runs.c.experiment_id == experiments.c.id
)


def _experiment(row: Any) -> Experiment:  # Any: a result row
    return Experiment(
        id=ExperimentId(row.id),
        name=row.name,
        created_at=from_epoch(row.created_at),
        actor=row.actor,
    )


_EXPERIMENT = select(experiments).where(
    (experiments.c.name == bindparam("key")) | (experiments.c.id == bindparam("key"))
)
_EXPERIMENT_BY_ID = select(experiments.c.name).where(experiments.c.id == bindparam("id"))
_INSERT_RUN = insert(runs)
_INSERT_VALUES = {"params": insert(params), "tags": insert(tags)}


def _find_experiment(conn: Connection, name_or_id: str) -> Experiment:
    row = conn.execute(_EXPERIMENT, {"key": name_or_id}).first()
    if row is None:
        raise NotFound(f"no experiment '{name_or_id}'; list them with `mlcycle experiments list`")
    return _experiment(row)


def _key_values(values: dict[str, Any] | None, kind: str) -> list[tuple[str, str]]:
    return [(check_key(key, kind=kind), str(value)) for key, value in (values or {}).items()]


def _run(row: Any, *, loaded: dict[str, dict[str, dict[str, Any]]]) -> Run:  # Any: a result row
    error = None
    if row.error_type is not None:
        error = RunError(
            type=row.error_type,
            message=row.error_message or "",
            traceback=row.error_traceback or "",
        )
    return Run(
        id=RunId(row.id),
        experiment_id=ExperimentId(row.experiment_id),
        experiment_name=row.experiment_name,
        name=row.name,
        status=RunStatus(row.status),
        start_time=from_epoch(row.start_time),
        end_time=None if row.end_time is None else from_epoch(row.end_time),
        heartbeat_at=from_epoch(row.heartbeat_at),
        actor=row.actor,
        parent_id=None if row.parent_id is None else RunId(row.parent_id),
        environment_digest=None
        if row.environment_digest is None
        else Digest(row.environment_digest),
        git_commit=row.git_commit,
        git_dirty=row.git_dirty,
        command=row.command,
        seed=row.seed,
        error=error,
        params=loaded["params"].get(row.id, {}),
        tags=loaded["tags"].get(row.id, {}),
        metrics=loaded["metrics"].get(row.id, {}),
    )


def refresh_statistics(conn: Connection) -> None:
    """On PostgreSQL, analyze the searched tables when they changed much since last time.

    Autovacuum analyzes only after a minute or so; until then the planner
    believes freshly filled tables are empty and picks nested loops that turn a
    5,000-run search from milliseconds into seconds. One searcher at a time
    analyzes; the others go on with the statistics there are.
    """
    if conn.dialect.name != "postgresql" or not conn.execute(_STALE_STATISTICS).scalar():
        return
    if conn.execute(select(func.pg_try_advisory_xact_lock(_ANALYZE_LOCK))).scalar():
        conn.exec_driver_sql("ANALYZE runs, latest_metrics, params, tags")


def load_runs(conn: Connection, run_ids: Sequence[str]) -> list[Run]:
    """Full ``Run`` records for ``run_ids``, in that order (unknown ids are left out)."""
    rows: dict[str, Any] = {}  # Any: result rows
    loaded: dict[str, dict[str, dict[str, Any]]] = {"params": {}, "tags": {}, "metrics": {}}
    for start in range(0, len(run_ids), _CHUNK):
        chunk = list(run_ids[start : start + _CHUNK])
        rows.update((row.id, row) for row in conn.execute(_RUN_QUERY.where(runs.c.id.in_(chunk))))
        for name, table in (("params", params), ("tags", tags)):
            query = select(table.c.run_id, table.c.key, table.c.value).where(
                table.c.run_id.in_(chunk)
            )
            for run_id, key, value in conn.execute(query):
                loaded[name].setdefault(run_id, {})[key] = value
        latest = select(
            latest_metrics.c.run_id,
            latest_metrics.c.key,
            latest_metrics.c.value,
            latest_metrics.c.is_nan,
        ).where(latest_metrics.c.run_id.in_(chunk))
        for run_id, key, value, is_nan in conn.execute(latest):
            loaded["metrics"].setdefault(run_id, {})[key] = math.nan if is_nan else float(value)
    return [_run(rows[run_id], loaded=loaded) for run_id in run_ids if run_id in rows]


def _insert_key_values(conn: Connection, run_id: str, **tables: list[tuple[str, str]]) -> None:
    for name, pairs in tables.items():
        if pairs:
            rows = [{"run_id": run_id, "key": k, "value": v} for k, v in pairs]
            conn.execute(_INSERT_VALUES[name], rows)


class RunsMixin:
    """``ExperimentCatalog`` and ``RunLog`` in SQL."""

    _db: Database

    def ensure_experiment(self, name: str, *, actor: str) -> Experiment:
        """Return the experiment called ``name``, creating it if it does not exist."""
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise ValidationFailed(f"experiment name {name!r} must have 1 to 256 characters")

        def work(conn: Connection) -> Experiment:
            now = datetime.now(UTC)
            row = {"id": new_id(), "name": name, "created_at": to_epoch(now), "actor": actor}
            if inserted(conn, experiments, row):
                append_event(
                    conn,
                    "experiment.created",
                    subject=f"experiment:{row['id']}",
                    actor=actor,
                    time=now,
                    payload={"name": name},
                )
            found = conn.execute(select(experiments).where(experiments.c.name == name)).one()
            return _experiment(found)

        return self._db.write(work)

    def get_experiment(self, name_or_id: str) -> Experiment:
        """Raise ``NotFound`` naming the experiment when there is none."""
        return self._db.read(lambda conn: _find_experiment(conn, name_or_id))

    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        query = select(experiments).order_by(experiments.c.created_at, experiments.c.id)
        return self._db.read(lambda conn: [_experiment(row) for row in conn.execute(query)])

    def apply(self, batch: WriteBatch) -> None:
        """Apply ``batch`` in one transaction, all or nothing (see ``WriteBatch``)."""
        prepared = prepare_batch(batch)
        if prepared:
            self._db.write(lambda conn: write_batch(conn, prepared))

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
        start = RunStart(
            id=RunId(new_id()),
            experiment_id=experiment_id,
            name=name,
            actor=actor,
            start_time=start_time,
            parent_id=parent_id,
            environment_digest=environment_digest,
            git_commit=git_commit,
            git_dirty=git_dirty,
            command=command,
            params=params or {},
            tags=tags or {},
        )
        prepared = prepare_batch(WriteBatch([start]))

        def work(conn: Connection) -> str:
            write_batch(conn, prepared)
            return str(conn.execute(_EXPERIMENT_BY_ID, {"id": experiment_id}).scalar_one())

        experiment = self._db.write(work)
        moment = from_epoch(to_epoch(start_time))
        return Run(
            id=start.id,
            experiment_id=experiment_id,
            experiment_name=experiment,
            name=name,
            status=RunStatus.RUNNING,
            start_time=moment,
            end_time=None,
            heartbeat_at=moment,
            actor=actor,
            parent_id=parent_id,
            environment_digest=environment_digest,
            git_commit=git_commit,
            git_dirty=git_dirty,
            command=command,
            params=prepared.params.get(start.id, {}),
            tags=prepared.tags.get(start.id, {}),
        )

    def get_run(self, run_id: str) -> Run:
        """Raise ``NotFound`` naming the id when there is no such run."""
        found = self._db.read(lambda conn: load_runs(conn, [run_id]))
        if not found:
            raise NotFound(f"no run '{run_id}'; give a full run id as `mlcycle runs list` shows it")
        return found[0]

    def finish_run(
        self, run_id: RunId, *, status: RunStatus, end_time: datetime, error: RunError | None = None
    ) -> Run:
        """Close a running run (and record a ``run.<status>`` event)."""
        end = RunEnd(run_id=run_id, status=status, end_time=end_time, error=error)
        prepared = prepare_batch(WriteBatch([end]))

        def work(conn: Connection) -> Run:
            write_batch(conn, prepared)
            return load_runs(conn, [run_id])[0]

        return self._db.write(work)

    def heartbeat(self, run_ids: Sequence[RunId], *, at: datetime) -> None:
        """Mark these running runs alive at ``at``."""
        self.apply(WriteBatch(heartbeats=run_ids, heartbeat_at=at))

    def reap_stale_runs(self, *, older_than: datetime, at: datetime) -> list[RunId]:
        """Mark running runs whose last heartbeat is before ``older_than`` as killed."""
        stale = (runs.c.status == RunStatus.RUNNING.value) & (
            runs.c.heartbeat_at < to_epoch(older_than)
        )

        def work(conn: Connection) -> list[RunId]:
            found = conn.execute(
                select(runs.c.id, runs.c.actor, runs.c.heartbeat_at)
                .where(stale)
                .order_by(runs.c.id)
            ).all()
            if not found:
                return []
            conn.execute(
                update(runs)
                .where(stale, runs.c.id.in_([row.id for row in found]))
                .values(status=RunStatus.KILLED.value, end_time=runs.c.heartbeat_at)
            )
            for row in found:
                append_event(
                    conn,
                    "run.killed",
                    subject=f"run:{row.id}",
                    actor=row.actor,
                    time=at,
                    payload={
                        "status": "killed",
                        "reason": "stale heartbeat",
                        "last_heartbeat": row.heartbeat_at,
                    },
                )
            return [RunId(row.id) for row in found]

        return self._db.write(work)

    def set_seed(self, run_id: RunId, seed: int) -> None:
        """Record the seed a run set with ``seed_everything``."""

        def work(conn: Connection) -> None:
            require_run(conn, run_id)
            conn.execute(update(runs).where(runs.c.id == run_id).values(seed=int(seed)))

        self._db.write(work)

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
        from mlcycle.store._query import compile_search  # noqa: PLC0415  (parser loads on first search)

        if isinstance(experiments, str):
            experiments = [experiments]

        def work(conn: Connection) -> list[Run]:
            ids = None
            if experiments is not None:
                ids = [_find_experiment(conn, name).id for name in experiments]
            query = compile_search(
                experiment_ids=ids,
                where=where,
                order_by=[order_by] if isinstance(order_by, str) else list(order_by),
                limit=limit,
                offset=offset,
            )
            refresh_statistics(conn)
            return load_runs(conn, [row[0] for row in conn.execute(query)])

        return self._db.read(work)
