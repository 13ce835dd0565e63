"""The agent: schedules and triggers that launch pipelines, following the store's event log.

It sits above ``serve`` and ``monitor`` (ADR 0010): it acts on what they
record, such as an ``alert.fired`` event, and will drive continuous training.
"""

from __future__ import annotations

from mlcycle.agent._agent import TRIGGER_EVENTS, Agent
from mlcycle.agent._cron import check_cron, latest_tick
from mlcycle.agent._launch import CommandLauncher, Launch, Launcher, pipeline_command
from mlcycle.agent._schedules import Schedules, check_alert_name

__all__ = [
    "TRIGGER_EVENTS",
    "Agent",
    "CommandLauncher",
    "Launch",
    "Launcher",
    "Schedules",
    "check_alert_name",
    "check_cron",
    "latest_tick",
    "pipeline_command",
]
