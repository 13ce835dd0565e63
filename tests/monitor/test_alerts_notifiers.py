"""Notifiers against real receivers: a webhook on loopback, a JSON-lines file, a local SMTP server.

Receivers that are down, slow or failing never hold monitoring up: the
notification is kept, retried with backoff on the simulated clock, and its
failure recorded.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.monitor.alert_receivers import free_port, smtp_server, webhook_receiver

from mlcycle import Workspace
from mlcycle.clock import SimulatedClock
from mlcycle.errors import ValidationFailed
from mlcycle.monitor import Alerts, MonitorResult, Notification, RetryPolicy, slack_message
from mlcycle.settings import ClockSettings, Settings

T0 = datetime(2030, 1, 1, tzinfo=UTC)
RULE = {"when": "drift_share > 0.3", "severity": "warning", "notify": ["out"]}


@contextmanager
def open_workspace(
    home: Path, notifier: dict[str, Any], *, rules: dict[str, Any] | None = None, **options: Any
) -> Iterator[tuple[Workspace, SimulatedClock]]:
    settings = Settings(
        home=home,
        actor="tester",
        clock=ClockSettings(mode="simulated"),
        alerts={"rules": rules or {"drift-high": RULE}, "notifiers": {"out": notifier}, **options},
    )
    clock = SimulatedClock(settings.clock_state_file)
    clock.set(T0)
    with Workspace.open(settings) as workspace:
        yield workspace, clock


def drifting(day: int = 1, deployment: str = "bike") -> MonitorResult:
    return MonitorResult(deployment, T0 + timedelta(days=day), {"drift_share": 0.5})


def wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def attempted(alerts: Alerts) -> bool:
    return all(d.attempts >= 1 for d in alerts.deliveries())


def test_a_webhook_gets_slack_compatible_json(tmp_path: Path) -> None:
    with (
        webhook_receiver() as hook,
        open_workspace(tmp_path, {"kind": "webhook", "url": hook.url}) as (ws, _),
    ):
        [fired] = ws.alerts.evaluate(drifting())
        wait_for(lambda: [d.status for d in ws.alerts.deliveries()] == ["delivered"])
    [body] = hook.received
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("[WARNING] drift-high firing on bike: drift_share > 0.3 on bike")
    header, why, fields, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[WARNING] drift-high firing on bike"},
    }
    assert why["text"]["text"] == fired.why
    assert [f["text"] for f in fields["fields"]] == [
        "*Rule*\n`drift_share > 0.3`",
        "*Deployment*\nbike",
        "*Severity*\nwarning",
        "*Values*\ndrift_share = 0.5",
    ]
    assert fired.id in context["elements"][0]["text"]


def test_a_json_webhook_gets_the_whole_alert_event(tmp_path: Path) -> None:
    notifier = {"kind": "webhook", "url": "", "format": "json"}
    with webhook_receiver() as hook:
        notifier["url"] = hook.url
        with open_workspace(tmp_path, notifier) as (ws, _):
            [fired] = ws.alerts.evaluate(drifting())
            wait_for(lambda: bool(hook.received))
    [body] = hook.received
    assert (body["event"], body["alert_id"], body["name"]) == (
        "alert.fired",
        fired.id,
        "drift-high",
    )
    assert body["values"] == {"drift_share": 0.5}


def test_a_receiver_that_is_down_gets_the_alert_later_with_backoff(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}/hooks/alerts"
    with open_workspace(tmp_path, {"kind": "webhook", "url": url}) as (ws, clock):
        [fired] = ws.alerts.evaluate(drifting())  # monitoring goes on: the alert is recorded
        assert ws.alerts.list(state="firing") == [fired]
        wait_for(lambda: attempted(ws.alerts))
        [failed] = ws.alerts.deliveries()
        assert (failed.status, failed.attempts) == ("pending", 1)
        assert "Connection refused" in (failed.last_error or "")
        assert failed.next_attempt_at is not None
        assert failed.next_attempt_at - failed.created_at >= timedelta(seconds=30)
        assert ws.alerts.deliver() == []  # not due yet
        clock.advance(timedelta(seconds=31))
        with webhook_receiver(port) as hook:
            [done] = ws.alerts.deliver()
        assert (done.status, done.attempts, done.last_error) == ("delivered", 2, None)
        assert len(hook.received) == 1


def test_a_slow_receiver_does_not_hold_monitoring_up(tmp_path: Path) -> None:
    rules = {"drift-high": RULE, "f1-low": {"when": "f1 < 0.8", "notify": ["out"]}}
    with webhook_receiver() as hook:
        hook.hold = __import__("threading").Event()  # answers only when released
        notifier = {"kind": "webhook", "url": hook.url, "timeout_s": 30}
        with open_workspace(tmp_path, notifier, rules=rules) as (ws, _):
            ws.alerts.evaluate(drifting(1))
            wait_for(hook.arrived.is_set)  # the courier is stuck on the receiver...
            [fired] = ws.alerts.evaluate(MonitorResult("bike", T0 + timedelta(days=2), {"f1": 0.5}))
            assert fired.rule == "f1-low"  # ...and monitoring goes on
            assert {d.status for d in ws.alerts.deliveries()} == {"pending"}
            hook.hold.set()
            wait_for(lambda: {d.status for d in ws.alerts.deliveries()} == {"delivered"})
    assert [b["text"].split(":")[0] for b in hook.received] == [
        "[WARNING] drift-high firing on bike",
        "[WARNING] f1-low firing on bike",
    ]


def test_a_timed_out_send_is_recorded_and_retried(tmp_path: Path) -> None:
    with webhook_receiver() as hook:
        hook.hold = __import__("threading").Event()
        notifier = {"kind": "webhook", "url": hook.url, "timeout_s": 0.2}
        with open_workspace(tmp_path, notifier) as (ws, clock):
            ws.alerts.evaluate(drifting())
            wait_for(lambda: attempted(ws.alerts))
            [late] = ws.alerts.deliveries()
            assert late.status == "pending"
            assert "timed out" in (late.last_error or "")
            hook.hold.set()
            clock.advance(timedelta(minutes=1))
            [done] = ws.alerts.deliver()
            assert done.status == "delivered"


def test_a_notification_that_keeps_failing_is_marked_failed_with_an_event(tmp_path: Path) -> None:
    with webhook_receiver(status=500) as hook:
        notifier = {"kind": "webhook", "url": hook.url}
        options = {"max_attempts": 3, "retry_initial_s": 10, "retry_max_s": 15}
        with open_workspace(tmp_path, notifier, **options) as (ws, clock):
            ws.alerts.evaluate(drifting())
            wait_for(lambda: attempted(ws.alerts))
            waits = []
            for _ in range(2):
                [pending] = ws.alerts.deliveries()
                assert pending.next_attempt_at is not None
                waits.append(pending.next_attempt_at - ws.clock.now())
                clock.advance(timedelta(seconds=16))
                ws.alerts.deliver()
            [failed] = ws.alerts.deliveries()
            events = ws.events(types=["alert.delivery_failed"])
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 3, None)
    assert "500" in (failed.last_error or "")
    assert waits[0] <= timedelta(seconds=10) < waits[1] + timedelta(seconds=16)  # it doubled
    assert len(hook.received) == 3
    [event] = events
    assert (event.subject, event.payload["notifier"], event.payload["attempts"]) == (
        "drift-high",
        "out",
        3,
    )


def test_the_file_notifier_appends_json_lines(tmp_path: Path) -> None:
    notifier = {"kind": "file", "path": "logs/alerts.jsonl"}
    with open_workspace(tmp_path, notifier) as (ws, _):
        ws.alerts.evaluate(drifting(1))
        ws.alerts.evaluate(MonitorResult("bike", T0 + timedelta(days=2), {"drift_share": 0.1}))
        wait_for(lambda: {d.status for d in ws.alerts.deliveries()} == {"delivered"})
    entries = [
        json.loads(line) for line in (tmp_path / "logs/alerts.jsonl").read_text().splitlines()
    ]
    assert [(e["event"], e["state"]) for e in entries] == [
        ("alert.fired", "firing"),
        ("alert.resolved", "resolved"),
    ]


def test_email_goes_through_a_real_smtp_server_with_a_login(tmp_path: Path) -> None:
    with smtp_server(login=("ml", "s3cret")) as box:
        notifier = {
            "kind": "email",
            "host": "127.0.0.1",
            "port": box.port,
            "sender": "ml@example.com",
            "to": ["oncall@example.com", "team@example.com"],
            "username": "ml",
            "password": "s3cret",
        }
        with open_workspace(tmp_path, notifier) as (ws, _):
            [fired] = ws.alerts.evaluate(drifting())
            wait_for(lambda: [d.status for d in ws.alerts.deliveries()] == ["delivered"])
    [message] = box.messages
    assert message["Subject"] == "[mlcycle] [WARNING] drift-high firing on bike"
    assert message["From"] == "ml@example.com"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert fired.why in body.decode()
    assert f"alert {fired.id}" in body.decode()
    assert box.envelopes == [("ml@example.com", ["oncall@example.com", "team@example.com"])]
    assert box.logins == ["ml"]


def test_a_wrong_smtp_password_is_recorded_and_retried(tmp_path: Path) -> None:
    with smtp_server(login=("ml", "s3cret")) as box:
        notifier = {
            "kind": "email",
            "host": "127.0.0.1",
            "port": box.port,
            "sender": "ml@example.com",
            "to": ["oncall@example.com"],
            "username": "ml",
            "password": "wrong",
            "timeout_s": 1,
        }
        with open_workspace(tmp_path, notifier) as (ws, _):
            ws.alerts.evaluate(drifting())
            wait_for(lambda: attempted(ws.alerts))
            [pending] = ws.alerts.deliveries()
    assert pending.status == "pending"
    assert (pending.last_error or "").startswith("SMTP")  # refused or cut off: recorded either way
    assert box.messages == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"host": None}, "needs the SMTP server's host"),
        ({"port": 70000}, "port 70000 is not a TCP port"),
        ({"sender": "nobody"}, "sender 'nobody' is not an e-mail address"),
        ({"to": []}, "has no recipients"),
        ({"to": ["oncall"]}, "recipient 'oncall' is not an e-mail address"),
        ({"username": "ml"}, "a login needs both username and password"),
    ],
)
def test_bad_smtp_settings_are_refused_naming_the_notifier(
    tmp_path: Path, changes: dict[str, Any], problem: str
) -> None:
    notifier = {
        "kind": "email",
        "host": "smtp.example.com",
        "sender": "ml@example.com",
        "to": ["oncall@example.com"],
        **changes,
    }
    with open_workspace(tmp_path, notifier) as (ws, _), pytest.raises(ValidationFailed) as caught:
        _ = ws.alerts
    assert str(caught.value).startswith("notifier 'out' (email): ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("notifier", "problem"),
    [
        ({"kind": "pager"}, "notifier 'out' has unknown kind 'pager'; use one of webhook, file"),
        ({"kind": "webhook"}, "needs a url starting with http:// or https://"),
        ({"kind": "webhook", "url": "ftp://x/y"}, "needs a url starting with http://"),
        ({"kind": "file"}, "needs a path"),
        ({"kind": "file", "path": "."}, "is a folder; name a file"),
    ],
)
def test_bad_notifiers_are_refused(tmp_path: Path, notifier: dict[str, Any], problem: str) -> None:
    with (
        open_workspace(tmp_path, notifier) as (ws, _),
        pytest.raises(ValidationFailed, match=problem),
    ):
        _ = ws.alerts


def test_a_third_party_notifier_comes_from_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    dist = site / "mlcycle_pager-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlcycle-pager\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mlcycle.notifiers]\npager = mlcycle_pager:make\n")
    (site / "mlcycle_pager.py").write_text(
        "SENT = []\n"
        "class Pager:\n"
        "    def __init__(self, name, settings):\n"
        "        self.name, self.channel = name, settings.options['channel']\n"
        "    def send(self, notification):\n"
        "        SENT.append((self.channel, notification.title))\n"
        "def make(name, settings, home):\n"
        "    return Pager(name, settings)\n"
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    notifier = {"kind": "pager", "options": {"channel": "#ml"}}
    with open_workspace(tmp_path / "project", notifier) as (ws, _):
        ws.alerts.evaluate(drifting())
        ws.alerts.close()
        ws.alerts.deliver()
    sent = importlib.import_module("mlcycle_pager").SENT
    assert sent == [("#ml", "[WARNING] drift-high firing on bike")]


def test_a_process_without_the_notifier_leaves_its_deliveries_alone(tmp_path: Path) -> None:
    with open_workspace(tmp_path, {"kind": "file", "path": "a.jsonl"}) as (ws, _):
        metadata: Any = ws.metadata
        bare = Alerts(log=metadata, clock=ws.clock, actor="m", rules=ws.alerts.rules.values())
        bare.evaluate(drifting())  # queued for 'out', which this evaluator does not have
        assert bare.deliver() == []
        bare.close()
        [waiting] = ws.alerts.deliveries()
        assert (waiting.status, waiting.attempts) == ("pending", 0)
        [done] = ws.alerts.deliver()  # a process that has 'out' sends it
        assert done.status == "delivered"
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1


def test_retry_policy_doubles_up_to_its_ceiling_and_checks_itself() -> None:
    policy = RetryPolicy(max_attempts=6, initial_s=10, max_s=60)
    waits = [policy.next_attempt(n, now=T0) for n in range(6)]
    assert [None if w is None else (w - T0).total_seconds() for w in waits] == [
        10, 20, 40, 60, 60, None,
    ]  # fmt: skip
    with pytest.raises(ValidationFailed, match="max_attempts must be at least 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationFailed, match="retry_initial_s <= retry_max_s"):
        RetryPolicy(initial_s=10, max_s=5)


def test_a_notification_renders_missing_values_and_resolutions() -> None:
    note = Notification(
        "alert.resolved",
        {"name": "r", "deployment": "d", "severity": "info", "values": {"a": None, "b": 2.5}},
    )
    assert (note.state, note.title) == ("resolved", "[INFO] r resolved on d")
    assert note.values_text == "a = missing, b = 2.5"
    assert slack_message(Notification("alert.fired", {"values": {}}))["text"].startswith(
        "[WARNING] None firing on None"
    )


SCRIPT = """\
from datetime import UTC, datetime
import mlcycle as mc
from mlcycle.monitor import MonitorResult

mc.current_workspace().alerts.evaluate(
    MonitorResult("bike", datetime(2030, 1, 2, tzinfo=UTC), {"drift_share": 0.5})
)
"""  # exits without closing anything


def test_a_script_that_exits_right_away_still_sends_its_notifications(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "mlcycle.toml").write_text(
        '[alerts.rules.drift-high]\nwhen = "drift_share > 0.3"\nnotify = ["a", "b"]\n'
        '[alerts.notifiers.a]\nkind = "file"\npath = "a.jsonl"\n'
        '[alerts.notifiers.b]\nkind = "file"\npath = "b.jsonl"\n'
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=project, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("a", "b"):
        [line] = (project / f"{name}.jsonl").read_text().splitlines()
        assert json.loads(line)["event"] == "alert.fired"


def test_a_slow_notifier_does_not_delay_the_others(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        actor="tester",
        clock=ClockSettings(mode="simulated"),
        alerts={
            "rules": {"drift-high": {"when": "drift_share > 0.3", "notify": ["hook", "log"]}},
            "notifiers": {
                "hook": {"kind": "webhook", "url": "", "timeout_s": 30},
                "log": {"kind": "file", "path": "log.jsonl"},
            },
        },
    )
    with webhook_receiver() as hook:
        hook.hold = __import__("threading").Event()
        notifiers = settings.alerts.notifiers | {
            "hook": settings.alerts.notifiers["hook"].model_copy(update={"url": hook.url})
        }
        settings = settings.model_copy(
            update={"alerts": settings.alerts.model_copy(update={"notifiers": notifiers})}
        )
        SimulatedClock(settings.clock_state_file).set(T0)
        with Workspace.open(settings) as ws:
            ws.alerts.evaluate(drifting())
            wait_for((tmp_path / "log.jsonl").exists)  # sent while the hook hangs
            assert not hook.hold.is_set()
            hook.hold.set()
            wait_for(lambda: {d.status for d in ws.alerts.deliveries()} == {"delivered"})
    assert len(hook.received) == 1


@pytest.mark.parametrize(
    ("security", "error"), [("starttls", "STARTTLS extension not supported"), ("ssl", "SSL")]
)
def test_tls_against_a_plain_smtp_server_is_recorded_as_a_failure(
    tmp_path: Path, security: str, error: str
) -> None:
    with smtp_server() as box:
        notifier = {
            "kind": "email",
            "host": "127.0.0.1",
            "port": box.port,
            "security": security,
            "sender": "ml@example.com",
            "to": ["oncall@example.com"],
            "timeout_s": 2,
        }
        with open_workspace(tmp_path, notifier) as (ws, _):
            ws.alerts.evaluate(drifting())
            wait_for(lambda: attempted(ws.alerts))
            [pending] = ws.alerts.deliveries()
    assert pending.status == "pending"
    assert error in (pending.last_error or "")
    assert box.messages == []
