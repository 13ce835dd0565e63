"""A whole ``WriteBatch`` in one SQL transaction: one ``executemany`` per table.

The batch is checked and turned into rows of plain tuples before the
transaction starts (each distinct key is checked once, values take
``type() is`` fast paths before the ABC checks), then every table gets one
``executemany`` through the driver. Building SQLAlchemy statements and binding
parameters row by row cost more than SQLite takes to store a row, so the SQL
text is written once here, from the schema's table and column names, with
``?`` turned into ``%s`` for psycopg. psycopg 3 pipelines ``executemany``, so
PostgreSQL also gets one round trip per table rather than per row. See ADR 0005.

Metric points are grouped per run and key as they are checked, and each group
becomes one ``metric_chunks`` row holding its points packed (ADR 0006), plus
one ``latest_metrics`` upsert with the group's newest point.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Table

from mlcycle.errors import ImmutableValue, NotFound, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.store._keys import check_key
from mlcycle.store._metric_chunks import INT64 as _INT64
from mlcycle.store._metric_chunks import pack_points
from mlcycle.store._records import (
    RunEnd,
    RunStart,
    RunStatus,
    RunValues,
    WriteBatch,
)
from mlcycle.store._schema import (
    events,
    latest_metrics,
    lineage_edges,
    metric_chunks,
    params,
    runs,
    tags,
)
from mlcycle.store._sql_db import to_epoch
from mlcycle.store._sql_events import EVENT_LOCK, check_ref

__all__ = ["PreparedBatch", "prepare_batch", "write_batch"]

_CHUNK = 500  # ids per IN list: far below every backend's bound-parameter limit
_RUNNING = RunStatus.RUNNING.value
_METRIC_COLUMNS = ("run_id", "key", "step", "timestamp", "value", "is_nan")
_CHUNK_COLUMNS = ("run_id", "key", "count", "min_step", "max_step", "data")
_RUN_COLUMNS = (
    "id",
    "experiment_id",
    "name",
    "parent_id",
    "status",
    "start_time",
    "end_time",
    "heartbeat_at",
    "actor",
    "environment_digest",
    "git_commit",
    "git_dirty",
    "command",
    "seed",
)


def _insert(table: Table, columns: Sequence[str], conflict: str = "") -> str:
    for name in columns:
        table.c[name]
    quoted = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table.name} ({quoted}) VALUES ({marks}){conflict}"  # noqa: S608  (our names)


_NEWER = (
    ' WHERE excluded."step" > latest_metrics."step" OR (excluded."step" = latest_metrics."step"'
    ' AND excluded."timestamp" >= latest_metrics."timestamp")'
)
_STATEMENTS = {
    "run": _insert(runs, _RUN_COLUMNS),
    "param": _insert(
        params, ("run_id", "key", "value"), ' ON CONFLICT ("run_id", "key") DO NOTHING'
    ),
    "tag": _insert(
        tags,
        ("run_id", "key", "value"),
        ' ON CONFLICT ("run_id", "key") DO UPDATE SET "value" = excluded."value"',
    ),
    "chunk": _insert(metric_chunks, _CHUNK_COLUMNS),
    "latest": _insert(
        latest_metrics,
        _METRIC_COLUMNS,
        ' ON CONFLICT ("run_id", "key") DO UPDATE SET "step" = excluded."step", '
        '"timestamp" = excluded."timestamp", "value" = excluded."value", '
        '"is_nan" = excluded."is_nan"' + _NEWER,
    ),
    "edge": _insert(
        lineage_edges,
        ("source", "target", "kind", "created_at", "actor"),
        " ON CONFLICT DO NOTHING",
    ),
    "event": _insert(events, ("id", "time", "type", "subject", "actor", "payload")),
    "end": (
        'UPDATE runs SET "status" = ?, "end_time" = ?, "error_type" = ?, "error_message" = ?, '
        '"error_traceback" = ? WHERE "id" = ? AND "status" = \'running\''
    ),
    "heartbeat": 'UPDATE runs SET "heartbeat_at" = ? WHERE "status" = \'running\' AND "id" IN',
    "experiments": 'SELECT "id", "name" FROM experiments WHERE "id" IN',
    "runs": 'SELECT "id", "status", "actor" FROM runs WHERE "id" IN',
    "params": 'SELECT "run_id", "key", "value" FROM params WHERE "run_id" IN',
}


@functools.cache
def _sql(dialect: str, name: str) -> str:
    text = _STATEMENTS[name]
    return text if dialect == "sqlite" else text.replace("?", "%s")


@dataclass
class _Event:
    type: str
    subject: str
    run_id: str
    time: float
    payload: dict[str, Any]  # Any: JSON-able


_Series = list[tuple[int, float, float]]
"""The (step, timestamp, value) points one batch logs for one run and key, in logged order."""


@dataclass
class PreparedBatch:
    """A checked batch as rows per table, ready for one transaction."""

    starts: dict[str, RunStart] = field(default_factory=dict)
    run_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Any: column values
    edge_rows: list[tuple[str, str, str, float, str]] = field(default_factory=list)
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    series: dict[str, dict[str, _Series]] = field(default_factory=dict)  # run, key
    chunk_rows: list[tuple[str, str, int, int, int, bytes]] = field(default_factory=list)
    latest_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Any: column values
    end_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Any: column values
    ended: dict[str, str] = field(default_factory=dict)
    needed: dict[str, None] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)
    heartbeat_at: float = 0.0
    keys: set[tuple[str, str]] = field(default_factory=set)
    metric_keys: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.events or self.params or self.tags or self.series or self.heartbeats)

    def key(self, key: object, kind: str) -> str:
        """``key`` once it is known to be valid; each distinct key is checked once."""
        if type(key) is not str or (kind, key) not in self.keys:
            self.keys.add((kind, check_key(key, kind=kind)))  # type: ignore[arg-type]
        return key  # type: ignore[return-value]  # checked just above

    def require(self, run_id: str) -> None:
        """Note a run that must exist, unless the batch starts it."""
        if run_id not in self.starts:
            self.needed[run_id] = None


def prepare_batch(batch: WriteBatch) -> PreparedBatch:
    """Check ``batch`` and turn it into rows; raises before anything is written."""
    prepared = PreparedBatch()
    for operation in batch.operations:
        if isinstance(operation, RunValues):
            _add_values(prepared, operation)
        elif isinstance(operation, RunStart):
            _add_start(prepared, operation)
        elif isinstance(operation, RunEnd):
            _add_end(prepared, operation)
        else:
            raise TypeError(f"a WriteBatch holds RunStart, RunValues and RunEnd, not {operation!r}")
    if batch.heartbeats and batch.heartbeat_at is not None:
        prepared.heartbeats = list(dict.fromkeys(batch.heartbeats))
        prepared.heartbeat_at = to_epoch(batch.heartbeat_at)
    _pack_series(prepared)
    return prepared


def _add_start(prepared: PreparedBatch, start: RunStart) -> None:
    run_id = start.id
    if run_id in prepared.starts:
        raise ValidationFailed(f"run '{run_id}' is started twice in one batch")
    if start.parent_id is not None:
        prepared.require(start.parent_id)
    prepared.starts[run_id] = start
    seconds = to_epoch(start.start_time)
    prepared.run_rows.append(
        (
            run_id,
            start.experiment_id,
            start.name,
            start.parent_id,
            _RUNNING,
            seconds,
            None,
            seconds,
            start.actor,
            start.environment_digest,
            start.git_commit,
            start.git_dirty,
            start.command,
            None if start.seed is None else int(start.seed),
        )
    )
    payload = {"experiment": start.experiment_id, "name": start.name, "parent_id": start.parent_id}
    prepared.events.append(_Event("run.started", f"run:{run_id}", run_id, seconds, payload))
    _add_key_values(prepared, run_id, params=start.params, tags=start.tags)
    target = f"run:{run_id}"
    for source, kind in dict.fromkeys(start.inputs):
        check_ref(source, "lineage source")
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            raise ValidationFailed(f"lineage kind {kind!r} must have 1 to 64 characters")
        prepared.edge_rows.append((source, target, kind, seconds, start.actor))
        edge = {"source": source, "target": target, "kind": kind}
        prepared.events.append(_Event("lineage.edge_added", target, run_id, seconds, edge))


def _add_values(prepared: PreparedBatch, values: RunValues) -> None:
    run_id = values.run_id
    prepared.require(run_id)
    _add_key_values(prepared, run_id, params=values.params, tags=values.tags)
    if values.metrics:
        points = [(p.key, p.value, p.step, p.timestamp) for p in values.metrics]
        _add_metrics(prepared, run_id, points)
    if values.points:
        _add_metrics(prepared, run_id, values.points)


def _add_key_values(
    prepared: PreparedBatch, run_id: str, *, params: Any, tags: Any
) -> None:  # Any: mappings of key to value as callers pass them
    if params:
        held = prepared.params.setdefault(run_id, {})
        for key, value in params.items():
            text = str(value)
            old = held.setdefault(prepared.key(key, "param"), text)
            if old != text:
                raise _immutable(run_id, key, old, text)
    if tags:
        held = prepared.tags.setdefault(run_id, {})
        for key, value in tags.items():
            held[prepared.key(key, "tag")] = str(value)


def _add_metrics(
    prepared: PreparedBatch,
    run_id: str,
    points: Iterable[tuple[object, object, object, object]],  # anything, despite annotations
) -> None:
    known = prepared.metric_keys
    series = prepared.series.get(run_id)
    if series is None:
        series = prepared.series[run_id] = {}
    for key, given, given_step, given_time in points:
        if type(key) is not str or key not in known:
            known.add(check_key(key, kind="metric"))  # type: ignore[arg-type]
        value = given if type(given) is float else _number(key, given)
        step = given_step if type(given_step) is int else _step(key, given_step)
        timestamp = given_time if type(given_time) is float else float(given_time)  # type: ignore[arg-type]
        held = series.get(key)  # type: ignore[call-overload]
        if held is None:
            series[key] = [(step, timestamp, value)]  # type: ignore[index]
        else:
            held.append((step, timestamp, value))


def _pack_series(prepared: PreparedBatch) -> None:
    """One chunk row and one latest row per run and key, before the transaction begins."""
    try:
        _pack_chunks(prepared)
    except ValidationFailed as exc:  # a step beyond int64: name the metric
        for run_id, series in prepared.series.items():
            for key, points in series.items():
                if any(not _INT64[0] <= point[0] <= _INT64[1] for point in points):
                    raise ValidationFailed(f"metric '{key}' of run '{run_id}': {exc}") from exc
        raise


def _pack_chunks(prepared: PreparedBatch) -> None:
    chunks, latest = prepared.chunk_rows, prepared.latest_rows
    for run_id, series in prepared.series.items():
        for key, points in series.items():
            if len(points) == 1:  # the common case of a value logged once per write
                step, timestamp, value = points[0]
                data = pack_points((step,), (timestamp,), (value,))
                low = top = step
                count = 1
            else:
                steps, timestamps, values = zip(*points, strict=True)
                count = len(steps)
                data = pack_points(steps, timestamps, values)
                low, top = min(steps), max(steps)
                if steps.count(top) == 1:
                    newest = steps.index(top)
                else:  # at the greatest step the latest time wins, then the later write
                    newest = max(
                        (i for i, step in enumerate(steps) if step == top),
                        key=lambda i: (timestamps[i], i),
                    )
                timestamp, value = timestamps[newest], values[newest]
            chunks.append((run_id, key, count, low, top, data))
            is_nan = value != value  # noqa: PLR0124  (NaN is the one float unequal to itself)
            latest.append((run_id, key, top, timestamp, None if is_nan else value, is_nan))
    chunks.sort(key=itemgetter(0, 1))  # in the (run_id, key) index's order


def _number(key: object, value: object) -> float:
    if not isinstance(value, numbers.Real):
        raise TypeError(f"metric '{key}' must be a number, not {type(value).__name__}")
    return float(value)


def _step(key: object, step: object) -> int:
    if not isinstance(step, numbers.Integral):
        raise TypeError(f"step of metric '{key}' must be an integer, not {step!r}")
    return int(step)


def _add_end(prepared: PreparedBatch, end: RunEnd) -> None:
    status = RunStatus(end.status)
    if status is RunStatus.RUNNING:
        raise ValidationFailed("finish a run as finished, failed or killed, not running")
    run_id = end.run_id
    if run_id in prepared.ended:
        raise _not_running(run_id, prepared.ended[run_id])
    prepared.require(run_id)
    prepared.ended[run_id] = status.value
    error = end.error
    seconds = to_epoch(end.end_time)
    prepared.end_rows.append(
        (
            status.value,
            seconds,
            error.type if error else None,
            error.message if error else None,
            error.traceback if error else None,
            run_id,
        )
    )
    payload = {"status": status.value, "error_type": error.type if error else None}
    prepared.events.append(_Event(f"run.{status.value}", f"run:{run_id}", run_id, seconds, payload))


def _immutable(run_id: str, key: str, old: str, new: str) -> ImmutableValue:
    return ImmutableValue(
        f"param '{key}' of run '{run_id}' is already {old!r}; it cannot become {new!r}. "
        "Params are immutable: log the new value under another key, or start a new run"
    )


def _not_running(run_id: str, status: str) -> ValidationFailed:
    return ValidationFailed(
        f"run '{run_id}' is already {status}; only a running run can be finished"
    )


def _select_in(conn: Connection, name: str, ids: Sequence[str], suffix: str = "") -> list[Any]:
    """Rows of the ``name`` query for ``ids``, in chunks that fit any backend."""
    dialect = conn.dialect.name
    found: list[Any] = []  # Any: result rows
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        sql = _sql(dialect, name) + f" ({marks}){suffix}"
        if dialect != "sqlite":
            sql = sql.replace("?", "%s")
        found.extend(conn.exec_driver_sql(sql, tuple(chunk)).all())
    return found


def write_batch(conn: Connection, prepared: PreparedBatch) -> None:
    """Write a prepared batch inside the caller's transaction."""
    dialect = conn.dialect.name
    actors = {run_id: start.actor for run_id, start in prepared.starts.items()}
    _check_existing(conn, prepared, actors)
    names = _experiment_names(conn, prepared)

    def many(name: str, rows: Sequence[tuple[Any, ...]]) -> None:  # Any: column values
        if rows:
            conn.exec_driver_sql(_sql(dialect, name), list(rows))

    many("run", prepared.run_rows)
    _write_params(conn, prepared)
    many("tag", [(run, k, v) for run, pairs in prepared.tags.items() for k, v in pairs.items()])
    many("chunk", prepared.chunk_rows)
    many("latest", prepared.latest_rows)
    many("edge", prepared.edge_rows)
    many("end", prepared.end_rows)
    for start in range(0, len(prepared.heartbeats), _CHUNK):
        chunk = prepared.heartbeats[start : start + _CHUNK]
        sql = _sql(dialect, "heartbeat") + f" ({', '.join('?' for _ in chunk)})"
        conn.exec_driver_sql(
            sql if dialect == "sqlite" else sql.replace("?", "%s"),
            (prepared.heartbeat_at, *chunk),
        )
    if prepared.events:
        if dialect == "postgresql":  # positions in commit order: see _sql_events
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (EVENT_LOCK,))
        many("event", [_event_row(event, names=names, actors=actors) for event in prepared.events])


def _check_existing(conn: Connection, prepared: PreparedBatch, actors: dict[str, str]) -> None:
    """Refuse unknown runs and ends of runs that are not running; learn their actors."""
    needed = list(prepared.needed)
    if not needed:
        return
    lock = " FOR UPDATE" if prepared.end_rows and conn.dialect.name == "postgresql" else ""
    found = {row[0]: (row[1], row[2]) for row in _select_in(conn, "runs", needed, lock)}
    for run_id in needed:
        if run_id not in found:
            raise NotFound(f"no run '{run_id}'; list runs with `mlcycle runs list`")
        status, actor = found[run_id]
        actors[run_id] = actor
        if run_id in prepared.ended and status != _RUNNING:
            raise _not_running(run_id, status)


def _experiment_names(conn: Connection, prepared: PreparedBatch) -> dict[str, str]:
    wanted = list(dict.fromkeys(start.experiment_id for start in prepared.starts.values()))
    if not wanted:
        return {}
    names = {row[0]: row[1] for row in _select_in(conn, "experiments", wanted)}
    for experiment_id in wanted:
        if experiment_id not in names:
            raise NotFound(
                f"no experiment with id '{experiment_id}'; get one from ensure_experiment"
            )
    return names


def _write_params(conn: Connection, prepared: PreparedBatch) -> None:
    """Insert new params; one stored before with another value is ``ImmutableValue``.

    Inserting first and comparing after is what stays right when two writers
    race on PostgreSQL: the second insert waits for the first to commit.
    """
    rows = [(run, k, v) for run, pairs in prepared.params.items() for k, v in pairs.items()]
    if not rows:
        return
    conn.exec_driver_sql(_sql(conn.dialect.name, "param"), rows)
    existing = [run_id for run_id in prepared.params if run_id not in prepared.starts]
    if existing:
        for run_id, key, value in _select_in(conn, "params", existing):
            given = prepared.params[run_id].get(key)
            if given is not None and given != value:
                raise _immutable(run_id, key, value, given)


def _event_row(
    event: _Event, *, names: dict[str, str], actors: dict[str, str]
) -> tuple[str, float, str, str, str, str]:
    payload = event.payload
    if event.type == "run.started":
        payload = {**payload, "experiment": names[payload["experiment"]]}
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()
    return (new_id(), event.time, event.type, event.subject, actors[event.run_id], body)
