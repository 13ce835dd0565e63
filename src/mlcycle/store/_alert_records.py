"""The records of alerting: alerts, the per-rule state behind them, and queued notifications.

An alert is one incident of a rule on a deployment, from the window it fired
to the one it resolved in. The rule state remembers, per rule and deployment,
how many windows in a row the condition has held and which alert is the
latest, so evaluations in separate processes continue where the last one
stopped. A delivery is one notification waiting for (or past) its notifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

__all__ = [
    "ALERT_EVENTS",
    "Alert",
    "AlertAction",
    "AlertChange",
    "AlertDelivery",
    "AlertRuleState",
    "AlertState",
    "DeliveryStatus",
    "Severity",
    "WindowValues",
]

Severity: TypeAlias = Literal["info", "warning", "critical"]
"""How bad an alert is; notifiers show it, and rules are sorted by it nowhere else."""

AlertState: TypeAlias = Literal["firing", "resolved"]
"""An alert fires when its rule's condition has held long enough, and resolves when it fails."""

AlertAction: TypeAlias = Literal["none", "fire", "reopen", "resolve"]
"""What one evaluation does to the alert: nothing, a new firing, a flap back, a resolution."""

DeliveryStatus: TypeAlias = Literal["pending", "delivered", "failed"]
"""``pending`` until a notifier took it, ``failed`` once every attempt was used up."""

ALERT_EVENTS: dict[AlertAction, str] = {
    "fire": "alert.fired",
    "reopen": "alert.reopened",
    "resolve": "alert.resolved",
}
"""The event each action records, in the same transaction as the state change."""


@dataclass(frozen=True, slots=True)
class WindowValues:
    """The metric values one window of a deployment had (``None``: missing or not finite)."""

    window_end: datetime
    values: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident of ``rule`` on ``deployment``.

    ``windows`` are the windows that made it fire (the last ``for N windows``);
    ``why`` says it in words. ``flaps`` counts the times it fired again within
    its rule's cooldown after resolving: it was reopened, not notified again.
    """

    id: str
    rule: str
    deployment: str
    severity: Severity
    state: AlertState
    expression: str
    fired_at: datetime
    window_end: datetime
    windows: tuple[WindowValues, ...]
    why: str
    actor: str = ""
    resolved_at: datetime | None = None
    resolved_window_end: datetime | None = None
    flaps: int = 0


@dataclass(frozen=True, slots=True)
class AlertRuleState:
    """Where a rule stands on a deployment: its streak of windows and its latest alert.

    ``recent`` holds the windows of the current streak (at most the rule's
    ``for N windows``). ``version`` increases with every change; a change is
    applied only against the version it was computed from.
    """

    rule: str
    deployment: str
    streak: int
    last_window_end: datetime | None
    recent: tuple[WindowValues, ...] = ()
    alert: Alert | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One evaluation's outcome for a rule on a deployment, applied all at once.

    The rule state becomes ``streak``/``recent``/``window_end``; with an
    action other than ``none``, ``alert`` is the alert as it becomes, an
    event of the action's type is appended with ``payload``, and a pending
    delivery is queued for each of ``notify``.
    """

    rule: str
    deployment: str
    expect_version: int
    streak: int
    window_end: datetime
    recent: tuple[WindowValues, ...]
    time: datetime
    actor: str
    action: AlertAction = "none"
    alert: Alert | None = None
    payload: dict[str, Any] = field(default_factory=dict)  # Any: JSON values
    notify: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """One notification of one alert event to one notifier, retried until it gets through.

    ``event`` is the alert event's type and ``payload`` its payload, so a
    notifier formats the message without reading anything else. While a
    process sends it, ``claimed_until`` keeps other processes off it.
    """

    id: str
    alert_id: str
    notifier: str
    event: str
    payload: dict[str, Any]  # Any: JSON values
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_error: str | None = None
    delivered_at: datetime | None = None
    claimed_until: datetime | None = None
