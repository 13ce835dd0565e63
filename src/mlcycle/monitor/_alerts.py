"""Alerts over monitor results: rules evaluated window by window, with durable states and events.

Each monitor result (a deployment, the end of its window, metric values) is
tested against every rule that watches the deployment. A rule's state per
deployment lives in the store, so ``for 2 windows`` counts across processes.
An alert fires once and stays firing while the condition holds (no repeat per
window), and resolves in the first window where it fails. If it fires again
within its rule's cooldown after resolving, it is the same incident flapping:
reopened (``alert.reopened``), not notified again.

Firing and resolving append ``alert.fired`` and ``alert.resolved`` events
(the agent's ``--on-alert NAME`` follows the first) and queue one delivery per
notifier, in the same transaction. Sending happens off this path (see
``_alerts_delivery``), so a receiver that is down or slow never holds
monitoring up.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from mlcycle.clock import Clock
from mlcycle.errors import Conflict, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.monitor._alerts_delivery import Courier, RetryPolicy
from mlcycle.monitor._notifiers import Notifier
from mlcycle.monitor._rules import Rule
from mlcycle.store import (
    Alert,
    AlertChange,
    AlertDelivery,
    AlertLog,
    AlertRuleState,
    WindowValues,
    check_deployment_name,
)

__all__ = ["Alerts", "MonitorResult", "plan_change"]

_ATTEMPTS = 5  # evaluations retried after a Conflict before giving up
_log = logging.getLogger("mlcycle.monitor.alerts")


@dataclass(frozen=True, slots=True)
class MonitorResult:
    """One window of monitoring on a deployment: when it ended and the metrics it gave."""

    deployment: str
    window_end: datetime
    values: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_deployment_name(self.deployment)
        if self.window_end.tzinfo is None:
            raise ValidationFailed(
                f"the window end {self.window_end} of deployment '{self.deployment}' has no "
                "time zone; pass an aware datetime such as datetime(2030, 1, 2, tzinfo=UTC)"
            )
        for name, value in self.values.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValidationFailed(
                    f"metric '{name}' of deployment '{self.deployment}' is {value!r}; "
                    "monitor results hold numbers (or None when missing)"
                )


class Alerts:
    """Alert rules evaluated over monitor results, their alerts, and their notifications.

    >>> import tempfile
    >>> from datetime import UTC, datetime
    >>> from mlcycle.clock import RealClock
    >>> from mlcycle.monitor import parse_rule
    >>> from mlcycle.store import open_metadata_store
    >>> store = open_metadata_store(f"sqlite:///{tempfile.mkdtemp()}/mlcycle.db")
    >>> rule = parse_rule("drift-high", "drift_share > 0.3 for 2 windows")
    >>> alerts = Alerts(log=store, clock=RealClock(), actor="monitor", rules=[rule])
    >>> day = lambda d: datetime(2030, 1, d, tzinfo=UTC)
    >>> alerts.evaluate(MonitorResult("bike", day(1), {"drift_share": 0.4}))
    []
    >>> [fired] = alerts.evaluate(MonitorResult("bike", day(2), {"drift_share": 0.5}))
    >>> fired.rule, fired.state, fired.windows[0].values
    ('drift-high', 'firing', {'drift_share': 0.4})
    >>> [e.type for e in store.read_events()]
    ['alert.fired']
    >>> alerts.close(); store.close()
    """

    def __init__(
        self,
        *,
        log: AlertLog,
        clock: Clock,
        actor: str,
        rules: Iterable[Rule] | Mapping[str, Rule] = (),
        notifiers: Mapping[str, Notifier] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.log = log
        self.clock = clock
        self.actor = actor
        found = rules.values() if isinstance(rules, Mapping) else rules
        self.rules = {rule.name: rule for rule in found}
        self.courier = Courier(
            log=log,
            clock=clock,
            notifiers=notifiers or {},
            retry=retry or RetryPolicy(),
            actor=actor,
        )

    def evaluate(self, results: MonitorResult | Iterable[MonitorResult]) -> list[Alert]:
        """Test every rule on each result; returns the alerts that fired, reopened or resolved.

        Results are taken in window order per deployment; a window already
        evaluated for a rule (or an older one) is skipped, so evaluating the
        same results twice changes nothing. Notifications are handed to the
        courier's background thread, never sent here.
        """
        batch = [results] if isinstance(results, MonitorResult) else list(results)
        changed: list[Alert] = []
        queued = False
        for result in sorted(batch, key=lambda r: (r.deployment, r.window_end)):
            for rule in self.rules.values():
                if rule.applies_to(result.deployment):
                    change = self._evaluate(rule, result)
                    if change is not None:
                        changed.append(change[0])
                        queued = queued or change[1]
        if queued:
            self.courier.wake()
        return changed

    def _evaluate(self, rule: Rule, result: MonitorResult) -> tuple[Alert, bool] | None:
        """The alert the window changed and whether notifications were queued, or ``None``."""
        for _ in range(_ATTEMPTS):
            state = self.log.get_alert_rule_state(rule.name, result.deployment)
            change = plan_change(rule, state, result, now=self.clock.now(), actor=self.actor)
            if change is None:
                return None
            try:
                stored = self.log.apply_alert_change(change)
            except Conflict:
                _log.debug("rule %s on %s changed meanwhile; again", rule.name, result.deployment)
                continue
            if change.action == "none" or stored.alert is None:
                return None
            _log.info("alert %s %s: %s", rule.name, change.action, change.payload["why"])
            return stored.alert, bool(change.notify)
        raise Conflict(
            f"alert rule '{rule.name}' on '{result.deployment}' kept changing under "
            f"{_ATTEMPTS} evaluations; another process evaluates it at the same time"
        )

    def list(
        self,
        *,
        state: str | None = None,
        rule: str | None = None,
        deployment: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, newest first (firing or resolved, of one rule or deployment)."""
        return self.log.list_alerts(state=state, rule=rule, deployment=deployment, limit=limit)

    def get(self, alert_id: str) -> Alert:
        """The alert ``alert_id``; ``NotFound`` when there is none."""
        return self.log.get_alert(alert_id)

    def deliveries(
        self, *, alert_id: str | None = None, status: str | None = None
    ) -> builtins.list[AlertDelivery]:
        """Notifications queued, sent or given up, oldest first."""
        return self.log.list_deliveries(alert_id=alert_id, status=status)

    def deliver(self) -> builtins.list[AlertDelivery]:
        """Send every due notification now (each bounded by its notifier's timeout)."""
        return self.courier.deliver_due()

    def follow_up(
        self,
        alert_id: str,
        *,
        event: str,
        why: str,
        details: Mapping[str, Any] | None = None,  # Any: JSON values
    ) -> builtins.list[AlertDelivery]:
        """Tell the notifiers of the alert's rule what followed it (``event``) and ``why``.

        Continuous training uses it to say what became of the retrain an
        alert started. Returns the deliveries queued (none when the rule has
        no notifiers or is no longer configured).
        """
        alert = self.log.get_alert(alert_id)
        rule = self.rules.get(alert.rule)
        if rule is None or not rule.notify:
            return []
        last = alert.windows[-1] if alert.windows else None
        payload = {
            "name": alert.rule,
            "alert_id": alert.id,
            "rule": alert.expression,
            "severity": alert.severity,
            "deployment": alert.deployment,
            "state": alert.state,
            "values": {} if last is None else last.values,
            "window_end": alert.window_end.isoformat(),
            **(details or {}),
            "why": why,
        }
        queued = self.log.queue_deliveries(
            alert.id, event=event, payload=payload, notifiers=rule.notify, time=self.clock.now()
        )
        self.courier.wake()
        return queued

    def close(self, timeout_s: float = 10.0) -> None:
        """Let the courier send what is due (for up to ``timeout_s``) and stop its thread.

        What it did not send stays queued in the store for the next process.
        """
        self.courier.close(timeout_s)


def plan_change(
    rule: Rule, state: AlertRuleState | None, result: MonitorResult, *, now: datetime, actor: str
) -> AlertChange | None:
    """What one window does to ``rule`` on its deployment (``None``: nothing to record)."""
    last = None if state is None else state.last_window_end
    if last is not None and result.window_end <= last:
        return None  # evaluated already: results may arrive twice
    outcome = rule.test(result.values)
    if outcome is None:
        return None  # the window cannot say: the rule stays as it was
    window = WindowValues(
        result.window_end, {m: _finite(result.values.get(m)) for m in rule.metrics}
    )
    base = AlertChange(
        rule=rule.name,
        deployment=result.deployment,
        expect_version=0 if state is None else state.version,
        streak=0,
        window_end=result.window_end,
        recent=(),
        time=now,
        actor=actor,
    )
    alert = None if state is None else state.alert
    if not outcome:
        return (
            base
            if alert is None or alert.state != "firing"
            else _resolve(rule, base, alert, window)
        )
    streak = (0 if state is None else state.streak) + 1
    recent = ((() if state is None else state.recent) + (window,))[-rule.windows :]
    held = replace(base, streak=streak, recent=recent)
    if (alert is not None and alert.state == "firing") or streak < rule.windows:
        return held
    if (
        alert is not None
        and alert.resolved_at is not None
        and now - alert.resolved_at < rule.cooldown
    ):
        return _reopen(rule, held, alert)
    return _fire(rule, held)


def _resolve(rule: Rule, base: AlertChange, alert: Alert, window: WindowValues) -> AlertChange:
    resolved = replace(
        alert, state="resolved", resolved_at=base.time, resolved_window_end=window.window_end
    )
    why = f"{rule.expression} no longer holds on {base.deployment} {_in(window)}"
    return replace(
        base,
        action="resolve",
        alert=resolved,
        payload=_payload(rule, resolved, (window,), why),
        notify=rule.notify if alert.flaps == 0 else (),  # a flapping incident stays quiet
    )


def _reopen(rule: Rule, held: AlertChange, alert: Alert) -> AlertChange:
    reopened = replace(
        alert, state="firing", resolved_at=None, resolved_window_end=None, flaps=alert.flaps + 1
    )
    why = (
        f"{_held(rule, held.deployment, held.recent)}, again within the cooldown of "
        f"{rule.cooldown} after it resolved: reopened, not notified again"
    )
    return replace(
        held, action="reopen", alert=reopened, payload=_payload(rule, reopened, held.recent, why)
    )


def _fire(rule: Rule, held: AlertChange) -> AlertChange:
    fired = Alert(
        id=new_id(),
        rule=rule.name,
        deployment=held.deployment,
        severity=rule.severity,
        state="firing",
        expression=rule.expression,
        fired_at=held.time,
        window_end=held.window_end,
        windows=held.recent,
        why=_held(rule, held.deployment, held.recent),
        actor=held.actor,
    )
    return replace(
        held,
        action="fire",
        alert=fired,
        payload=_payload(rule, fired, held.recent, fired.why),
        notify=rule.notify,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _in(window: WindowValues) -> str:
    values = ", ".join(f"{k} = {_show(v)}" for k, v in window.values.items())
    return f"in the window ending {window.window_end:%Y-%m-%d %H:%M} UTC ({values})"


def _held(rule: Rule, deployment: str, windows: tuple[WindowValues, ...]) -> str:
    if len(windows) == 1:
        return f"{rule.expression} on {deployment} {_in(windows[0])}"
    ends = ", ".join(f"{w.window_end:%Y-%m-%d %H:%M}" for w in windows)
    values = "; ".join(
        f"{metric} = {', '.join(_show(w.values.get(metric)) for w in windows)}"
        for metric in rule.metrics
    )
    return (
        f"{rule.expression}: held on {deployment} for {len(windows)} windows in a row, "
        f"ending {ends} UTC ({values})"
    )


def _show(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def _payload(
    rule: Rule, alert: Alert, windows: tuple[WindowValues, ...], why: str
) -> dict[str, Any]:  # Any: JSON values
    """The event payload: the agent's ``alert.fired`` schema (rule, severity, value) and more."""
    last = windows[-1]
    return {
        "name": rule.name,
        "alert_id": alert.id,
        "rule": rule.expression,
        "severity": alert.severity,
        "deployment": alert.deployment,
        "state": alert.state,
        "value": next(iter(last.values.values()), None),
        "values": last.values,
        "window_end": last.window_end.isoformat(),
        "windows": [{"window_end": w.window_end.isoformat(), "values": w.values} for w in windows],
        "why": why,
        "description": rule.description,
        "flaps": alert.flaps,
    }
