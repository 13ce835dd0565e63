"""The contract every ``AlertLog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``catalog`` fixture that
returns a fresh, empty store implementing ``AlertLog`` and ``EventLog``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import Conflict, NotFound, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.store._alert_records import Alert, AlertChange, AlertRuleState, WindowValues

__all__ = ["AlertLogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _window(day: int, share: float | None = 0.4) -> WindowValues:
    return WindowValues(window_end=T0 + day * DAY, values={"drift_share": share})


def _alert(**changes: Any) -> Alert:  # Any: field values
    base = Alert(
        id=new_id(),
        rule="drift-high",
        deployment="bike",
        severity="warning",
        state="firing",
        expression="drift_share > 0.3 for 2 windows",
        fired_at=T0 + 2 * DAY,
        window_end=T0 + 2 * DAY,
        windows=(_window(1), _window(2)),
        why="drift_share > 0.3 held for 2 windows",
        actor="monitor",
    )
    return replace(base, **changes)


def _change(version: int = 0, **changes: Any) -> AlertChange:  # Any: field values
    base = AlertChange(
        rule="drift-high",
        deployment="bike",
        expect_version=version,
        streak=1,
        window_end=T0 + DAY,
        recent=(_window(1),),
        time=T0 + DAY,
        actor="monitor",
    )
    return replace(base, **changes)


def _fire(catalog: Any, version: int = 0, **changes: Any) -> tuple[Alert, AlertRuleState]:
    alert = _alert(**changes)
    state = catalog.apply_alert_change(
        _change(
            version,
            rule=alert.rule,
            deployment=alert.deployment,
            streak=2,
            window_end=alert.window_end,
            recent=alert.windows,
            time=alert.fired_at,
            action="fire",
            alert=alert,
            payload={"name": alert.rule, "rule": alert.expression, "severity": alert.severity},
            notify=("slack", "oncall"),
        )
    )
    return alert, state


class AlertLogContract:
    """Tests every alert log must pass; subclasses provide ``catalog``."""

    def test_a_rule_state_starts_absent_and_counts_its_streak(self, catalog: Any) -> None:
        assert catalog.get_alert_rule_state("drift-high", "bike") is None
        first = catalog.apply_alert_change(_change())
        assert (first.streak, first.last_window_end, first.version) == (1, T0 + DAY, 1)
        assert first.recent == (_window(1),)
        assert first.alert is None
        assert catalog.get_alert_rule_state("drift-high", "bike") == first
        assert catalog.get_alert_rule_state("drift-high", "other") is None
        assert catalog.read_events() == []
        assert catalog.list_alerts() == []

    def test_a_firing_commits_the_alert_its_event_and_its_deliveries(self, catalog: Any) -> None:
        alert, state = _fire(catalog)
        assert state.alert == alert
        assert (state.streak, state.version) == (2, 1)
        assert catalog.get_alert(alert.id) == alert
        [event] = catalog.read_events()
        assert (event.type, event.subject, event.actor) == ("alert.fired", "drift-high", "monitor")
        assert event.payload["rule"] == "drift_share > 0.3 for 2 windows"
        deliveries = catalog.list_deliveries(alert_id=alert.id)
        assert [d.notifier for d in deliveries] == ["slack", "oncall"]
        assert {(d.event, d.status, d.attempts) for d in deliveries} == {
            ("alert.fired", "pending", 0)
        }
        assert deliveries[0].payload["position"] == event.position
        assert deliveries[0].next_attempt_at == alert.fired_at

    def test_a_resolution_updates_the_alert_and_records_its_event(self, catalog: Any) -> None:
        alert, state = _fire(catalog)
        resolved = replace(
            alert, state="resolved", resolved_at=T0 + 3 * DAY, resolved_window_end=T0 + 3 * DAY
        )
        after = catalog.apply_alert_change(
            _change(
                state.version,
                streak=0,
                recent=(),
                window_end=T0 + 3 * DAY,
                time=T0 + 3 * DAY,
                action="resolve",
                alert=resolved,
                payload={"name": "drift-high"},
            )
        )
        assert after.alert == resolved
        assert catalog.get_alert(alert.id).state == "resolved"
        assert [e.type for e in catalog.read_events()] == ["alert.fired", "alert.resolved"]
        assert len(catalog.list_deliveries(alert_id=alert.id)) == 2  # none for the resolution
        quiet = catalog.apply_alert_change(
            _change(after.version, streak=0, recent=(), window_end=T0 + 4 * DAY)
        )
        assert quiet.alert == resolved  # a change without an action keeps the latest alert

    def test_a_change_from_a_stale_version_is_a_conflict_and_changes_nothing(
        self, catalog: Any
    ) -> None:
        state = catalog.apply_alert_change(_change())
        with pytest.raises(Conflict, match="evaluated by another process"):
            catalog.apply_alert_change(_change(0, streak=5))
        with pytest.raises(Conflict):
            _fire(catalog, version=state.version + 1)
        assert catalog.get_alert_rule_state("drift-high", "bike") == state
        assert catalog.list_alerts() == []
        assert catalog.read_events() == []
        assert catalog.list_deliveries() == []

    def test_concurrent_firings_from_one_version_fire_once(self, catalog: Any) -> None:
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def fire() -> None:
            barrier.wait()
            try:
                _fire(catalog)
                outcomes.append("fired")
            except Conflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=fire) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["conflict"] * 3 + ["fired"]
        assert len(catalog.list_alerts()) == 1
        assert len(catalog.read_events(types=["alert.fired"])) == 1

    def test_alerts_are_listed_newest_first_and_filtered(self, catalog: Any) -> None:
        old, _ = _fire(catalog, fired_at=T0)
        new, _ = _fire(catalog, deployment="taxi", rule="slow", fired_at=T0 + DAY)
        assert [a.id for a in catalog.list_alerts()] == [new.id, old.id]
        assert [a.id for a in catalog.list_alerts(deployment="bike")] == [old.id]
        assert [a.id for a in catalog.list_alerts(rule="slow", state="firing")] == [new.id]
        assert catalog.list_alerts(state="resolved") == []
        assert [a.id for a in catalog.list_alerts(limit=1)] == [new.id]
        with pytest.raises(ValidationFailed, match="unknown alert state 'open'"):
            catalog.list_alerts(state="open")
        with pytest.raises(ValidationFailed, match="limit"):
            catalog.list_alerts(limit=0)
        with pytest.raises(NotFound, match="no alert 'nope'"):
            catalog.get_alert("nope")

    def test_deliveries_are_claimed_once_and_retried_until_done(self, catalog: Any) -> None:
        alert, _ = _fire(catalog)
        now = alert.fired_at
        assert catalog.claim_deliveries(now=now - DAY, holder="a", lease_s=30) == []
        assert catalog.claim_deliveries(now=now, holder="a", lease_s=30, notifiers=[]) == []
        assert catalog.claim_deliveries(now=now, holder="a", lease_s=30, notifiers=["x"]) == []
        claimed = catalog.claim_deliveries(now=now, holder="a", lease_s=30, limit=1)
        assert [d.notifier for d in claimed] == ["slack"]
        assert claimed[0].claimed_until == now + timedelta(seconds=30)
        [other] = catalog.claim_deliveries(now=now, holder="b", lease_s=300)
        assert other.notifier == "oncall"  # slack is leased to a
        assert catalog.claim_deliveries(now=now, holder="c", lease_s=30) == []
        retry = now + timedelta(minutes=1)
        again = catalog.finish_delivery(claimed[0].id, now=now, error="timed out", retry_at=retry)
        assert (again.status, again.attempts, again.last_error) == ("pending", 1, "timed out")
        assert (again.next_attempt_at, again.claimed_until) == (retry, None)
        assert catalog.claim_deliveries(now=now, holder="a", lease_s=30) == []
        [due] = catalog.claim_deliveries(now=retry, holder="a", lease_s=30)
        done = catalog.finish_delivery(due.id, now=retry)
        assert (done.status, done.attempts, done.delivered_at) == ("delivered", 2, retry)
        assert done.last_error is None
        with pytest.raises(NotFound, match="no pending alert delivery"):
            catalog.finish_delivery(due.id, now=retry)
        later = now + timedelta(seconds=301)  # b's lease ran out: another process may take it
        [expired] = catalog.claim_deliveries(now=later, holder="c", lease_s=30)
        assert expired.id == other.id
        failed = catalog.finish_delivery(other.id, now=later, error="refused", actor="monitor")
        assert (failed.status, failed.next_attempt_at) == ("failed", None)
        [event] = catalog.read_events(types=["alert.delivery_failed"])
        assert event.subject == "drift-high"
        assert event.payload == {
            "alert_id": alert.id,
            "notifier": "oncall",
            "event": "alert.fired",
            "attempts": 1,
            "error": "refused",
        }
        assert [d.status for d in catalog.list_deliveries(status="failed")] == ["failed"]
        with pytest.raises(ValidationFailed, match="unknown delivery status"):
            catalog.list_deliveries(status="lost")

    def test_deliveries_queued_after_an_alert_are_claimed_like_its_own(self, catalog: Any) -> None:
        alert, _ = _fire(catalog)
        later = alert.fired_at + DAY
        payload = {"name": "drift-high", "alert_id": alert.id, "why": "kept as challenger"}
        queued = catalog.queue_deliveries(
            alert.id, event="training.rejected", payload=payload, notifiers=["slack"], time=later
        )
        assert [(d.notifier, d.event, d.status) for d in queued] == [
            ("slack", "training.rejected", "pending")
        ]
        assert queued[0].payload == payload
        claimed = catalog.claim_deliveries(now=later, holder="a", lease_s=30)
        assert queued[0].id in {d.id for d in claimed}
        with pytest.raises(NotFound, match="no alert 'nope'"):
            catalog.queue_deliveries(
                "nope", event="training.failed", payload={}, notifiers=["slack"], time=later
            )
        assert len(catalog.list_deliveries()) == len(claimed)

    @pytest.mark.parametrize(
        ("changes", "problem"),
        [
            ({"rule": "a b"}, "alert rule name"),
            ({"deployment": ""}, "deployment name"),
            ({"streak": -1}, "must not be negative"),
            ({"action": "fire"}, "needs the alert it changes"),
            ({"alert": _alert()}, "takes no alert"),
            ({"action": "fire", "alert": _alert(rule="other")}, "belongs to rule 'other'"),
            ({"action": "fire", "alert": _alert(state="open")}, "alert state 'open'"),
        ],
    )
    def test_bad_changes_are_refused_and_store_nothing(
        self, catalog: Any, changes: dict[str, Any], problem: str
    ) -> None:
        with pytest.raises(ValidationFailed, match=problem):
            catalog.apply_alert_change(_change(**changes))
        assert catalog.get_alert_rule_state("drift-high", "bike") is None
        assert catalog.read_events() == []

    def test_firing_an_alert_id_twice_is_refused(self, catalog: Any) -> None:
        alert, state = _fire(catalog)
        with pytest.raises(ValidationFailed, match="a firing needs a new id"):
            catalog.apply_alert_change(
                _change(state.version, action="fire", alert=alert, window_end=T0 + 5 * DAY)
            )
        assert catalog.get_alert_rule_state("drift-high", "bike") == state

    def test_resolving_an_unknown_alert_is_not_found_and_changes_nothing(
        self, catalog: Any
    ) -> None:
        state = catalog.apply_alert_change(_change())
        with pytest.raises(NotFound, match="no alert"):
            catalog.apply_alert_change(
                _change(state.version, action="resolve", alert=_alert(state="resolved"))
            )
        assert catalog.get_alert_rule_state("drift-high", "bike") == state

    @settings(
        deadline=None,  # a database round trip per example; PostgreSQL under load is slow
        max_examples=15,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,  # each subclass runs it; the catalog is fresh
        ],
    )
    @given(
        values=st.lists(
            st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
            min_size=1,
            max_size=4,
        )
    )
    def test_window_values_round_trip(self, catalog: Any, values: list[float | None]) -> None:
        deployment = f"hyp-{new_id().lower()}"
        recent = tuple(
            WindowValues(window_end=T0 + i * DAY, values={"m": v, "n": 1.0})
            for i, v in enumerate(values)
        )
        stored = catalog.apply_alert_change(
            _change(deployment=deployment, streak=len(values), recent=recent)
        )
        assert stored.recent == recent
        assert catalog.get_alert_rule_state("drift-high", deployment) == stored
