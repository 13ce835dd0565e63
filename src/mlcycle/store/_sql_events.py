"""The event log, consumer cursors, lineage edges, environments and the artifact index in SQL.

Event positions must reach readers in commit order, or a poller reading
``since=cursor`` could skip an event whose transaction committed late. SQLite
has one writer at a time, so its order is commit order. On PostgreSQL every
event append first takes one transaction-level advisory lock, held to commit:
the next position is handed out only after the previous holder committed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import datetime
from time import time as epoch_now
from typing import Any

import orjson
from sqlalchemy import Connection, Insert, Table, bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert

from mlcycle.errors import AlreadyExists, NotFound, ValidationFailed
from mlcycle.ids import Digest, EventId, RunId, new_id
from mlcycle.store._records import ArtifactRecord, Environment, Event, LineageEdge
from mlcycle.store._schema import (
    artifacts,
    environments,
    event_cursors,
    events,
    lineage_edges,
    runs,
)
from mlcycle.store._sql_db import Database, from_epoch, to_epoch

__all__ = [
    "EVENT_LOCK",
    "EventsMixin",
    "append_event",
    "check_ref",
    "inserted",
    "require_run",
    "upsert",
]

EVENT_LOCK = 0x6D6C_6379_6576_6E74  # pg_advisory_xact_lock key: "mlcyevnt"
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_MAX_REF = 1000


def upsert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ``ON CONFLICT`` in ``dialect``.

    Callers build each statement once per dialect (``functools.cache``):
    building SQLAlchemy statements costs more than running them on SQLite.
    """
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_INSERT_EVENT = insert(events).returning(events.c.position)
_RUN_STATUS = select(runs.c.status).where(runs.c.id == bindparam("run_id"))


@functools.cache
def _cursor_upsert(dialect: str) -> ReturningInsert[Any] | Insert:
    stmt = upsert(dialect, event_cursors)
    return stmt.on_conflict_do_update(
        index_elements=[event_cursors.c.consumer],
        set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
    )


@functools.cache
def _insert_new(dialect: str, table: Table) -> ReturningInsert[Any]:
    """Insert a row unless its primary key is taken; returns a row only when it was added."""
    return upsert(dialect, table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def inserted(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless its primary key is taken; whether it was added.

    ``RETURNING`` tells, where ``rowcount`` is not reliable on every driver.
    """
    return conn.execute(_insert_new(conn.dialect.name, table), row).first() is not None


def require_run(conn: Connection, run_id: str) -> str:
    """The run's status; ``NotFound`` naming the id when there is no such run."""
    status = conn.execute(_RUN_STATUS, {"run_id": run_id}).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no run '{run_id}'; list runs with `mlcycle runs list`")
    return str(status)


def check_ref(value: str, what: str) -> str:
    """``value`` if it is a usable lineage or event reference; else ``ValidationFailed``."""
    if not isinstance(value, str) or not value or len(value) > _MAX_REF or value != value.strip():
        raise ValidationFailed(
            f"{what} {value!r} must be a reference such as 'run:<id>' or 'data:/bike/3' "
            f"(1 to {_MAX_REF} characters, no surrounding spaces)"
        )
    return value


def append_event(
    conn: Connection,
    type_: str,
    *,
    subject: str,
    actor: str,
    time: datetime,
    payload: dict[str, Any] | None = None,  # Any: JSON-able
) -> Event:
    """Append an event inside the caller's transaction, so it commits with the change."""
    if not isinstance(type_, str) or len(type_) > 128 or not _EVENT_TYPE.fullmatch(type_):
        raise ValidationFailed(
            f"event type {type_!r} must be lowercase dotted words such as 'run.finished'"
        )
    check_ref(subject, "event subject")
    try:
        body = orjson.dumps(payload or {}, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise ValidationFailed(f"payload of event '{type_}' is not JSON-able: {exc}") from exc
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(EVENT_LOCK)))
    event_id = EventId(new_id())
    seconds = to_epoch(time)
    row = {
        "id": event_id,
        "time": seconds,
        "type": type_,
        "subject": subject,
        "actor": actor,
        "payload": body.decode(),
    }
    position = conn.execute(_INSERT_EVENT, row).scalar_one()
    return Event(
        position=int(position),
        id=event_id,
        time=from_epoch(seconds),
        type=type_,
        subject=subject,
        actor=actor,
        payload=orjson.loads(body),
    )


def _event(row: Any) -> Event:  # Any: a result row
    return Event(
        position=int(row.position),
        id=EventId(row.id),
        time=from_epoch(row.time),
        type=row.type,
        subject=row.subject,
        actor=row.actor,
        payload=orjson.loads(row.payload),
    )


def _edge(row: Any) -> LineageEdge:  # Any: a result row
    return LineageEdge(
        source=row.source,
        target=row.target,
        kind=row.kind,
        created_at=from_epoch(row.created_at),
        actor=row.actor,
    )


def _artifact(row: Any) -> ArtifactRecord:  # Any: a result row
    return ArtifactRecord(
        run_id=RunId(row.run_id),
        name=row.name,
        digest=Digest(row.digest),
        size=int(row.size),
        media_type=row.media_type,
        created_at=from_epoch(row.created_at),
    )


class EventsMixin:
    """``EventLog``, ``LineageGraph``, ``EnvironmentCatalog`` and ``ArtifactIndex`` in SQL."""

    _db: Database

    def append_event(
        self,
        type: str,  # noqa: A002  (the Protocol's name for it)
        *,
        subject: str,
        actor: str,
        time: datetime,
        payload: dict[str, Any] | None = None,  # Any: JSON-able
    ) -> Event:
        """Append an event; positions only increase, in commit order."""
        return self._db.write(
            lambda conn: append_event(
                conn, type, subject=subject, actor=actor, time=time, payload=payload
            )
        )

    def read_events(
        self, *, since: int = 0, types: Iterable[str] | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events after position ``since``, oldest first."""
        if since < 0 or limit < 0:
            raise ValidationFailed(f"since ({since}) and limit ({limit}) must not be negative")
        query = select(events).where(events.c.position > since)
        if types is not None:
            query = query.where(events.c.type.in_(list(types)))
        query = query.order_by(events.c.position).limit(limit)
        return self._db.read(lambda conn: [_event(row) for row in conn.execute(query)])

    def load_cursor(self, consumer: str) -> int:
        """The last position ``consumer`` acknowledged (0 if none)."""
        query = select(event_cursors.c.position).where(event_cursors.c.consumer == consumer)
        position = self._db.read(lambda conn: conn.execute(query).scalar_one_or_none())
        return int(position or 0)

    def save_cursor(self, consumer: str, position: int) -> None:
        """Remember that ``consumer`` has handled every event up to ``position``."""
        if not consumer or len(consumer) > 256:
            raise ValidationFailed(f"consumer name {consumer!r} must have 1 to 256 characters")
        if position < 0:
            raise ValidationFailed(f"cursor position {position} must not be negative")

        row = {"consumer": consumer, "position": position, "updated_at": epoch_now()}

        def work(conn: Connection) -> None:
            conn.execute(_cursor_upsert(conn.dialect.name), row)

        self._db.write(work)

    def add_edge(
        self, source: str, target: str, *, kind: str, actor: str, time: datetime
    ) -> LineageEdge:
        """Record that ``source`` was used to make ``target``; adding it again changes nothing."""
        check_ref(source, "lineage source")
        check_ref(target, "lineage target")
        if not kind or len(kind) > 64:
            raise ValidationFailed(f"lineage kind {kind!r} must have 1 to 64 characters")
        key = (
            (lineage_edges.c.source == source)
            & (lineage_edges.c.target == target)
            & (lineage_edges.c.kind == kind)
        )

        def work(conn: Connection) -> LineageEdge:
            values = {"source": source, "target": target, "kind": kind}
            row = {**values, "created_at": to_epoch(time), "actor": actor}
            if inserted(conn, lineage_edges, row):
                append_event(
                    conn,
                    "lineage.edge_added",
                    subject=target,
                    actor=actor,
                    time=time,
                    payload=values,
                )
            return _edge(conn.execute(select(lineage_edges).where(key)).one())

        return self._db.write(work)

    def remove_edge(
        self, source: str, target: str, *, kind: str, actor: str, time: datetime
    ) -> bool:
        """Remove an edge to derived data that is deleted (erasure); ``False`` if there was none.

        Lineage is otherwise only added to; a removal appends a
        ``lineage.edge_removed`` event in the same transaction.
        """
        key = (
            (lineage_edges.c.source == source)
            & (lineage_edges.c.target == target)
            & (lineage_edges.c.kind == kind)
        )

        def work(conn: Connection) -> bool:
            if conn.execute(delete(lineage_edges).where(key)).rowcount != 1:
                return False
            payload = {"source": source, "target": target, "kind": kind}
            append_event(
                conn,
                "lineage.edge_removed",
                subject=target,
                actor=actor,
                time=time,
                payload=payload,
            )
            return True

        return self._db.write(work)

    def edges_into(self, target: str) -> list[LineageEdge]:
        """The edges whose target is ``target``."""
        query = (
            select(lineage_edges)
            .where(lineage_edges.c.target == target)
            .order_by(lineage_edges.c.created_at, lineage_edges.c.source, lineage_edges.c.kind)
        )
        return self._db.read(lambda conn: [_edge(row) for row in conn.execute(query)])

    def edges_from(self, source: str) -> list[LineageEdge]:
        """The edges whose source is ``source``."""
        query = (
            select(lineage_edges)
            .where(lineage_edges.c.source == source)
            .order_by(lineage_edges.c.created_at, lineage_edges.c.target, lineage_edges.c.kind)
        )
        return self._db.read(lambda conn: [_edge(row) for row in conn.execute(query)])

    def put_environment(self, environment: Environment) -> None:
        """Store ``environment`` unless its digest is already there."""
        row = {
            "digest": environment.digest,
            "python": environment.python,
            "platform": environment.platform,
            "packages": orjson.dumps(environment.packages, option=orjson.OPT_SORT_KEYS).decode(),
            "created_at": epoch_now(),
        }
        self._db.write(lambda conn: inserted(conn, environments, row))

    def get_environment(self, digest: Digest) -> Environment:
        """Raise ``NotFound`` naming the digest when there is none."""
        query = select(environments).where(environments.c.digest == digest)
        row = self._db.read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            raise NotFound(f"no environment '{digest}' is stored")
        return Environment(
            digest=Digest(row.digest),
            python=row.python,
            platform=row.platform,
            packages=orjson.loads(row.packages),
        )

    def record_artifact(self, record: ArtifactRecord) -> None:
        """Add an artifact to a run; a name already taken in that run raises ``AlreadyExists``."""
        row = {
            "run_id": record.run_id,
            "name": record.name,
            "digest": record.digest,
            "size": record.size,
            "media_type": record.media_type,
            "created_at": to_epoch(record.created_at),
        }

        def work(conn: Connection) -> None:
            require_run(conn, record.run_id)
            if not inserted(conn, artifacts, row):
                raise AlreadyExists(
                    f"run '{record.run_id}' already has an artifact named '{record.name}'; "
                    "log it under another name"
                )

        self._db.write(work)

    def list_artifacts(self, run_id: RunId) -> list[ArtifactRecord]:
        """A run's artifacts, by name."""

        def work(conn: Connection) -> list[ArtifactRecord]:
            require_run(conn, run_id)
            query = select(artifacts).where(artifacts.c.run_id == run_id).order_by(artifacts.c.name)
            return [_artifact(row) for row in conn.execute(query)]

        return self._db.read(work)
