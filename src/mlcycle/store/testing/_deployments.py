"""The contract every ``DeploymentCatalog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``catalog`` fixture that
returns a fresh, empty store implementing ``DeploymentCatalog`` and ``EventLog``.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.store._records import Deployment, Variant

__all__ = ["DeploymentCatalogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _deployment(name: str = "bike-demand", **changes: Any) -> Deployment:  # Any: field values
    base = Deployment(
        name=name,
        variants=(
            Variant(name="primary", model="bike-demand@production", weight=90),
            Variant(name="canary", model="bike-demand/4", weight=10),
        ),
        policy="canary",
        sticky_key="user_id",
        key_columns=("station", "hour"),
        actor="ana",
    )
    return replace(base, **changes)


class DeploymentCatalogContract:
    """Tests every deployment catalog must pass; subclasses provide ``catalog``."""

    def test_put_get_list_and_the_applied_event(self, catalog: Any) -> None:
        stored = catalog.put_deployment(_deployment(), time=T0)
        catalog.put_deployment(
            _deployment(
                "alpha",
                policy="single",
                variants=(Variant(name="primary", model="alpha@production"),),
            ),
            time=T0,
        )
        assert catalog.get_deployment("bike-demand") == stored
        assert (stored.revision, stored.created_at, stored.updated_at) == (1, T0, T0)
        assert stored.variants[1] == Variant(name="canary", model="bike-demand/4", weight=10)
        assert (stored.sticky_key, stored.key_columns, stored.actor) == (
            "user_id",
            ("station", "hour"),
            "ana",
        )
        assert [d.name for d in catalog.list_deployments()] == ["alpha", "bike-demand"]
        [applied, _] = catalog.read_events(types=["deployment.applied"])
        assert (applied.subject, applied.actor) == ("deployments:/bike-demand", "ana")
        assert applied.payload["name"] == "bike-demand"
        assert applied.payload["revision"] == 1
        assert applied.payload["variants"][1] == {
            "name": "canary",
            "model": "bike-demand/4",
            "weight": 10.0,
            "shadow": False,
        }

    def test_a_change_gets_the_next_revision_and_keeps_its_creation(self, catalog: Any) -> None:
        catalog.put_deployment(_deployment(), time=T0)
        later = T0 + timedelta(hours=1)
        changed = catalog.put_deployment(
            _deployment(
                policy="shadow",
                variants=(
                    Variant(name="primary", model="bike-demand@production"),
                    Variant(name="shadow", model="bike-demand/5", shadow=True),
                ),
                actor="bo",
            ),
            time=later,
        )
        assert (changed.revision, changed.created_at, changed.updated_at) == (2, T0, later)
        assert (changed.policy, changed.actor) == ("shadow", "bo")
        assert catalog.get_deployment("bike-demand") == changed
        events = catalog.read_events(types=["deployment.applied"])
        assert [e.payload["revision"] for e in events] == [1, 2]
        assert events[1].payload["variants"][1]["shadow"] is True

    def test_putting_the_same_deployment_again_changes_nothing(self, catalog: Any) -> None:
        first = catalog.put_deployment(_deployment(), time=T0)
        again = catalog.put_deployment(_deployment(actor="bo"), time=T0 + timedelta(days=1))
        assert again == first
        assert len(catalog.read_events(types=["deployment.applied"])) == 1

    def test_remove_records_an_event_and_a_new_one_starts_over(self, catalog: Any) -> None:
        catalog.put_deployment(_deployment(), time=T0)
        catalog.put_deployment(_deployment(sticky_key=None), time=T0)
        removed = catalog.remove_deployment("bike-demand", actor="bo", time=T0)
        assert (removed.name, removed.revision) == ("bike-demand", 2)
        assert catalog.list_deployments() == []
        [event] = catalog.read_events(types=["deployment.removed"])
        assert (event.subject, event.actor) == ("deployments:/bike-demand", "bo")
        assert event.payload == {"name": "bike-demand", "revision": 2}
        assert catalog.put_deployment(_deployment(), time=T0).revision == 1

    def test_an_unknown_deployment_is_not_found_naming_the_known_ones(self, catalog: Any) -> None:
        with pytest.raises(NotFound, match=r"no deployment 'nope' \(known: none yet"):
            catalog.get_deployment("nope")
        catalog.put_deployment(_deployment(), time=T0)
        with pytest.raises(NotFound, match=r"no deployment 'nope' \(known: bike-demand\)"):
            catalog.get_deployment("nope")
        with pytest.raises(NotFound, match="no deployment 'nope'"):
            catalog.remove_deployment("nope", actor="ana", time=T0)
        assert catalog.read_events(types=["deployment.removed"]) == []

    @pytest.mark.parametrize(
        ("changes", "problem"),
        [
            ({"name": "a b"}, "deployment name"),
            ({"name": "x" * 129}, "deployment name"),
            ({"policy": "blue-green"}, "unknown policy 'blue-green'"),
            ({"variants": ()}, "has no variants"),
            (
                {"variants": (Variant("primary", "m@a"), Variant("primary", "m/2"))},
                "names a variant twice",
            ),
            ({"variants": (Variant("a b", "m@a"),)}, "variant of deployment"),
            ({"variants": (Variant("primary", " "),)}, "needs a model reference"),
            ({"variants": (Variant("primary", "m@a", weight=-1),)}, "negative weight"),
            ({"variants": (Variant("primary", "m@a", weight=float("nan")),)}, "finite"),
            ({"key_columns": ("station", "station")}, "key column twice"),
            ({"sticky_key": ""}, "column name"),
        ],
    )
    def test_bad_deployments_are_refused_and_store_nothing(
        self, catalog: Any, changes: dict[str, Any], problem: str
    ) -> None:
        with pytest.raises(ValidationFailed, match=problem):
            catalog.put_deployment(_deployment(**changes), time=T0)
        assert catalog.list_deployments() == []
        assert catalog.read_events(types=["deployment.applied"]) == []

    def test_concurrent_changes_get_consecutive_revisions(self, catalog: Any) -> None:
        catalog.put_deployment(_deployment(), time=T0)
        barrier = threading.Barrier(4)

        def apply(index: int) -> None:
            barrier.wait()
            canary = Variant(name="canary", model=f"bike-demand/{index + 5}", weight=10)
            variants = (_deployment().variants[0], canary)
            catalog.put_deployment(_deployment(variants=variants), time=T0)

        threads = [threading.Thread(target=apply, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        events = catalog.read_events(types=["deployment.applied"])
        assert [e.payload["revision"] for e in events] == [1, 2, 3, 4, 5]
        assert catalog.get_deployment("bike-demand").revision == 5

    @settings(
        deadline=None,  # a database round trip per example; PostgreSQL under load is slow
        max_examples=10,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,  # each subclass runs it; the catalog is fresh
        ],
    )
    @given(weights=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6))
    def test_revisions_only_increase_and_round_trip(self, catalog: Any, weights: list[int]) -> None:
        name = f"hyp-{len(catalog.list_deployments())}"
        revisions = []
        for weight in weights:
            variants = (Variant(name="primary", model="m@production", weight=weight),)
            stored = catalog.put_deployment(
                _deployment(name, policy="single", variants=variants), time=T0
            )
            assert stored == catalog.get_deployment(name)
            revisions.append(stored.revision)
        assert revisions == sorted(revisions)
        assert revisions[-1] == 1 + sum(a != b for a, b in itertools.pairwise(weights))
