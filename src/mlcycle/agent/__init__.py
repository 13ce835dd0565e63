"""The agent: schedules and triggers that launch pipelines, and continuous training.

It sits above ``serve`` and ``monitor`` (ADR 0010): it acts on what they
record, such as an ``alert.fired`` event, which starts a retrain under a
``[training.<deployment>]`` policy (ADR 0017).
"""

from __future__ import annotations

from mlcycle.agent._agent import TRIGGER_EVENTS, Agent
from mlcycle.agent._cron import check_cron, latest_tick
from mlcycle.agent._launch import CommandLauncher, Launch, Launcher, pipeline_command
from mlcycle.agent._policy import METRICS, TrainingPolicy, parse_policies, parse_policy, parse_rate
from mlcycle.agent._retrain import TrainingHost
from mlcycle.agent._schedules import Schedules, check_alert_name
from mlcycle.agent._steps import STEP_EVENTS, Step, TrainingStatus
from mlcycle.agent._training import Training
from mlcycle.agent._trial import Verdict, judge

__all__ = [
    "METRICS",
    "STEP_EVENTS",
    "TRIGGER_EVENTS",
    "Agent",
    "CommandLauncher",
    "Launch",
    "Launcher",
    "Schedules",
    "Step",
    "Training",
    "TrainingHost",
    "TrainingPolicy",
    "TrainingStatus",
    "Verdict",
    "check_alert_name",
    "check_cron",
    "judge",
    "latest_tick",
    "parse_policies",
    "parse_policy",
    "parse_rate",
    "pipeline_command",
]
