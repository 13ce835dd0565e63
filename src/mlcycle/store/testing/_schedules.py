"""The contract every ``ScheduleCatalog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``catalog`` fixture that
returns a fresh, empty store implementing ``ScheduleCatalog`` and ``EventLog``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import AlreadyExists, NotFound, ValidationFailed
from mlcycle.store._records import Schedule, TriggerFiring

__all__ = ["ScheduleCatalogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _schedule(name: str = "nightly", *, kind: Any = "cron", spec: str = "0 2 * * *") -> Schedule:
    return Schedule(
        name=name,
        target="pipelines.py:training",
        kind=kind,
        spec=spec,
        params={"n_estimators": "200"},
        actor="ana",
    )


def _firing(key: str, *, schedule: str = "nightly", tick: datetime | None = None) -> TriggerFiring:
    return TriggerFiring(
        schedule=schedule,
        key=key,
        trigger="cron" if tick is not None else "dataset",
        fired_at=T0 + timedelta(hours=3),
        agent="agent-a",
        tick=tick,
        position=None if tick is not None else 7,
    )


class ScheduleCatalogContract:
    """Tests every schedule catalog must pass; subclasses provide ``catalog``."""

    def test_add_get_list_and_the_added_event(self, catalog: Any) -> None:
        stored = catalog.add_schedule(_schedule(), time=T0)
        catalog.add_schedule(_schedule("bike", kind="dataset", spec="bike"), time=T0)
        assert catalog.get_schedule("nightly") == stored
        assert (stored.created_at, stored.enabled, stored.last_fired_tick) == (T0, True, None)
        assert stored.params == {"n_estimators": "200"}
        assert [s.name for s in catalog.list_schedules()] == ["bike", "nightly"]
        [added, _] = catalog.read_events(types=["schedule.added"])
        assert (added.subject, added.position) == ("schedules:/nightly", stored.added_position)
        assert added.payload["spec"] == "0 2 * * *"

    def test_a_taken_name_is_refused_and_leaves_no_event(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule(), time=T0)
        with pytest.raises(AlreadyExists, match="already a schedule 'nightly'"):
            catalog.add_schedule(_schedule(spec="0 3 * * *"), time=T0)
        assert len(catalog.read_events(types=["schedule.added"])) == 1
        assert catalog.get_schedule("nightly").spec == "0 2 * * *"

    @pytest.mark.parametrize("name", ["", "a b", "-x", "x/y", "x" * 129])
    def test_bad_names_are_refused(self, catalog: Any, name: str) -> None:
        with pytest.raises(ValidationFailed, match="schedule name"):
            catalog.add_schedule(_schedule(name), time=T0)

    def test_bad_kind_target_spec_and_params_are_refused(self, catalog: Any) -> None:
        with pytest.raises(ValidationFailed, match="kind 'hourly'"):
            catalog.add_schedule(_schedule(kind="hourly"), time=T0)
        with pytest.raises(ValidationFailed, match="target"):
            catalog.add_schedule(replace(_schedule(), target=" "), time=T0)
        with pytest.raises(ValidationFailed, match="must have 1 to 256"):
            catalog.add_schedule(_schedule(spec=""), time=T0)
        with pytest.raises(ValidationFailed, match="parameter"):
            catalog.add_schedule(replace(_schedule(), params={"n": 3}), time=T0)  # type: ignore[dict-item]
        assert catalog.list_schedules() == []

    def test_unknown_schedule_is_not_found(self, catalog: Any) -> None:
        with pytest.raises(NotFound, match="no schedule 'nope'"):
            catalog.get_schedule("nope")
        with pytest.raises(NotFound, match="no schedule 'nope'"):
            catalog.remove_schedule("nope", actor="ana", time=T0)

    def test_remove_keeps_the_firings_as_history(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule(), time=T0)
        assert catalog.claim_firing(_firing("cron:1", tick=T0 + timedelta(hours=2)))
        removed = catalog.remove_schedule("nightly", actor="bo", time=T0 + timedelta(days=1))
        assert removed.name == "nightly"
        assert catalog.list_schedules() == []
        assert [f.key for f in catalog.list_firings("nightly")] == ["cron:1"]
        [event] = catalog.read_events(types=["schedule.removed"])
        assert (event.subject, event.actor) == ("schedules:/nightly", "bo")

    def test_a_removed_schedule_cannot_be_claimed(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule("bike", kind="dataset", spec="bike"), time=T0)
        catalog.remove_schedule("bike", actor="ana", time=T0)
        assert not catalog.claim_firing(_firing("event:7", schedule="bike"))
        assert catalog.list_firings() == []

    def test_an_event_firing_is_claimed_once(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule("bike", kind="dataset", spec="bike"), time=T0)
        assert catalog.claim_firing(_firing("event:7", schedule="bike"))
        assert not catalog.claim_firing(replace(_firing("event:7", schedule="bike"), agent="b"))
        [firing] = catalog.list_firings("bike")
        assert (firing.agent, firing.position, firing.exit_code) == ("agent-a", 7, None)
        assert catalog.get_schedule("bike").last_fired_at == firing.fired_at

    def test_cron_ticks_only_move_forward(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule(), time=T0)
        day2 = T0 + timedelta(days=1, hours=2)
        assert catalog.claim_firing(_firing("cron:day2", tick=day2))
        assert not catalog.claim_firing(_firing("cron:day2", tick=day2))
        assert not catalog.claim_firing(_firing("cron:day1", tick=day2 - timedelta(days=1)))
        assert catalog.claim_firing(_firing("cron:day3", tick=day2 + timedelta(days=1)))
        assert [f.key for f in catalog.list_firings("nightly")] == ["cron:day2", "cron:day3"]
        assert catalog.get_schedule("nightly").last_fired_tick == day2 + timedelta(days=1)

    def test_finish_records_the_launch_and_a_fired_event(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule(), time=T0)
        firing = _firing("cron:x", tick=T0 + timedelta(hours=2))
        catalog.claim_firing(firing)
        done = replace(
            firing,
            command=("python", "-m", "mlcycle"),
            pid=4242,
            exit_code=0,
            finished_at=T0 + timedelta(hours=4),
        )
        stored = catalog.finish_firing(done, payload={"schedule": "nightly", "exit_code": 0})
        assert stored == done
        assert catalog.list_firings() == [done]
        [event] = catalog.read_events(types=["schedule.fired"])
        assert (event.subject, event.actor, event.time) == (
            "schedules:/nightly",
            "agent-a",
            T0 + timedelta(hours=4),
        )
        assert event.payload == {"schedule": "nightly", "exit_code": 0}
        with pytest.raises(NotFound, match="no claimed firing 'cron:y'"):
            catalog.finish_firing(replace(done, key="cron:y"), payload={})

    def test_list_firings_limits_and_filters(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule("a", kind="alert", spec="latency"), time=T0)
        catalog.add_schedule(_schedule("b", kind="alert", spec="latency"), time=T0)
        for name in ("a", "b"):
            for position in (1, 2):
                catalog.claim_firing(_firing(f"event:{position}", schedule=name))
        assert len(catalog.list_firings()) == 4
        assert len(catalog.list_firings(limit=3)) == 3
        assert {f.schedule for f in catalog.list_firings("b")} == {"b"}

    def test_a_lease_has_one_holder_until_it_expires_or_is_released(self, catalog: Any) -> None:
        assert catalog.take_lease("default", holder="a", now=T0, ttl_s=30) is None
        assert catalog.take_lease("default", holder="b", now=T0, ttl_s=30) == "a"
        assert (
            catalog.take_lease("default", holder="a", now=T0 + timedelta(seconds=20), ttl_s=30)
            is None
        )
        later = T0 + timedelta(seconds=45)
        assert catalog.take_lease("default", holder="b", now=later, ttl_s=30) == "a"
        expired = T0 + timedelta(seconds=51)
        assert catalog.take_lease("default", holder="b", now=expired, ttl_s=30) is None
        catalog.release_lease("default", holder="a")  # not the holder: nothing changes
        assert catalog.take_lease("default", holder="a", now=expired, ttl_s=30) == "b"
        catalog.release_lease("default", holder="b")
        assert catalog.take_lease("default", holder="a", now=expired, ttl_s=30) is None
        assert catalog.take_lease("other", holder="b", now=expired, ttl_s=30) is None

    def test_concurrent_claims_of_one_key_let_exactly_one_in(self, catalog: Any) -> None:
        catalog.add_schedule(_schedule("bike", kind="dataset", spec="bike"), time=T0)
        results: list[bool] = []
        barrier = threading.Barrier(4)

        def claim(agent: str) -> None:
            barrier.wait()
            firing = replace(_firing("event:9", schedule="bike"), agent=agent)
            results.append(catalog.claim_firing(firing))

        threads = [threading.Thread(target=claim, args=(f"agent-{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == [False, False, False, True]
        assert len(catalog.list_firings("bike")) == 1

    @settings(
        deadline=None,  # a database round trip per example; PostgreSQL under load is slow
        max_examples=10,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,  # each subclass runs it; the catalog is fresh
        ],
    )
    @given(keys=st.lists(st.integers(min_value=0, max_value=5), max_size=12))
    def test_each_key_is_claimed_exactly_once(self, catalog: Any, keys: list[int]) -> None:
        name = f"hyp-{len(catalog.list_schedules())}"
        catalog.add_schedule(_schedule(name, kind="alert", spec="latency"), time=T0)
        claimed = [k for k in keys if catalog.claim_firing(_firing(f"event:{k}", schedule=name))]
        assert sorted(claimed) == sorted(set(keys))
