"""Alerts in SQL (the ``AlertLog``): rule states, incidents, their events and queued deliveries.

An evaluation's outcome commits as one transaction: the rule state, the
alert, its ``alert.*`` event and a pending delivery per notifier. A crash
leaves either all of it or none, so an alert is never fired without its
event, nor an event left without the notifications it owes. The rule state
is changed only from the version the change was computed from, so two
processes evaluating the same rule at once cannot both fire it.

Deliveries are claimed for a short lease before they are sent, so two
processes retrying at once do not both send one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

import orjson
from sqlalchemy import Connection, and_, insert, or_, select, update

from mlcycle.errors import Conflict, NotFound, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.store._alert_records import (
    ALERT_EVENTS,
    Alert,
    AlertChange,
    AlertDelivery,
    AlertRuleState,
    AlertState,
    DeliveryStatus,
    WindowValues,
)
from mlcycle.store._keys import check_name
from mlcycle.store._schema import alert_deliveries, alert_rule_states, alerts
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import append_event, inserted

__all__ = ["ALERT_STATES", "DELIVERY_STATUSES", "AlertsMixin", "check_alert_rule_name"]

ALERT_STATES: tuple[str, ...] = get_args(AlertState)
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)


def check_alert_rule_name(name: str) -> str:
    """``name`` if it can name an alert rule, else ``ValidationFailed`` naming the rule.

    >>> check_alert_rule_name("drift-high")
    'drift-high'
    """
    return check_name(name, kind="alert rule", example="'drift-high'")


def _windows_json(windows: tuple[WindowValues, ...]) -> str:
    return orjson.dumps(
        [{"window_end": to_epoch(w.window_end), "values": w.values} for w in windows]
    ).decode()


def _windows(text: str) -> tuple[WindowValues, ...]:
    return tuple(
        WindowValues(window_end=from_epoch(w["window_end"]), values=w["values"])
        for w in orjson.loads(text)
    )


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_epoch(seconds)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else to_epoch(moment)


def _alert(row: Any) -> Alert:  # Any: a result row
    return Alert(
        id=row.id,
        rule=row.rule,
        deployment=row.deployment,
        severity=row.severity,
        state=row.state,
        expression=row.expression,
        fired_at=from_epoch(row.fired_at),
        window_end=from_epoch(row.window_end),
        windows=_windows(row.windows),
        why=row.why,
        actor=row.actor,
        resolved_at=_when(row.resolved_at),
        resolved_window_end=_when(row.resolved_window_end),
        flaps=int(row.flaps),
    )


def _alert_row(alert: Alert) -> dict[str, Any]:  # Any: column values
    return {
        "rule": alert.rule,
        "deployment": alert.deployment,
        "severity": alert.severity,
        "state": alert.state,
        "expression": alert.expression,
        "fired_at": to_epoch(alert.fired_at),
        "window_end": to_epoch(alert.window_end),
        "windows": _windows_json(alert.windows),
        "why": alert.why,
        "actor": alert.actor,
        "resolved_at": _epoch(alert.resolved_at),
        "resolved_window_end": _epoch(alert.resolved_window_end),
        "flaps": alert.flaps,
    }


def _delivery(row: Any) -> AlertDelivery:  # Any: a result row
    return AlertDelivery(
        id=row.id,
        alert_id=row.alert_id,
        notifier=row.notifier,
        event=row.event,
        payload=orjson.loads(row.payload),
        status=row.status,
        attempts=int(row.attempts),
        created_at=from_epoch(row.created_at),
        next_attempt_at=_when(row.next_attempt_at),
        last_error=row.last_error,
        delivered_at=_when(row.delivered_at),
        claimed_until=_when(row.claimed_until),
    )


def _find_alert(conn: Connection, alert_id: str) -> Alert | None:
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).one_or_none()
    return None if row is None else _alert(row)


def _state_key(rule: str, deployment: str) -> Any:  # Any: a SQL condition
    return (alert_rule_states.c.rule == rule) & (alert_rule_states.c.deployment == deployment)


def _read_state(conn: Connection, rule: str, deployment: str) -> AlertRuleState | None:
    row = conn.execute(select(alert_rule_states).where(_state_key(rule, deployment))).one_or_none()
    if row is None:
        return None
    return AlertRuleState(
        rule=row.rule,
        deployment=row.deployment,
        streak=int(row.streak),
        last_window_end=_when(row.last_window_end),
        recent=_windows(row.recent),
        alert=None if row.alert_id is None else _find_alert(conn, row.alert_id),
        version=int(row.version),
    )


def _check_change(change: AlertChange) -> None:
    check_alert_rule_name(change.rule)
    check_name(change.deployment, kind="deployment", example="'bike-demand'")
    if change.streak < 0 or change.expect_version < 0:
        raise ValidationFailed(
            f"alert rule '{change.rule}': streak ({change.streak}) and expected version "
            f"({change.expect_version}) must not be negative"
        )
    if (change.action == "none") != (change.alert is None):
        raise ValidationFailed(
            f"alert rule '{change.rule}': a change with action '{change.action}' "
            + ("takes no alert" if change.action == "none" else "needs the alert it changes")
        )
    alert = change.alert
    if alert is not None and (alert.rule, alert.deployment) != (change.rule, change.deployment):
        raise ValidationFailed(
            f"alert {alert.id} belongs to rule '{alert.rule}' on '{alert.deployment}', "
            f"not to rule '{change.rule}' on '{change.deployment}'"
        )
    if alert is not None and alert.state not in ALERT_STATES:
        raise ValidationFailed(f"alert state {alert.state!r} must be one of {ALERT_STATES}")


def _save_state(conn: Connection, change: AlertChange) -> None:
    values = {
        "streak": change.streak,
        "last_window_end": to_epoch(change.window_end),
        "recent": _windows_json(change.recent),
        "version": change.expect_version + 1,
        "updated_at": to_epoch(change.time),
    }
    if change.alert is not None:
        values["alert_id"] = change.alert.id
    stale = Conflict(
        f"alert rule '{change.rule}' on '{change.deployment}' was evaluated by another "
        "process meanwhile; read its state again and evaluate the window again"
    )
    if change.expect_version == 0:
        row = {"rule": change.rule, "deployment": change.deployment, "alert_id": None}
        if not inserted(conn, alert_rule_states, {**row, **values}):
            raise stale
    else:
        where = _state_key(change.rule, change.deployment) & (
            alert_rule_states.c.version == change.expect_version
        )
        if conn.execute(update(alert_rule_states).where(where).values(**values)).rowcount != 1:
            raise stale


def _save_alert(conn: Connection, change: AlertChange) -> None:
    alert = change.alert
    assert alert is not None
    row = _alert_row(alert)
    if change.action == "fire":
        if not inserted(conn, alerts, {"id": alert.id, **row}):
            raise ValidationFailed(f"alert {alert.id} exists already; a firing needs a new id")
    elif conn.execute(update(alerts).where(alerts.c.id == alert.id).values(**row)).rowcount != 1:
        raise NotFound(f"no alert '{alert.id}' to {change.action}")
    event = append_event(
        conn,
        ALERT_EVENTS[change.action],
        subject=alert.rule,
        actor=change.actor,
        time=change.time,
        payload=change.payload,
    )
    created = to_epoch(change.time)
    payload = orjson.dumps({**change.payload, "position": event.position}).decode()
    for notifier in change.notify:
        conn.execute(
            insert(alert_deliveries).values(
                id=new_id(),
                alert_id=alert.id,
                notifier=notifier,
                event=event.type,
                payload=payload,
                status="pending",
                attempts=0,
                created_at=created,
                next_attempt_at=created,
            )
        )


class AlertsMixin:
    """``AlertLog`` in SQL."""

    _db: Database

    def get_alert_rule_state(self, rule: str, deployment: str) -> AlertRuleState | None:
        """Where ``rule`` stands on ``deployment`` (``None`` before its first evaluation)."""
        return self._db.read(lambda conn: _read_state(conn, rule, deployment))

    def apply_alert_change(self, change: AlertChange) -> AlertRuleState:
        """Apply one evaluation's outcome in one transaction; returns the new rule state.

        Raises ``Conflict`` (and changes nothing) when the rule state is no
        longer at ``change.expect_version``: evaluate again from a fresh read.
        """
        _check_change(change)

        def work(conn: Connection) -> AlertRuleState:
            _save_state(conn, change)
            if change.alert is not None:
                _save_alert(conn, change)
            state = _read_state(conn, change.rule, change.deployment)
            assert state is not None, "the state was written in this transaction"
            return state

        return self._db.write(work)

    def get_alert(self, alert_id: str) -> Alert:
        """Raise ``NotFound`` naming the id when there is no such alert."""

        def work(conn: Connection) -> Alert:
            found = _find_alert(conn, alert_id)
            if found is None:
                raise NotFound(f"no alert '{alert_id}'; list alerts with `mlcycle alerts list`")
            return found

        return self._db.read(work)

    def list_alerts(
        self,
        *,
        state: str | None = None,
        rule: str | None = None,
        deployment: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, newest firing first, optionally of one state, rule or deployment."""
        if state is not None and state not in ALERT_STATES:
            raise ValidationFailed(
                f"unknown alert state {state!r}; use one of {', '.join(ALERT_STATES)}"
            )
        if limit < 1:
            raise ValidationFailed(f"limit ({limit}) must be at least 1")
        query = select(alerts)
        for column, value in ((alerts.c.state, state), (alerts.c.rule, rule)):
            if value is not None:
                query = query.where(column == value)
        if deployment is not None:
            query = query.where(alerts.c.deployment == deployment)
        query = query.order_by(alerts.c.fired_at.desc(), alerts.c.id.desc()).limit(limit)
        return self._db.read(lambda conn: [_alert(row) for row in conn.execute(query)])

    def claim_deliveries(
        self,
        *,
        now: datetime,
        holder: str,
        lease_s: float,
        notifiers: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[AlertDelivery]:
        """Pending deliveries due by ``now`` that nobody holds, leased to ``holder``.

        With ``notifiers``, only deliveries to those: a process claims only what it can send.
        """
        seconds = to_epoch(now)
        due = and_(
            alert_deliveries.c.status == "pending",
            alert_deliveries.c.next_attempt_at <= seconds,
            or_(
                alert_deliveries.c.claimed_until.is_(None),
                alert_deliveries.c.claimed_until < seconds,
            ),
        )
        if notifiers is not None:
            due = and_(due, alert_deliveries.c.notifier.in_(list(notifiers)))
        query = (
            select(alert_deliveries.c.id)
            .where(due)
            .order_by(alert_deliveries.c.next_attempt_at, alert_deliveries.c.id)
            .limit(limit)
        )

        def work(conn: Connection) -> list[AlertDelivery]:
            if conn.dialect.name == "postgresql":
                query_locked = query.with_for_update(skip_locked=True)
                ids = list(conn.execute(query_locked).scalars())
            else:
                ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            conn.execute(
                update(alert_deliveries)
                .where(alert_deliveries.c.id.in_(ids))
                .values(claimed_by=holder, claimed_until=seconds + lease_s)
            )
            rows = conn.execute(
                select(alert_deliveries)
                .where(alert_deliveries.c.id.in_(ids))
                .order_by(alert_deliveries.c.next_attempt_at, alert_deliveries.c.id)
            )
            return [_delivery(row) for row in rows]

        return self._db.write(work)

    def finish_delivery(
        self,
        delivery_id: str,
        *,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
        actor: str = "",
    ) -> AlertDelivery:
        """Record one attempt: delivered (no ``error``), to retry at ``retry_at``, or failed.

        A delivery that failed for good also appends an ``alert.delivery_failed`` event.
        """
        key = alert_deliveries.c.id == delivery_id
        seconds = to_epoch(now)
        values: dict[str, Any] = {  # Any: column values
            "attempts": alert_deliveries.c.attempts + 1,
            "claimed_by": None,
            "claimed_until": None,
            "last_error": error,
        }
        if error is None:
            values |= {"status": "delivered", "delivered_at": seconds, "next_attempt_at": None}
        elif retry_at is not None:
            values |= {"status": "pending", "next_attempt_at": to_epoch(retry_at)}
        else:
            values |= {"status": "failed", "next_attempt_at": None}

        def work(conn: Connection) -> AlertDelivery:
            pending = key & (alert_deliveries.c.status == "pending")
            if conn.execute(update(alert_deliveries).where(pending).values(**values)).rowcount != 1:
                raise NotFound(f"no pending alert delivery '{delivery_id}'")
            done = _delivery(conn.execute(select(alert_deliveries).where(key)).one())
            if done.status == "failed":
                append_event(
                    conn,
                    "alert.delivery_failed",
                    subject=str(done.payload.get("name", done.alert_id)),
                    actor=actor,
                    time=now,
                    payload={
                        "alert_id": done.alert_id,
                        "notifier": done.notifier,
                        "event": done.event,
                        "attempts": done.attempts,
                        "error": error,
                    },
                )
            return done

        return self._db.write(work)

    def list_deliveries(
        self, *, alert_id: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[AlertDelivery]:
        """Deliveries, oldest first, optionally of one alert or status."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise ValidationFailed(
                f"unknown delivery status {status!r}; use one of {', '.join(DELIVERY_STATUSES)}"
            )
        query = select(alert_deliveries)
        if alert_id is not None:
            query = query.where(alert_deliveries.c.alert_id == alert_id)
        if status is not None:
            query = query.where(alert_deliveries.c.status == status)
        query = query.order_by(alert_deliveries.c.created_at, alert_deliveries.c.id).limit(limit)
        return self._db.read(lambda conn: [_delivery(row) for row in conn.execute(query)])

    def queue_deliveries(
        self,
        alert_id: str,
        *,
        event: str,
        payload: dict[str, Any],  # Any: JSON values
        notifiers: Sequence[str],
        time: datetime,
    ) -> list[AlertDelivery]:
        """Queue one pending delivery of ``event`` per notifier (a retrain's outcome, say).

        Raises ``NotFound`` (and queues nothing) when there is no such alert.
        """
        created = to_epoch(time)
        text = orjson.dumps(payload).decode()
        ids = [new_id() for _ in notifiers]

        def work(conn: Connection) -> list[AlertDelivery]:
            if _find_alert(conn, alert_id) is None:
                raise NotFound(f"no alert '{alert_id}' to notify about")
            for delivery_id, notifier in zip(ids, notifiers, strict=True):
                conn.execute(
                    insert(alert_deliveries).values(
                        id=delivery_id,
                        alert_id=alert_id,
                        notifier=notifier,
                        event=event,
                        payload=text,
                        status="pending",
                        attempts=0,
                        created_at=created,
                        next_attempt_at=created,
                    )
                )
            rows = conn.execute(
                select(alert_deliveries)
                .where(alert_deliveries.c.id.in_(ids))
                .order_by(alert_deliveries.c.created_at, alert_deliveries.c.id)
            )
            return [_delivery(row) for row in rows]

        return self._db.write(work)
