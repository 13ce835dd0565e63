"""The contract every ``ModelCatalog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``catalog`` fixture that
returns a fresh, empty store implementing ``ModelCatalog``, ``EventLog`` and
``LineageGraph``.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import AliasConflict, NotFound, ValidationFailed
from mlcycle.ids import Digest, RunId
from mlcycle.store._records import ModelVersion

__all__ = ["ModelCatalogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SIGNATURE = {
    "inputs": [{"name": "temp", "type": "float64", "nullable": False}],
    "outputs": [{"name": "prediction", "type": "float64", "nullable": False}],
}


def _record(name: str = "bike", *, digest: str = "ab") -> ModelVersion:
    return ModelVersion(
        name=name,
        version=0,
        flavor="sklearn",
        digest=Digest("sha256:" + (digest * 32)[:64]),
        signature=SIGNATURE,
        run_id=RunId("01J0000000000000000000RUN1"),
        dataset_versions=("data:/bike/1",),
        code_version="abc123-dirty",
        created_at=T0,
        actor="ana",
        size=1234,
        files={"input_example": Digest("sha256:" + "ee" * 32)},
        metrics={"rmse": 41.2, "nan": math.nan},
        tags={"algo": "gbm"},
        params={"depth": "3"},
        description="first",
    )


class ModelCatalogContract:
    """Tests every model catalog must pass; subclasses provide ``catalog``."""

    def test_ensure_creates_once_and_lists(self, catalog: Any) -> None:
        first = catalog.ensure_model("bike", actor="ana", time=T0, description="demand")
        assert catalog.ensure_model("bike", actor="bo", time=T0 + timedelta(1)) == first
        assert (first.description, first.aliases) == ("demand", {})
        catalog.ensure_model("air", actor="ana", time=T0)
        assert [m.name for m in catalog.list_models()] == ["air", "bike"]
        assert catalog.get_model("bike") == first
        created = catalog.read_events(types=["model.created"])
        assert [e.subject for e in created] == ["models:/bike", "models:/air"]

    @pytest.mark.parametrize("name", ["", "bike/3", "bike@x", "-x", "a b", "x" * 129])
    def test_bad_names_are_refused(self, catalog: Any, name: str) -> None:
        with pytest.raises(ValidationFailed, match="model name"):
            catalog.ensure_model(name, actor="ana", time=T0)

    def test_unknown_model_and_version_are_not_found(self, catalog: Any) -> None:
        with pytest.raises(NotFound, match="no model 'bike'"):
            catalog.get_model("bike")
        with pytest.raises(NotFound, match="no model 'bike'"):
            catalog.add_model_version(_record())
        with pytest.raises(NotFound, match="no model 'bike'"):
            catalog.alias_history("bike")
        catalog.ensure_model("bike", actor="ana", time=T0)
        assert catalog.list_model_versions("bike") == []
        with pytest.raises(NotFound, match=r"no version 1 \(it has no versions yet\)"):
            catalog.get_model_version("bike", 1)
        catalog.add_model_version(_record())
        with pytest.raises(NotFound, match=r"no version 7 \(latest is 1\)"):
            catalog.get_model_version("bike", 7)
        with pytest.raises(NotFound, match=r"no version 7 \(latest is 1\)"):
            catalog.move_alias("bike", "production", 7, kind="promote", actor="ana", time=T0)

    def test_versions_round_trip_with_event_and_lineage(self, catalog: Any) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        one = catalog.add_model_version(
            _record(), inputs=[("run:01J0000000000000000000RUN1", "produced")]
        )
        two = catalog.add_model_version(replace(_record(digest="cd"), evaluation={"passed": True}))
        assert (one.version, two.version) == (1, 2)
        assert one.ref == "models:/bike/1"
        expected = replace(_record(), version=1, metrics=one.metrics)
        assert one == expected
        assert math.isnan(one.metrics["nan"])
        assert one.metrics["rmse"] == 41.2
        assert two.evaluation == {"passed": True}
        assert catalog.get_model_version("bike", 2) == two
        assert [v.version for v in catalog.list_model_versions("bike")] == [1, 2]
        made = catalog.read_events(types=["model.version_created"])
        assert [(e.subject, e.payload["digest"]) for e in made] == [
            ("models:/bike/1", one.digest),
            ("models:/bike/2", two.digest),
        ]
        edges = catalog.edges_into("models:/bike/1")
        assert [(e.source, e.kind) for e in edges] == [
            ("run:01J0000000000000000000RUN1", "produced")
        ]

    def test_update_merges_tags_and_sets_fields(self, catalog: Any) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        catalog.add_model_version(_record())
        updated = catalog.update_model_version(
            "bike", 1, actor="bo", time=T0, tags={"owner": "bo"}, limitations="no winter data"
        )
        assert updated.tags == {"algo": "gbm", "owner": "bo"}
        assert (updated.limitations, updated.description) == ("no winter data", "first")
        evaluated = catalog.update_model_version(
            "bike", 1, actor="bo", time=T0, evaluation={"passed": False, "gates": []}
        )
        assert evaluated.evaluation == {"passed": False, "gates": []}
        assert evaluated.tags == updated.tags
        types = [e.type for e in catalog.read_events() if e.subject == "models:/bike/1"]
        assert types[-2:] == ["model.version_updated", "model.evaluated"]
        with pytest.raises(NotFound, match="no version 9"):
            catalog.update_model_version("bike", 9, actor="bo", time=T0, description="x")

    def test_alias_moves_keep_history_and_events(self, catalog: Any) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        for digest in ("ab", "cd", "ef"):
            catalog.add_model_version(_record(digest=digest))
        first = catalog.move_alias("bike", "production", 1, kind="promote", actor="ana", time=T0)
        assert (first.from_version, first.to_version, first.kind) == (None, 1, "promote")
        second = catalog.move_alias(
            "bike",
            "production",
            2,
            kind="promote",
            actor="bo",
            time=T0 + timedelta(seconds=1),
            reason="better",
            forced=True,
            gates={"passed": False},
        )
        catalog.move_alias("bike", "staging", 3, kind="promote", actor="ana", time=T0)
        assert catalog.get_model("bike").aliases == {"production": 2, "staging": 3}
        assert (second.from_version, second.reason, second.forced) == (1, "better", True)
        assert second.gates == {"passed": False}
        assert second.position > first.position
        assert catalog.alias_history("bike", "production") == [first, second]
        assert [m.alias for m in catalog.alias_history("bike")] == [
            "production",
            "production",
            "staging",
        ]
        removed = catalog.move_alias("bike", "staging", None, kind="remove", actor="ana", time=T0)
        assert (removed.from_version, removed.to_version) == (3, None)
        assert catalog.get_model("bike").aliases == {"production": 2}
        moved = catalog.read_events(types=["model.alias_moved"])
        assert [(e.subject, e.payload["to_version"]) for e in moved] == [
            ("models:/bike@production", 1),
            ("models:/bike@production", 2),
            ("models:/bike@staging", 3),
            ("models:/bike@staging", None),
        ]
        assert [e.position for e in moved] == [m.position for m in catalog.alias_history("bike")]

    def test_expect_from_refuses_a_stale_move(self, catalog: Any) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        catalog.add_model_version(_record())
        catalog.add_model_version(_record(digest="cd"))
        with pytest.raises(AliasConflict, match="names no version, not version 1"):
            catalog.move_alias(
                "bike", "production", 2, kind="promote", actor="a", time=T0, expect_from=1
            )
        catalog.move_alias(
            "bike", "production", 1, kind="promote", actor="a", time=T0, expect_from=None
        )
        with pytest.raises(AliasConflict, match="names version 1, not no version"):
            catalog.move_alias(
                "bike", "production", 2, kind="promote", actor="a", time=T0, expect_from=None
            )
        catalog.move_alias(
            "bike", "production", 2, kind="rollback", actor="a", time=T0, expect_from=1
        )
        assert catalog.get_model("bike").aliases == {"production": 2}
        assert len(catalog.alias_history("bike")) == 2

    @pytest.mark.parametrize("alias", ["latest", "", "1x", "a b", "x" * 65])
    def test_bad_and_reserved_aliases_are_refused(self, catalog: Any, alias: str) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        catalog.add_model_version(_record())
        with pytest.raises(ValidationFailed, match="alias"):
            catalog.move_alias("bike", alias, 1, kind="promote", actor="a", time=T0)

    def test_bad_kind_is_refused(self, catalog: Any) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        with pytest.raises(ValidationFailed, match="kind"):
            catalog.move_alias("bike", "production", None, kind="teleport", actor="a", time=T0)

    def test_concurrent_moves_are_all_kept_in_order(self, catalog: Any) -> None:
        catalog.ensure_model("bike", actor="ana", time=T0)
        for digest in ("ab", "cd", "ef"):
            catalog.add_model_version(_record(digest=digest))
        errors: list[BaseException] = []

        def promote(version: int) -> None:
            try:
                for _ in range(4):
                    catalog.move_alias(
                        "bike", "production", version, kind="promote", actor="t", time=T0
                    )
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=promote, args=(v,)) for v in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        history = catalog.alias_history("bike", "production")
        assert len(history) == 12
        assert history[0].from_version is None
        for before, after in itertools.pairwise(history):
            assert after.from_version == before.to_version
        assert catalog.get_model("bike").aliases["production"] == history[-1].to_version

    @settings(
        deadline=None,  # a database round trip per example; PostgreSQL under load is slow
        max_examples=10,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,  # each subclass runs it; the catalog is fresh
        ],
    )
    @given(count=st.integers(min_value=1, max_value=5))
    def test_version_numbers_only_increase(self, catalog: Any, count: int) -> None:
        catalog.ensure_model("hyp", actor="ana", time=T0)
        start = len(catalog.list_model_versions("hyp"))
        stored = [catalog.add_model_version(_record("hyp")) for _ in range(count)]
        assert [v.version for v in stored] == list(range(start + 1, start + 1 + count))
