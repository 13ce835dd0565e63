"""Monitoring: drift of live data against a reference, prepared once and reused, and alerts.

``mc.monitor.drift(reference_df, current_df)`` tests every column and returns a
:class:`DriftReport`; a :class:`ReferenceStats` (or a dataset reference such as
``"bike/3"``, cached in the artifact store) makes every later window cheap.
:class:`Alerts` evaluates rules such as ``drift_share > 0.3 for 2 windows``
over :class:`MonitorResult` windows and notifies through webhooks, files and e-mail.
``mc.monitor.run("bike-demand")`` scores the windows of a deployment's prediction
log, stores them (``results``) and alerts on them; ``report`` writes them as HTML
and JSON.
"""

from __future__ import annotations

from mlcycle.monitor._alerts import Alerts, MonitorResult, plan_change
from mlcycle.monitor._alerts_delivery import Courier, RetryPolicy
from mlcycle.monitor._drift import DEFAULT_THRESHOLDS, TESTS, drift
from mlcycle.monitor._monitor import CACHE_KIND, Monitor
from mlcycle.monitor._notifiers import (
    ENTRY_POINT_GROUP,
    EmailNotifier,
    FileNotifier,
    Notification,
    Notifier,
    WebhookNotifier,
    build_notifier,
    build_notifiers,
    known_kinds,
    slack_message,
)
from mlcycle.monitor._reference import ColumnReference, ReferenceStats
from mlcycle.monitor._report import ColumnDrift, DriftReport, TestName
from mlcycle.monitor._rules import (
    SEVERITIES,
    Rule,
    parse_condition,
    parse_duration,
    parse_rule,
    rule_from_settings,
    rules_from_settings,
)
from mlcycle.monitor._sdk import age_quality, reference, report, results, run
from mlcycle.monitor._sources import Sources
from mlcycle.monitor._window import WindowResult

__all__ = [
    "CACHE_KIND",
    "DEFAULT_THRESHOLDS",
    "ENTRY_POINT_GROUP",
    "SEVERITIES",
    "TESTS",
    "Alerts",
    "ColumnDrift",
    "ColumnReference",
    "Courier",
    "DriftReport",
    "EmailNotifier",
    "FileNotifier",
    "Monitor",
    "MonitorResult",
    "Notification",
    "Notifier",
    "ReferenceStats",
    "RetryPolicy",
    "Rule",
    "Sources",
    "TestName",
    "WebhookNotifier",
    "WindowResult",
    "age_quality",
    "build_notifier",
    "build_notifiers",
    "drift",
    "known_kinds",
    "parse_condition",
    "parse_duration",
    "parse_rule",
    "plan_change",
    "reference",
    "report",
    "results",
    "rule_from_settings",
    "rules_from_settings",
    "run",
    "slack_message",
]
