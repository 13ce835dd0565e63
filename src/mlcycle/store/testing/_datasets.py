"""The contract every ``DatasetCatalog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``catalog`` fixture that
returns a fresh, empty store implementing ``DatasetCatalog``, ``EventLog`` and
``LineageGraph``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.store._records import DatasetVersion

__all__ = ["DatasetCatalogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _record(name: str = "bike", *, rows: int = 10, digest: str = "ab") -> DatasetVersion:
    return DatasetVersion(
        name=name,
        version=0,
        rows=rows,
        columns=["dteday", "cnt"],
        types=["date32[day]", "int64"],
        digest=Digest("sha256:" + (digest * 32)[:64]),
        created_at=T0,
        source="file:/data/hour.csv",
        actor="ana",
        delta_version=0,
        policy=[{"column": "email", "kind": "email", "matches": 2, "examples": ["a***"]}],
    )


class DatasetCatalogContract:
    """Tests every dataset catalog must pass; subclasses provide ``catalog``."""

    def test_ensure_creates_once_and_lists(self, catalog: Any) -> None:
        first = catalog.ensure_dataset(
            "bike", actor="ana", time=T0, time_column="dteday", key=["dteday", "hr"]
        )
        again = catalog.ensure_dataset("bike", actor="bo", time=T0 + timedelta(1))
        assert again == first
        assert first.key == ("dteday", "hr")
        assert first.time_column == "dteday"
        catalog.ensure_dataset("air", actor="ana", time=T0)
        assert [d.name for d in catalog.list_datasets()] == ["air", "bike"]
        assert catalog.get_dataset("bike") == first
        created = catalog.read_events(types=["dataset.created"])
        assert [e.subject for e in created] == ["data:/bike", "data:/air"]

    @pytest.mark.parametrize("name", ["", "bike/3", "bike@latest", "-x", "a b", "x" * 129])
    def test_bad_names_are_refused(self, catalog: Any, name: str) -> None:
        with pytest.raises(ValidationFailed, match="dataset name"):
            catalog.ensure_dataset(name, actor="ana", time=T0)

    def test_unknown_dataset_and_version_are_not_found(self, catalog: Any) -> None:
        with pytest.raises(NotFound, match="no dataset 'bike'"):
            catalog.get_dataset("bike")
        with pytest.raises(NotFound, match="no dataset 'bike'"):
            catalog.list_dataset_versions("bike")
        with pytest.raises(NotFound, match="no dataset 'bike'"):
            catalog.add_dataset_version(_record())
        catalog.ensure_dataset("bike", actor="ana", time=T0)
        assert catalog.latest_dataset_version("bike") is None
        with pytest.raises(NotFound, match=r"no version 1 \(it has no versions yet\)"):
            catalog.get_dataset_version("bike", 1)
        catalog.add_dataset_version(_record())
        with pytest.raises(NotFound, match=r"no version 7 \(latest is 1\)"):
            catalog.get_dataset_version("bike", 7)

    def test_versions_are_numbered_with_event_and_lineage(self, catalog: Any) -> None:
        catalog.ensure_dataset("bike", actor="ana", time=T0)
        one = catalog.add_dataset_version(_record(), inputs=[("file:/data/hour.csv", "source")])
        two = catalog.add_dataset_version(
            replace(_record(rows=12, digest="cd"), operation="append", delta_version=1),
            validation="passed",
        )
        assert (one.version, two.version) == (1, 2)
        assert one.ref == "data:/bike/1"
        assert one.policy == _record().policy
        assert one.columns == ["dteday", "cnt"]
        assert one.types == ["date32[day]", "int64"]
        assert catalog.get_dataset_version("bike", 1) == one
        assert catalog.latest_dataset_version("bike") == two
        assert catalog.list_dataset_versions("bike") == [one, two]
        made = catalog.read_events(types=["dataset.version_created"])
        assert [(e.subject, e.payload["rows"], e.payload["validation"]) for e in made] == [
            ("data:/bike/1", 10, None),
            ("data:/bike/2", 12, "passed"),
        ]
        edges = catalog.edges_into("data:/bike/1")
        assert [(e.source, e.kind) for e in edges] == [("file:/data/hour.csv", "source")]

    def test_bad_records_are_refused(self, catalog: Any) -> None:
        catalog.ensure_dataset("bike", actor="ana", time=T0)
        for bad in (
            replace(_record(), operation="merge"),
            replace(_record(), rows=-1),
            replace(_record(), types=["int64"]),
            replace(_record(), actor="a" * 257),
            replace(_record(), actor="ana\x00"),
            replace(_record(), source="file:/a\x00b"),
        ):
            with pytest.raises(ValidationFailed):
                catalog.add_dataset_version(bad)
        with pytest.raises(ValidationFailed, match="lineage source"):
            catalog.add_dataset_version(_record(), inputs=[(" x", "source")])
        with pytest.raises(ValidationFailed, match="'passed', 'skipped' or None"):
            catalog.add_dataset_version(_record(), validation="maybe")
        assert catalog.latest_dataset_version("bike") is None

    def test_text_every_backend_keeps_or_refuses_alike(self, catalog: Any) -> None:
        long = "x" * 100_000
        made = catalog.ensure_dataset(
            "bike", actor="a" * 256, time=T0, time_column="t" * 256, description=long
        )
        assert (made.actor, made.time_column, made.description) == ("a" * 256, "t" * 256, long)
        stored = catalog.add_dataset_version(replace(_record(), source=f"file:/{long}"))
        assert catalog.get_dataset_version("bike", 1) == stored
        for bad in (
            {"actor": "a" * 257},
            {"actor": "a\x00"},
            {"time_column": "t" * 257},
            {"description": "a\x00b"},
        ):
            with pytest.raises(ValidationFailed):
                catalog.ensure_dataset("rides", **{"actor": "ana", "time": T0, **bad})
        assert [d.name for d in catalog.list_datasets()] == ["bike"]

    def test_names_list_in_code_point_order(self, catalog: Any) -> None:
        names = ["b", "B", "a-1", "a_1", "a.1", "A", "a1", "0a"]
        for name in names:
            catalog.ensure_dataset(name, actor="ana", time=T0)
        assert [d.name for d in catalog.list_datasets()] == sorted(names)

    def test_the_lease_is_exclusive_until_it_expires_or_is_released(self, catalog: Any) -> None:
        catalog.ensure_dataset("bike", actor="ana", time=T0)
        assert catalog.lock_dataset("bike", owner="a", now=T0, ttl_s=60) is None
        assert catalog.lock_dataset("bike", owner="a", now=T0, ttl_s=60) is None
        assert catalog.lock_dataset("bike", owner="b", now=T0, ttl_s=60) == "a"
        later = T0 + timedelta(seconds=61)
        assert catalog.lock_dataset("bike", owner="b", now=later, ttl_s=60) is None
        catalog.unlock_dataset("bike", owner="a")  # not the holder: no effect
        assert catalog.lock_dataset("bike", owner="c", now=later, ttl_s=60) == "b"
        catalog.add_dataset_version(_record(), release_lock="b")
        assert catalog.lock_dataset("bike", owner="c", now=later, ttl_s=60) is None
        catalog.unlock_dataset("bike", owner="c")
        assert catalog.lock_dataset("bike", owner="d", now=later, ttl_s=60) is None

    def test_concurrent_records_get_distinct_consecutive_numbers(self, catalog: Any) -> None:
        catalog.ensure_dataset("bike", actor="ana", time=T0)
        errors: list[BaseException] = []

        def add() -> None:
            try:
                for _ in range(5):
                    catalog.add_dataset_version(_record())
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=add) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        numbers = [v.version for v in catalog.list_dataset_versions("bike")]
        assert numbers == list(range(1, 16))

    @settings(
        deadline=None,  # a database round trip per example; PostgreSQL under load is slow
        max_examples=15,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,  # each subclass runs it; the catalog is fresh
        ],
    )
    @given(rows=st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=6))
    def test_version_numbers_only_increase(self, catalog: Any, rows: list[int]) -> None:
        catalog.ensure_dataset("hyp", actor="ana", time=T0)
        before = catalog.latest_dataset_version("hyp")
        start = 0 if before is None else before.version
        stored = [catalog.add_dataset_version(_record("hyp", rows=n)) for n in rows]
        assert [v.version for v in stored] == list(range(start + 1, start + 1 + len(rows)))
        assert [v.rows for v in stored] == rows

    def test_rewrite_replaces_records_and_location_under_the_lease(self, catalog: Any) -> None:
        catalog.ensure_dataset("bike", actor="ana", time=T0)
        one = catalog.add_dataset_version(_record(rows=10))
        two = catalog.add_dataset_version(_record(rows=12, digest="cd"))
        assert catalog.get_dataset("bike").table_path is None
        new_one = replace(one, rows=9, digest=Digest("sha256:" + "ef" * 32), delta_version=0)
        payload = {"predicate": "id = 7", "reason": "request", "rows_removed": {"1": 1}}
        with pytest.raises(ValidationFailed, match="write lease"):
            catalog.rewrite_dataset(
                "bike",
                versions=[new_one],
                table_path="datasets/_rewritten/bike/g1",
                owner="me",
                actor="ana",
                time=T0,
                payload=payload,
            )
        assert catalog.lock_dataset("bike", owner="me", now=T0, ttl_s=60) is None
        with pytest.raises(ValidationFailed, match="table path"):
            catalog.rewrite_dataset(
                "bike",
                versions=[],
                table_path="../elsewhere",
                owner="me",
                actor="ana",
                time=T0,
                payload=payload,
            )
        stored = catalog.rewrite_dataset(
            "bike",
            versions=[new_one, replace(two, delta_version=1)],
            table_path="datasets/_rewritten/bike/g1",
            owner="me",
            actor="ana",
            time=T0,
            payload=payload,
        )
        assert [(v.version, v.rows, v.delta_version) for v in stored] == [(1, 9, 0), (2, 12, 1)]
        assert stored[0].digest == new_one.digest
        assert stored[1].digest == two.digest
        assert catalog.get_dataset_version("bike", 1) == stored[0]
        assert catalog.get_dataset("bike").table_path == "datasets/_rewritten/bike/g1"
        erased = catalog.read_events(types=["dataset.erased"])
        assert [(e.subject, e.actor, e.payload) for e in erased] == [("data:/bike", "ana", payload)]
        with pytest.raises(NotFound):
            catalog.rewrite_dataset(
                "bike",
                versions=[replace(one, version=9)],
                table_path="datasets/_rewritten/bike/g2",
                owner="me",
                actor="ana",
                time=T0,
                payload=payload,
            )
        assert catalog.get_dataset("bike").table_path == "datasets/_rewritten/bike/g1"
