"""Schedules, trigger firings and agent leases in SQL (the ``ScheduleCatalog``).

A firing is claimed by inserting its ``(schedule, key)`` row before anything
is launched: the primary key lets exactly one insert in, whichever agent and
however late. On SQLite the write lock serialises claims; on PostgreSQL the
second insert waits for the first to commit and then finds the row taken.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import orjson
from sqlalchemy import Connection, delete, select, update

from mlcycle.errors import AlreadyExists, NotFound, ValidationFailed
from mlcycle.store._keys import check_name
from mlcycle.store._records import Schedule, ScheduleKind, TriggerFiring
from mlcycle.store._schema import agent_leases, schedules, trigger_firings
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import append_event, inserted

__all__ = ["SCHEDULE_KINDS", "SchedulesMixin", "check_schedule_name"]

SCHEDULE_KINDS: frozenset[str] = frozenset(get_args(ScheduleKind))
_MAX_TARGET = 1000
_MAX_SPEC = 256


def check_schedule_name(name: str) -> str:
    """``name`` if it can name a schedule, else ``ValidationFailed`` naming the rule.

    >>> check_schedule_name("nightly-training")
    'nightly-training'
    """
    return check_name(name, kind="schedule", example="'nightly-training'")


def _check(schedule: Schedule) -> None:
    check_schedule_name(schedule.name)
    if schedule.kind not in SCHEDULE_KINDS:
        raise ValidationFailed(
            f"schedule kind {schedule.kind!r} must be one of {', '.join(sorted(SCHEDULE_KINDS))}"
        )
    if not schedule.target.strip() or len(schedule.target) > _MAX_TARGET:
        raise ValidationFailed(
            f"schedule target {schedule.target!r} must have 1 to {_MAX_TARGET} characters, "
            "such as 'pipelines.py:training'"
        )
    if not schedule.spec.strip() or len(schedule.spec) > _MAX_SPEC:
        raise ValidationFailed(
            f"the {schedule.kind} of schedule '{schedule.name}' ({schedule.spec!r}) must have "
            f"1 to {_MAX_SPEC} characters"
        )
    for key, value in schedule.params.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValidationFailed(
                f"parameter {key!r}={value!r} of schedule '{schedule.name}' must be a "
                "non-empty name with a text value"
            )


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else to_epoch(moment)


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_epoch(seconds)


def _schedule(row: Any) -> Schedule:  # Any: a result row
    return Schedule(
        name=row.name,
        target=row.target,
        kind=row.kind,
        spec=row.spec,
        params=orjson.loads(row.params),
        enabled=bool(row.enabled),
        created_at=from_epoch(row.created_at),
        actor=row.actor,
        added_position=int(row.added_position),
        last_fired_at=_when(row.last_fired_at),
        last_fired_tick=_when(row.last_fired_tick),
    )


def _firing(row: Any) -> TriggerFiring:  # Any: a result row
    return TriggerFiring(
        schedule=row.schedule,
        key=row.key,
        trigger=row.trigger,
        fired_at=from_epoch(row.fired_at),
        agent=row.agent,
        tick=_when(row.tick),
        position=None if row.position is None else int(row.position),
        command=tuple(orjson.loads(row.command)) if row.command else (),
        pid=row.pid,
        exit_code=row.exit_code,
        finished_at=_when(row.finished_at),
    )


class _NotClaimed(Exception):
    """Rolls a claim back: the cron tick is not newer than the last one fired."""


def _find(conn: Connection, name: str) -> Any:  # Any: a result row
    row = conn.execute(select(schedules).where(schedules.c.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no schedule '{name}'; list schedules with `mlcycle schedules list`")
    return row


class SchedulesMixin:
    """``ScheduleCatalog`` in SQL."""

    _db: Database

    def add_schedule(self, schedule: Schedule, *, time: datetime) -> Schedule:
        """Store a new schedule and a ``schedule.added`` event; a taken name: ``AlreadyExists``."""
        _check(schedule)
        payload = {
            "target": schedule.target,
            "kind": schedule.kind,
            "spec": schedule.spec,
            "params": schedule.params,
        }

        def work(conn: Connection) -> Schedule:
            event = append_event(
                conn,
                "schedule.added",
                subject=f"schedules:/{schedule.name}",
                actor=schedule.actor,
                time=time,
                payload=payload,
            )
            row = {
                "name": schedule.name,
                "target": schedule.target,
                "kind": schedule.kind,
                "spec": schedule.spec,
                "params": orjson.dumps(schedule.params, option=orjson.OPT_SORT_KEYS).decode(),
                "enabled": schedule.enabled,
                "created_at": to_epoch(time),
                "actor": schedule.actor,
                "added_position": event.position,
                "last_fired_at": None,
                "last_fired_tick": None,
            }
            if not inserted(conn, schedules, row):
                raise AlreadyExists(
                    f"there is already a schedule '{schedule.name}'; remove it first with "
                    f"`mlcycle schedules remove {schedule.name}` or choose another name"
                )
            return _schedule(_find(conn, schedule.name))

        return self._db.write(work)

    def get_schedule(self, name: str) -> Schedule:
        """Raise ``NotFound`` naming the schedule when there is none."""
        return self._db.read(lambda conn: _schedule(_find(conn, name)))

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        query = select(schedules).order_by(schedules.c.name)
        return self._db.read(lambda conn: [_schedule(row) for row in conn.execute(query)])

    def remove_schedule(self, name: str, *, actor: str, time: datetime) -> Schedule:
        """Delete a schedule (and record ``schedule.removed``); its firings stay as history."""

        def work(conn: Connection) -> Schedule:
            removed = _schedule(_find(conn, name))
            conn.execute(delete(schedules).where(schedules.c.name == name))
            append_event(
                conn,
                "schedule.removed",
                subject=f"schedules:/{name}",
                actor=actor,
                time=time,
                payload={"target": removed.target, "kind": removed.kind, "spec": removed.spec},
            )
            return removed

        return self._db.write(work)

    def claim_firing(self, firing: TriggerFiring) -> bool:
        """Record ``firing`` unless its key was claimed already; whether this call claimed it."""
        fired_at = to_epoch(firing.fired_at)
        tick = _epoch(firing.tick)
        row = {
            "schedule": firing.schedule,
            "key": firing.key,
            "trigger": firing.trigger,
            "fired_at": fired_at,
            "agent": firing.agent,
            "tick": tick,
            "position": firing.position,
            "command": None,
            "pid": None,
            "exit_code": None,
            "finished_at": None,
        }
        target = schedules.c.name == firing.schedule
        if tick is not None:
            newer = schedules.c.last_fired_tick.is_(None) | (schedules.c.last_fired_tick < tick)
            mark = update(schedules).where(target & newer).values(last_fired_tick=tick)
        else:
            mark = update(schedules).where(target)
        mark = mark.values(last_fired_at=fired_at)

        def work(conn: Connection) -> bool:
            if not inserted(conn, trigger_firings, row):
                return False
            if conn.execute(mark).rowcount != 1:
                raise _NotClaimed
            return True

        try:
            return self._db.write(work)
        except _NotClaimed:
            return False

    def finish_firing(
        self,
        firing: TriggerFiring,
        *,
        payload: dict[str, Any],  # Any: JSON values
    ) -> TriggerFiring:
        """Store a firing's command, pid and exit code, with a ``schedule.fired`` event."""
        key = (trigger_firings.c.schedule == firing.schedule) & (
            trigger_firings.c.key == firing.key
        )
        values = {
            "command": orjson.dumps(list(firing.command)).decode(),
            "pid": firing.pid,
            "exit_code": firing.exit_code,
            "finished_at": _epoch(firing.finished_at),
        }

        def work(conn: Connection) -> TriggerFiring:
            if conn.execute(update(trigger_firings).where(key).values(**values)).rowcount != 1:
                raise NotFound(f"schedule '{firing.schedule}' has no claimed firing '{firing.key}'")
            append_event(
                conn,
                "schedule.fired",
                subject=f"schedules:/{firing.schedule}",
                actor=firing.agent,
                time=firing.finished_at or firing.fired_at,
                payload=payload,
            )
            return _firing(conn.execute(select(trigger_firings).where(key)).one())

        return self._db.write(work)

    def list_firings(
        self, schedule: str | None = None, *, limit: int = 1000
    ) -> list[TriggerFiring]:
        """Firings, oldest first (of one schedule, when given)."""
        query = select(trigger_firings)
        if schedule is not None:
            query = query.where(trigger_firings.c.schedule == schedule)
        query = query.order_by(
            trigger_firings.c.fired_at, trigger_firings.c.schedule, trigger_firings.c.key
        ).limit(limit)
        return self._db.read(lambda conn: [_firing(row) for row in conn.execute(query)])

    def take_lease(self, name: str, *, holder: str, now: datetime, ttl_s: float) -> str | None:
        """Take or renew lease ``name`` for ``ttl_s`` seconds; else return its other holder."""
        seconds = to_epoch(now)
        row = {"name": name, "holder": holder, "expires_at": seconds + ttl_s}
        free = (agent_leases.c.holder == holder) | (agent_leases.c.expires_at < seconds)
        take = (
            update(agent_leases)
            .where((agent_leases.c.name == name) & free)
            .values(holder=holder, expires_at=seconds + ttl_s)
        )
        current = select(agent_leases.c.holder).where(agent_leases.c.name == name)

        def work(conn: Connection) -> str | None:
            if not inserted(conn, agent_leases, row):
                conn.execute(take)
            found = conn.execute(current).scalar_one()
            return None if found == holder else str(found)

        return self._db.write(work)

    def release_lease(self, name: str, *, holder: str) -> None:
        """Give the lease back if ``holder`` has it."""
        mine = (agent_leases.c.name == name) & (agent_leases.c.holder == holder)
        self._db.write(lambda conn: conn.execute(delete(agent_leases).where(mine)))
