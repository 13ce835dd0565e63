"""Ancestry walks: exactly the reachable ancestors, as a tree and as JSON, and never a loop."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.store import LineageTree, SqlMetadataStore, ancestry

T0 = datetime(2030, 1, 1, tzinfo=UTC)
_examples = itertools.count()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    store = SqlMetadataStore.open(f"sqlite:///{tmp_path}/mlcycle.db")
    yield store
    store.close()


def _refs(tree: LineageTree) -> set[str]:
    return {tree.ref}.union(*(_refs(parent) for parent in tree.parents))


def _reachable(edges: set[tuple[int, int]], node: int) -> set[int]:
    found, frontier = set(), {node}
    while frontier:
        frontier = {s for s, t in edges if t in frontier} - found
        found |= frontier
    return found


def _depth(tree: LineageTree) -> int:
    return 1 + max((_depth(parent) for parent in tree.parents), default=0)


def test_a_model_tree_as_text_and_json(store: SqlMetadataStore) -> None:
    edges = [
        ("data:/bike/3", "run:R1", "input"),
        ("env:sha256:ab", "run:R1", "environment"),
        ("data:/bike/raw", "data:/bike/3", "derived"),
        ("run:R1", "models:/bike/3", "produced"),
    ]
    for source, target, kind in edges:
        store.add_edge(source, target, kind=kind, actor="ana", time=T0)
    tree = ancestry(store, "models:/bike/3")
    assert tree.lines() == [
        "models:/bike/3",
        "└── run:R1 (produced)",
        "    ├── data:/bike/3 (input)",
        "    │   └── data:/bike/raw (derived)",
        "    └── env:sha256:ab (environment)",
    ]
    data = json.loads(json.dumps(tree.to_dict()))
    assert data["ref"] == "models:/bike/3"
    assert data["kind"] is None
    assert data["parents"][0]["kind"] == "produced"
    assert [p["ref"] for p in data["parents"][0]["parents"]] == ["data:/bike/3", "env:sha256:ab"]
    assert ancestry(store, "data:/nothing-made-this") == LineageTree("data:/nothing-made-this")


def test_max_depth_marks_what_lies_beyond(store: SqlMetadataStore) -> None:
    for index in range(5):
        store.add_edge(f"data:/{index + 1}", f"data:/{index}", kind="derived", actor="a", time=T0)
    tree = ancestry(store, "data:/0", max_depth=2)
    assert _depth(tree) == 3
    assert tree.lines()[-1].endswith("data:/2 (derived) [...]")
    assert tree.parents[0].parents[0].to_dict()["truncated"] is True
    assert _depth(ancestry(store, "data:/0")) == 6


def test_a_cycle_is_shown_once_and_not_followed(store: SqlMetadataStore) -> None:
    store.add_edge("a:1", "a:2", kind="k", actor="x", time=T0)
    store.add_edge("a:2", "a:1", kind="k", actor="x", time=T0)
    tree = ancestry(store, "a:1")
    assert tree.lines() == ["a:1", "└── a:2 (k)", "    └── a:1 (k) [cycle]"]
    assert tree.parents[0].parents[0].to_dict() == {
        "ref": "a:1",
        "kind": "k",
        "parents": [],
        "cycle": True,
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edges=st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=14),
    acyclic=st.booleans(),
)
def test_ancestry_is_exactly_the_reachable_ancestors(
    store: SqlMetadataStore, edges: set[tuple[int, int]], acyclic: bool
) -> None:
    if acyclic:  # a DAG: every edge points from a lower to a higher node
        edges = {(min(s, t), max(s, t)) for s, t in edges if s != t}
    prefix = f"x{next(_examples)}:"
    for source, target in edges:
        store.add_edge(f"{prefix}{source}", f"{prefix}{target}", kind="k", actor="a", time=T0)
    for node in range(8):
        tree = ancestry(store, f"{prefix}{node}")
        expected = {f"{prefix}{n}" for n in _reachable(edges, node)} | {f"{prefix}{node}"}
        assert _refs(tree) == expected
        json.dumps(tree.to_dict())
        if acyclic:
            assert "[cycle]" not in "\n".join(tree.lines())
