"""Pipeline runs and their step runs in SQL (the ``PipelineLog``).

A pipeline run's start, its step rows, its lineage edges from the dataset
versions it reads and its ``pipeline.started`` event commit together; so do
its end and ``pipeline.finished`` / ``pipeline.failed``. Step runs are written
as they change, several in one transaction when the runner has several to
write (a step's end with the next step's start), so the state is durable
after every step at the cost of one transaction per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest, RunId
from mlcycle.store._pipeline_records import (
    PipelineRun,
    PipelineStatus,
    StepOutput,
    StepRun,
    StepStatus,
)
from mlcycle.store._records import WriteBatch
from mlcycle.store._schema import lineage_edges, pipeline_runs, step_runs
from mlcycle.store._sql_batch import prepare_batch, write_batch
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import append_event, check_ref, inserted

__all__ = ["PipelinesMixin"]

_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
_ENDED_EVENT = {
    PipelineStatus.COMPLETED: "pipeline.finished",
    PipelineStatus.FAILED: "pipeline.failed",
    PipelineStatus.KILLED: "pipeline.failed",
}


def _dumps(value: object) -> str:
    try:
        return orjson.dumps(value, option=_JSON).decode()
    except TypeError as exc:
        raise ValidationFailed(f"{value!r} is not JSON-able: {exc}") from exc


def _time(value: float | None) -> datetime | None:
    return None if value is None else from_epoch(value)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else to_epoch(value)


def _pipeline(row: Any) -> PipelineRun:  # Any: a result row
    return PipelineRun(
        id=row.id,
        pipeline=row.pipeline,
        target=row.target,
        status=PipelineStatus(row.status),
        params=orjson.loads(row.params),
        param_sources=orjson.loads(row.param_sources),
        datasets=orjson.loads(row.datasets),
        code_digest=Digest(row.code_digest),
        executor=row.executor,
        actor=row.actor,
        created_at=from_epoch(row.created_at),
        heartbeat_at=from_epoch(row.heartbeat_at),
        ended_at=_time(row.ended_at),
        run_id=None if row.run_id is None else RunId(row.run_id),
        error=row.error,
        resumes=int(row.resumes),
        code_changed=bool(row.code_changed),
    )


def _pipeline_row(record: PipelineRun) -> dict[str, Any]:  # Any: column values
    return {
        "id": record.id,
        "pipeline": record.pipeline,
        "target": record.target,
        "status": record.status.value,
        "params": _dumps(record.params),
        "param_sources": _dumps(record.param_sources),
        "datasets": _dumps(record.datasets),
        "code_digest": record.code_digest,
        "executor": record.executor,
        "actor": record.actor,
        "created_at": to_epoch(record.created_at),
        "heartbeat_at": to_epoch(record.heartbeat_at),
        "ended_at": _epoch(record.ended_at),
        "run_id": record.run_id,
        "error": record.error,
        "resumes": record.resumes,
        "code_changed": record.code_changed,
    }


def _step(row: Any) -> StepRun:  # Any: a result row
    return StepRun(
        pipeline_run_id=row.pipeline_run_id,
        step=row.step,
        position=int(row.position),
        status=StepStatus(row.status),
        upstream=tuple(orjson.loads(row.upstream)),
        params=orjson.loads(row.params),
        inputs={name: Digest(d) for name, d in orjson.loads(row.inputs).items()},
        outputs={
            name: StepOutput.from_dict(value) for name, value in orjson.loads(row.outputs).items()
        },
        code_digest=None if row.code_digest is None else Digest(row.code_digest),
        cache_key=row.cache_key,
        cached_from=row.cached_from,
        attempts=int(row.attempts),
        started_at=_time(row.started_at),
        ended_at=_time(row.ended_at),
        duration_s=row.duration_s,
        run_id=None if row.run_id is None else RunId(row.run_id),
        logs=row.logs,
        error=row.error,
    )


_STEP_KEY = ("pipeline_run_id", "step")
_SAVE_STEP = (
    update(step_runs)
    .where(step_runs.c.pipeline_run_id == bindparam("key_run"))
    .where(step_runs.c.step == bindparam("key_step"))
    .values({c.name: bindparam(c.name) for c in step_runs.c if c.name not in _STEP_KEY})
)
"""One statement for every step save, so SQLAlchemy compiles it once."""
_FIND_CACHED = (
    select(step_runs)
    .where(step_runs.c.cache_key == bindparam("key"))
    .where(step_runs.c.status == StepStatus.COMPLETED.value)
    .order_by(step_runs.c.ended_at.desc())
    .limit(1)
)
"""The cache lookup, made once: building the statement cost more than running it."""


def _step_row(record: StepRun) -> dict[str, Any]:  # Any: column values
    return {
        "pipeline_run_id": record.pipeline_run_id,
        "step": record.step,
        "position": record.position,
        "status": record.status.value,
        "upstream": _dumps(list(record.upstream)),
        "params": _dumps(record.params),
        "inputs": _dumps(dict(record.inputs)),
        "outputs": _dumps({name: out.to_dict() for name, out in record.outputs.items()}),
        "code_digest": record.code_digest,
        "cache_key": record.cache_key,
        "cached_from": record.cached_from,
        "attempts": record.attempts,
        "started_at": _epoch(record.started_at),
        "ended_at": _epoch(record.ended_at),
        "duration_s": record.duration_s,
        "run_id": record.run_id,
        "logs": record.logs,
        "error": record.error,
    }


def _require(conn: Connection, run_id: str) -> PipelineRun:
    row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.id == run_id)).one_or_none()
    if row is None:
        raise NotFound(f"no pipeline run '{run_id}'; list them with `mlcycle pipelines list`")
    return _pipeline(row)


def _payload(record: PipelineRun) -> dict[str, Any]:  # Any: JSON values
    return {
        "pipeline": record.pipeline,
        "status": record.status.value,
        "params": record.params,
        "datasets": record.datasets,
        "run_id": record.run_id,
        "resumes": record.resumes,
    }


class PipelinesMixin:
    """``PipelineLog`` in SQL."""

    _db: Database

    def create_pipeline_run(self, record: PipelineRun, steps: Sequence[StepRun]) -> PipelineRun:
        """Record a new run, its steps, lineage from its datasets and ``pipeline.started``."""
        for ref in record.datasets.values():
            check_ref(ref, "dataset version")

        def work(conn: Connection) -> PipelineRun:
            if not inserted(conn, pipeline_runs, _pipeline_row(record)):
                raise ValidationFailed(f"pipeline run '{record.id}' already exists")
            for step in steps:
                conn.execute(step_runs.insert(), _step_row(step))
            for ref in sorted(set(record.datasets.values())):
                inserted(
                    conn,
                    lineage_edges,
                    {
                        "source": ref,
                        "target": record.ref,
                        "kind": "input",
                        "created_at": to_epoch(record.created_at),
                        "actor": record.actor,
                    },
                )
            append_event(
                conn,
                "pipeline.started",
                subject=record.ref,
                actor=record.actor,
                time=record.created_at,
                payload=_payload(record),
            )
            return _require(conn, record.id)

        return self._db.write(work)

    def get_pipeline_run(self, run_id: str) -> PipelineRun:
        """Raise ``NotFound`` naming the id when there is no such run."""
        return self._db.read(lambda conn: _require(conn, run_id))

    def list_pipeline_runs(
        self, *, pipeline: str | None = None, limit: int = 100
    ) -> list[PipelineRun]:
        """Pipeline runs, newest first (of one pipeline when ``pipeline`` is given)."""
        query = select(pipeline_runs).order_by(pipeline_runs.c.id.desc()).limit(limit)
        if pipeline is not None:
            query = query.where(pipeline_runs.c.pipeline == pipeline)
        return self._db.read(lambda conn: [_pipeline(row) for row in conn.execute(query)])

    def list_step_runs(self, pipeline_run_id: str) -> list[StepRun]:
        """The run's steps in DAG order."""
        query = (
            select(step_runs)
            .where(step_runs.c.pipeline_run_id == pipeline_run_id)
            .order_by(step_runs.c.position)
        )

        def work(conn: Connection) -> list[StepRun]:
            _require(conn, pipeline_run_id)
            return [_step(row) for row in conn.execute(query)]

        return self._db.read(work)

    def save_step_run(self, record: StepRun) -> None:
        """Replace the stored state of one step of a run (it must exist)."""
        self.save_step_runs([record])

    def save_step_runs(
        self, records: Sequence[StepRun], *, tracking: WriteBatch | None = None
    ) -> None:
        """Replace the stored state of several steps in one transaction (each must exist).

        ``tracking`` (a step's tracking-run start) is applied first in the same
        transaction, so a record never points at a run that is not stored.
        """
        prepared = prepare_batch(tracking) if tracking else None
        rows = []
        for record in records:
            row = _step_row(record)
            row["key_run"], row["key_step"] = row.pop("pipeline_run_id"), row.pop("step")
            rows.append(row)

        def work(conn: Connection) -> None:
            if prepared:
                write_batch(conn, prepared)
            for row, record in zip(rows, records, strict=True):
                if conn.execute(_SAVE_STEP, row).rowcount != 1:
                    raise NotFound(
                        f"pipeline run '{record.pipeline_run_id}' has no step '{record.step}'"
                    )

        if rows or prepared:
            self._db.write(work)

    def update_pipeline_run(self, record: PipelineRun) -> PipelineRun:
        """Store a run's new state; an end (or a restart) records its event with it."""

        def work(conn: Connection) -> PipelineRun:
            before = _require(conn, record.id)
            row = _pipeline_row(record)
            conn.execute(update(pipeline_runs).where(pipeline_runs.c.id == record.id).values(**row))
            if before.status != record.status:
                kind = _ENDED_EVENT.get(record.status, "pipeline.started")
                append_event(
                    conn,
                    kind,
                    subject=record.ref,
                    actor=record.actor,
                    time=record.ended_at or record.heartbeat_at,
                    payload={**_payload(record), "error": record.error},
                )
            return _require(conn, record.id)

        return self._db.write(work)

    def heartbeat_pipeline_run(self, run_id: str, *, at: datetime) -> None:
        """Note that the process running ``run_id`` is alive."""
        query = (
            update(pipeline_runs)
            .where(pipeline_runs.c.id == run_id)
            .where(pipeline_runs.c.status == PipelineStatus.RUNNING.value)
            .values(heartbeat_at=to_epoch(at))
        )
        self._db.write(lambda conn: conn.execute(query))

    def reap_stale_pipeline_runs(self, *, older_than: datetime, at: datetime) -> list[str]:
        """Mark running runs not heartbeated since ``older_than`` (and their steps) killed."""
        stale = select(pipeline_runs).where(
            (pipeline_runs.c.status == PipelineStatus.RUNNING.value)
            & (pipeline_runs.c.heartbeat_at < to_epoch(older_than))
        )

        def work(conn: Connection) -> list[str]:
            reaped = [_pipeline(row) for row in conn.execute(stale)]
            for found in reaped:
                _kill(conn, found, at)
            return [found.id for found in reaped]

        return self._db.write(work)

    def find_cached_step(self, cache_key: str) -> StepRun | None:
        """The newest step run with ``cache_key`` whose outputs are stored, if any."""
        return self._db.read(
            lambda conn: next(
                (_step(row) for row in conn.execute(_FIND_CACHED, {"key": cache_key})), None
            )
        )


def _kill(conn: Connection, found: PipelineRun, at: datetime) -> None:
    message = "its process stopped heartbeating (killed); resume it with `mlcycle pipelines resume`"
    conn.execute(
        update(pipeline_runs)
        .where(pipeline_runs.c.id == found.id)
        .values(status=PipelineStatus.KILLED.value, ended_at=to_epoch(at), error=message)
    )
    conn.execute(
        update(step_runs)
        .where(step_runs.c.pipeline_run_id == found.id)
        .where(step_runs.c.status == StepStatus.RUNNING.value)
        .values(status=StepStatus.KILLED.value, ended_at=to_epoch(at))
    )
    append_event(
        conn,
        "pipeline.failed",
        subject=found.ref,
        actor=found.actor,
        time=at,
        payload={**_payload(found), "status": PipelineStatus.KILLED.value, "error": message},
    )
