"""``mlcycle alerts list|show|rules|test|deliver``: output, errors and exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.cli.conftest import Invoke
from tests.monitor.alert_receivers import free_port, webhook_receiver

from mlcycle import Workspace
from mlcycle.monitor import MonitorResult
from mlcycle.settings import load_settings

T0 = datetime(2030, 1, 1, tzinfo=UTC)

RULES = """
[alerts.rules.drift-high]
when = "drift_share > 0.3 for 2 windows"
severity = "critical"
deployments = ["bike"]
cooldown = "1d"
notify = ["log"]

[alerts.rules.f1-low]
when = "f1 < 0.8"

[alerts.notifiers.log]
kind = "file"
path = "alerts.jsonl"
"""


def configure(project: Path, text: str) -> None:
    with (project / "mlcycle.toml").open("a") as stream:
        stream.write(text)


def fire(project: Path) -> str:
    """Two drifting windows of bike, then f1 falls on taxi; returns the drift alert's id."""
    with Workspace.open(load_settings(project)) as ws:
        [drift] = ws.alerts.evaluate(
            [
                MonitorResult("bike", T0, {"drift_share": 0.4}),
                MonitorResult("bike", T0 + timedelta(days=1), {"drift_share": 0.5}),
            ]
        )
        ws.alerts.evaluate(MonitorResult("taxi", T0, {"f1": 0.9}))
        ws.alerts.evaluate(MonitorResult("taxi", T0 + timedelta(days=1), {"f1": 0.7}))
        ws.alerts.evaluate(MonitorResult("taxi", T0 + timedelta(days=2), {"f1": 0.95}))
        return drift.id


def resolved_ids(invoke: Invoke) -> list[str]:
    return [
        a["id"]
        for a in json.loads(invoke("alerts", "list", "--state", "resolved", "--json").output)
    ]


def test_rules_are_checked_and_shown(project: Path, invoke: Invoke) -> None:
    empty = invoke("alerts", "rules")
    assert (empty.exit_code, "no alert rules" in empty.output) == (0, True)
    configure(project, RULES)
    shown = invoke("alerts", "rules")
    assert shown.exit_code == 0, shown.output
    assert "drift_share > 0.3 for 2 windows" in shown.output
    assert "2 rule(s) OK" in shown.output
    listed = json.loads(invoke("alerts", "rules", "--json").output)
    assert listed["notifiers"] == {"log": "file"}
    [drift, f1] = listed["rules"]
    assert (drift["name"], drift["windows"], drift["cooldown_s"], drift["deployments"]) == (
        "drift-high",
        2,
        86400.0,
        ["bike"],
    )
    assert (f1["metrics"], f1["severity"], f1["deployments"]) == (["f1"], "warning", [])


def test_a_rule_that_does_not_parse_is_pointed_at(project: Path, invoke: Invoke) -> None:
    configure(project, '[alerts.rules.bad]\nwhen = "drift_share >> 0.3"\n')
    for command in (("alerts", "rules"), ("alerts", "test", "bad")):
        result = invoke(*command)
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert lines[0] == "error: alert rule 'bad': unexpected '>'; expected a number"
        assert lines[1:3] == ["  drift_share >> 0.3", "               ^"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[alerts.rules.r]\nwhen = "x > 1"\nnotify = ["slack"]\n',
            "alert rule 'r' notifies 'slack', which is not a notifier (declared: none declared)",
        ),
        (
            (
                '[alerts.notifiers.mail]\nkind = "email"\nhost = "smtp.example.com"\nport = 0\n'
                'sender = "ml@example.com"\nto = ["oncall@example.com"]\n'
            ),
            "notifier 'mail' (email): port 0 is not a TCP port",
        ),
        (
            '[alerts.notifiers.mail]\nkind = "email"\nsender = "ml"\nto = []\n',
            "notifier 'mail' (email): it needs the SMTP server's host",
        ),
        ('[alerts.notifiers.pd]\nkind = "pagerduty"\n', "unknown kind 'pagerduty'"),
        ('[alerts.rules.r]\nwhen = "x > 1"\nseverity = "fatal"\n', "alerts.rules.r.severity"),
        ('[alerts.rules.r]\nwhen = "x > 1"\ncooldown = "soon"\n', "'soon' of alert rule 'r'"),
    ],
)
def test_bad_alert_settings_exit_1_naming_the_problem(
    project: Path, invoke: Invoke, text: str, problem: str
) -> None:
    configure(project, text)
    result = invoke("alerts", "rules")
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert problem in result.output


def test_a_smtp_password_in_mlcycle_toml_is_refused(project: Path, invoke: Invoke) -> None:
    configure(project, '[alerts.notifiers.mail]\nkind = "email"\npassword = "hunter2"\n')
    result = invoke("alerts", "rules")
    assert result.exit_code == 1
    assert "holds a credential at 'alerts.notifiers.mail.password'" in result.output


def test_a_rule_is_tried_on_values(project: Path, invoke: Invoke) -> None:
    configure(project, RULES)
    holds = invoke("alerts", "test", "drift-high", "--value", "drift_share=0.4")
    assert holds.exit_code == 0, holds.output
    assert "drift-high: drift_share > 0.3 for 2 windows holds" in holds.output
    assert "fires once it holds for 2 windows in a row" in holds.output
    calm = invoke("alerts", "test", "f1-low", "--value", "f1=0.9")
    assert "f1-low: f1 < 0.8 does not hold" in calm.output
    unknown = invoke("alerts", "test", "f1-low", "--value", "auc=0.9")
    assert "cannot say" in unknown.output
    assert "missing: f1 (give them with --value)" in unknown.output
    bad = invoke("alerts", "test", "f1-low", "--value", "f1=high")
    assert bad.exit_code == 1
    assert "--value 'f1=high' must be METRIC=NUMBER" in bad.output
    missing = invoke("alerts", "test", "nope")
    assert missing.exit_code == 1
    assert "no alert rule 'nope' (rules: drift-high, f1-low)" in missing.output


def test_alerts_are_listed_and_shown(project: Path, invoke: Invoke) -> None:
    assert "no alerts" in invoke("alerts", "list").output
    configure(project, RULES)
    drift_id = fire(project)
    table = invoke("alerts", "list")
    assert table.exit_code == 0, table.output
    assert "2 alert(s)" in table.output
    firing = json.loads(invoke("alerts", "list", "--state", "firing", "--json").output)
    assert [(a["id"], a["rule"], a["deployment"]) for a in firing] == [
        (drift_id, "drift-high", "bike")
    ]
    assert [w["values"] for w in firing[0]["windows"]] == [
        {"drift_share": 0.4},
        {"drift_share": 0.5},
    ]
    resolved = json.loads(invoke("alerts", "list", "--state", "resolved", "--json").output)
    assert [(a["rule"], a["deployment"]) for a in resolved] == [("f1-low", "taxi")]
    assert invoke("alerts", "list", "--deployment", "bike", "--json").output.count('"id"') == 1
    shown = invoke("alerts", "show", drift_id)
    assert shown.exit_code == 0, shown.output
    assert f"alert {drift_id}: drift-high on bike" in shown.output
    assert "alert.fired -> log: " in shown.output
    detail = json.loads(invoke("alerts", "show", drift_id, "--json").output)
    assert [d["notifier"] for d in detail["deliveries"]] == ["log"]
    f1_low = invoke("alerts", "show", resolved_ids(invoke)[0])
    assert "resolved 20" in f1_low.output
    bad_state = invoke("alerts", "list", "--state", "open")
    assert bad_state.exit_code == 1
    assert "unknown alert state 'open'; use one of firing, resolved" in bad_state.output
    unknown = invoke("alerts", "show", "nope")
    assert (unknown.exit_code, "no alert 'nope'" in unknown.output) == (1, True)


def test_deliver_sends_what_waited_for_a_receiver(project: Path, invoke: Invoke) -> None:
    port = free_port()
    configure(
        project,
        RULES.replace('notify = ["log"]', 'notify = ["hook"]')
        + f'\n[alerts.notifiers.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/x"\n'
        + "[alerts]\nretry_initial_s = 0.001\nretry_max_s = 0.001\n",
    )
    drift_id = fire(project)  # the receiver is down: the notification waits
    detail = json.loads(invoke("alerts", "show", drift_id, "--json").output)
    assert [d["status"] for d in detail["deliveries"]] == ["pending"]
    with webhook_receiver(port) as hook:
        sent = invoke("alerts", "deliver")
    assert sent.exit_code == 0, sent.output
    assert "alert.fired -> hook: delivered" in sent.output
    assert [b["text"].split(":")[0] for b in hook.received] == [
        "[CRITICAL] drift-high firing on bike"
    ]
    assert "0 notification(s) tried" in invoke("alerts", "deliver").output


def test_an_agent_pass_sends_what_waited_for_a_receiver(project: Path, invoke: Invoke) -> None:
    port = free_port()
    configure(
        project,
        RULES.replace('notify = ["log"]', 'notify = ["hook"]')
        + f'\n[alerts.notifiers.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/x"\n'
        + "[alerts]\nretry_initial_s = 0.001\nretry_max_s = 0.001\n",
    )
    fire(project)  # the receiver is down: the notification waits
    down = invoke("agent", "--once")
    assert down.exit_code == 0, down.output
    assert "notification alert.fired -> hook: pending: URLError" in down.output
    with webhook_receiver(port) as hook:
        up = invoke("agent", "--once")
    assert up.exit_code == 0, up.output
    assert "notification alert.fired -> hook: delivered" in up.output
    assert [b["text"].split(":")[0] for b in hook.received] == [
        "[CRITICAL] drift-high firing on bike"
    ]
