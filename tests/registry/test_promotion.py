"""Aliases with history: promote, guarded aliases and gates, forced moves, rollback walking back."""

from __future__ import annotations

import pytest
from sklearn.linear_model import Ridge

from mlcycle.errors import AliasConflict, GateFailed, NotFound, ValidationFailed
from mlcycle.registry import evaluation_passed, failed_gates
from mlcycle.workspace import Workspace

PASSED = {"passed": True, "results": [{"name": "rmse", "passed": True, "value": 40.0}]}
FAILED = {
    "passed": False,
    "results": [
        {"name": "rmse", "passed": False, "value": 60.0, "max": 50.0},
        {"name": "nan", "passed": True},
    ],
}


def _versions(workspace: Workspace, ridge: Ridge, count: int) -> None:
    for _ in range(count):
        version = workspace.registry.register("bike", ridge)
        workspace.registry.catalog.update_model_version(
            "bike", version.version, actor="ci", time=workspace.clock.now(), evaluation=PASSED
        )


def test_promote_records_who_when_why_and_gates(workspace: Workspace, ridge: Ridge) -> None:
    _versions(workspace, ridge, 2)
    first = workspace.registry.promote("bike", 1, reason="first release")
    second = workspace.registry.promote("bike", 2, to="production")
    assert (first.from_version, first.to_version, first.kind, first.reason) == (
        None,
        1,
        "promote",
        "first release",
    )
    assert (second.from_version, second.to_version, second.actor) == (1, 2, "ana")
    assert second.gates == PASSED
    assert not second.forced
    assert workspace.registry.history("bike") == [first, second]
    assert workspace.registry.get("bike@production").version == 2
    events = workspace.events(types=["model.alias_moved"])
    assert [(e.payload["from_version"], e.payload["to_version"]) for e in events] == [
        (None, 1),
        (1, 2),
    ]


def test_rollback_walks_back_skipping_versions_rolled_back_from(
    workspace: Workspace, ridge: Ridge
) -> None:
    _versions(workspace, ridge, 4)
    registry = workspace.registry
    for version in (1, 2, 3):
        registry.promote("bike", version)
    assert registry.rollback_target("bike") == registry.get("bike/2")
    back = registry.rollback("bike", reason="errors up")
    assert (back.kind, back.from_version, back.to_version, back.reason) == (
        "rollback",
        3,
        2,
        "errors up",
    )
    again = registry.rollback("bike")
    assert (again.from_version, again.to_version) == (2, 1)
    assert registry.get("bike@production").version == 1
    with pytest.raises(NotFound, match="no earlier version to roll back to"):
        registry.rollback("bike")
    assert registry.rollback_target("bike") is None
    registry.promote("bike", 4)
    assert registry.rollback("bike").to_version == 1  # 3 and 2 were rolled back from
    kinds = [(m.kind, m.to_version) for m in registry.history("bike", "production")]
    assert kinds == [
        ("promote", 1),
        ("promote", 2),
        ("promote", 3),
        ("rollback", 2),
        ("rollback", 1),
        ("promote", 4),
        ("rollback", 1),
    ]
    with pytest.raises(NotFound, match="names nothing"):
        registry.rollback("bike", "staging")


def test_guarded_alias_refuses_failed_or_missing_gates(workspace: Workspace, ridge: Ridge) -> None:
    registry = workspace.registry
    registry.register("bike", ridge)
    with pytest.raises(GateFailed, match="no gate evaluation") as missing:
        registry.promote("bike", 1)
    assert missing.value.results == {}
    registry.catalog.update_model_version(
        "bike", 1, actor="ci", time=workspace.clock.now(), evaluation=FAILED
    )
    with pytest.raises(
        GateFailed, match=r"models:/bike/1 cannot become 'production'.*rmse"
    ) as caught:
        registry.promote("bike", 1)
    assert caught.value.results == FAILED
    assert registry.gate_results("bike/1") == FAILED
    assert registry.history("bike") == []
    staged = registry.promote("bike", 1, to="staging")  # not guarded
    assert (staged.forced, staged.gates) == (False, FAILED)


def test_forcing_needs_a_reason_which_is_recorded(workspace: Workspace, ridge: Ridge) -> None:
    registry = workspace.registry
    registry.register("bike", ridge)
    registry.catalog.update_model_version(
        "bike", 1, actor="ci", time=workspace.clock.now(), evaluation=FAILED
    )
    for reason in (None, "  "):
        with pytest.raises(ValidationFailed, match="needs a reason"):
            registry.promote("bike", 1, force=True, reason=reason)
    move = registry.promote("bike", 1, force=True, reason="hotfix approved by ops")
    assert (move.forced, move.reason, move.gates) == (True, "hotfix approved by ops", FAILED)
    assert registry.history("bike")[-1] == move


def test_promoting_a_missing_version_names_the_latest(workspace: Workspace, ridge: Ridge) -> None:
    workspace.registry.register("bike", ridge)
    with pytest.raises(NotFound, match=r"model 'bike' has no version 7 \(latest is 1\)"):
        workspace.registry.promote("bike", 7)
    with pytest.raises(NotFound, match="no model 'nope'"):
        workspace.registry.promote("nope", 1)
    with pytest.raises(ValidationFailed, match="reserved"):
        workspace.registry.promote("bike", 1, to="latest")


def test_a_rollback_from_a_stale_read_is_a_conflict(workspace: Workspace, ridge: Ridge) -> None:
    _versions(workspace, ridge, 2)
    catalog = workspace.registry.catalog
    now = workspace.clock.now()
    catalog.move_alias("bike", "production", 1, kind="promote", actor="a", time=now)
    with pytest.raises(AliasConflict, match="another move got there first"):
        catalog.move_alias(
            "bike", "production", 2, kind="rollback", actor="a", time=now, expect_from=2
        )


def test_gate_verdicts() -> None:
    assert evaluation_passed(PASSED)
    assert not evaluation_passed(FAILED)
    assert not evaluation_passed(None)
    assert not evaluation_passed({"passed": False})
    assert evaluation_passed({"results": [{"name": "rmse", "passed": True}]})
    assert failed_gates({"results": [{"name": "rmse", "passed": False}]}) == ["rmse"]
