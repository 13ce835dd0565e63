"""The contract every ``MonitorResultLog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``catalog`` fixture that
returns a fresh, empty store implementing ``MonitorResultLog``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import ValidationFailed

__all__ = ["MonitorResultLogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _store(catalog: Any, day: int, values: Mapping[str, float | None], name: str = "bike") -> bool:
    return bool(
        catalog.record_monitor_window(
            name,
            window_start=T0 + day * DAY,
            window_end=T0 + (day + 1) * DAY,
            values=values,
            recorded_at=T0 + (day + 1) * DAY,
        )
    )


class MonitorResultLogContract:
    """Tests every monitor result log must pass; subclasses provide ``catalog``."""

    def test_a_window_is_stored_once_and_read_back_in_order(self, catalog: Any) -> None:
        assert _store(catalog, 1, {"rows": 10.0, "rmse": 3.5, "f1": None})
        assert _store(catalog, 0, {"rows": 5.0, "drift.temp": math.nan})
        assert not _store(catalog, 1, {"rows": 99.0})  # stored already: nothing changes
        points = catalog.read_monitor_results("bike")
        assert [(p.window_end, p.metric, p.value) for p in points] == [
            (T0 + DAY, "drift.temp", None),
            (T0 + DAY, "rows", 5.0),
            (T0 + 2 * DAY, "f1", None),
            (T0 + 2 * DAY, "rmse", 3.5),
            (T0 + 2 * DAY, "rows", 10.0),
        ]
        assert catalog.monitor_windows("bike") == [(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY)]
        assert catalog.monitored_deployments() == ["bike"]

    def test_reads_filter_by_metric_and_window_end(self, catalog: Any) -> None:
        for day in range(4):
            _store(catalog, day, {"rows": float(day), "rmse": 1.0 + day})
        _store(catalog, 0, {"rows": 7.0}, name="taxi")
        found = catalog.read_monitor_results(
            "bike", metrics=["rows"], since=T0 + DAY, until=T0 + 3 * DAY
        )
        assert [p.value for p in found] == [1.0, 2.0]
        assert catalog.monitor_windows("bike", since=T0 + 3 * DAY) == [(T0 + 3 * DAY, T0 + 4 * DAY)]
        assert catalog.monitored_deployments() == ["bike", "taxi"]
        assert catalog.read_monitor_results("nobody") == []

    def test_infinities_are_kept(self, catalog: Any) -> None:
        _store(catalog, 0, {"psi": math.inf, "low": -math.inf})
        assert {p.metric: p.value for p in catalog.read_monitor_results("bike")} == {
            "low": -math.inf,
            "psi": math.inf,
        }

    @pytest.mark.parametrize(
        ("values", "problem"),
        [
            ({}, "no metrics"),
            ({"": 1.0}, "metric name"),
            ({"x" * 513: 1.0}, "metric name"),
            ({"nul\x00": 1.0}, "metric name"),
            ({"rows": "ten"}, "numbers or None"),
            ({"rows": True}, "numbers or None"),
        ],
    )
    def test_bad_windows_are_refused_and_nothing_is_stored(
        self, catalog: Any, values: dict[str, Any], problem: str
    ) -> None:
        with pytest.raises(ValidationFailed, match=problem):
            _store(catalog, 0, values)
        with pytest.raises(ValidationFailed, match="deployment"):
            _store(catalog, 0, {"rows": 1.0}, name="no spaces")
        with pytest.raises(ValidationFailed, match="ends before it starts"):
            catalog.record_monitor_window(
                "bike", window_start=T0, window_end=T0, values={"rows": 1.0}, recorded_at=T0
            )
        assert catalog.read_monitor_results("bike") == []

    def test_concurrent_stores_of_one_window_store_it_once(self, catalog: Any) -> None:
        outcomes: list[bool] = []
        values = {f"drift.f{n}": float(n) for n in range(200)}

        def store() -> None:
            outcomes.append(_store(catalog, 0, values))

        threads = [threading.Thread(target=store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == [False, False, False, True]
        assert len(catalog.read_monitor_results("bike")) == 200

    @settings(
        max_examples=20,
        deadline=None,
        # one fixture for every example, each in a new window; the sqlite and postgres
        # subclasses run the same method
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        st.dictionaries(
            st.text(
                st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
            ).filter(str.isprintable),
            st.one_of(st.none(), st.floats(allow_nan=False)),
            min_size=1,
            max_size=20,
        )
    )
    def test_values_round_trip(self, catalog: Any, values: dict[str, float | None]) -> None:
        day = len(catalog.monitor_windows("bike"))
        _store(catalog, day, values)
        end = T0 + (day + 1) * DAY
        found = catalog.read_monitor_results("bike", since=end - DAY, until=end)
        assert {p.metric: p.value for p in found} == values
