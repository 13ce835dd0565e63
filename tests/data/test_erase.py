"""Erasure: matching rows leave every version and every stored file, on local and S3 areas."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from tests.data.conftest import table_files

import mlcycle as mc
from mlcycle.data import parse_predicate
from mlcycle.errors import NotFound, QuerySyntaxError, ValidationFailed
from mlcycle.workspace import Workspace

ANA = "ana.secret@example.com"


def _people(start: int, rows: int) -> pa.Table:
    ids = list(range(start, start + rows))
    return pa.table(
        {
            "customer_id": ids,
            "email": [ANA if i == 7 else f"user{i}@example.com" for i in ids],
            "spend": [float(i) for i in ids],
        }
    )


def _blob_text(ws: Workspace, digest: str) -> bytes:
    with ws.artifacts.open(digest) as stream:  # type: ignore[arg-type]  # a Digest string
        return stream.read()


def test_erase_rewrites_every_version_and_deletes_the_old_files(ws: Workspace) -> None:
    data = ws.data
    v1 = data.register("people", _people(0, 10), key=["customer_id"])
    v2 = data.register("people", _people(10, 5))
    v3 = data.register("people", _people(100, 3), mode="overwrite")  # ana is not in v3
    before = table_files(ws)
    assert any(f.startswith("datasets/people/") for f in before)

    erasure = data.erase("people", where="customer_id = 7", reason="GDPR request 17")

    assert erasure.rows_removed == {1: 1, 2: 1, 3: 0}
    assert erasure.total_removed == 2
    history = data.history("people")
    assert [v.version for v in history] == [1, 2, 3]
    for k, expected in ((1, 9), (2, 14), (3, 3)):
        table = data.load_table(f"people/{k}")
        assert table.num_rows == expected
        assert ANA not in table.column("email").to_pylist()
        assert 7 not in table.column("customer_id").to_pylist()
    kept = _people(0, 10).filter(pa.array([i != 7 for i in range(10)]))
    assert data.load_table("people/1").to_pylist() == kept.to_pylist()
    assert data.load_table("people/3").to_pylist() == _people(100, 3).to_pylist()
    one, two, three = history
    assert (one.rows, two.rows, three.rows) == (9, 14, 3)
    assert one.digest != v1.digest
    assert two.digest != v2.digest
    assert three.digest == v3.digest
    assert one.profile_digest is not None
    assert one.profile_digest != v1.profile_digest
    assert ANA.encode() not in _blob_text(ws, one.profile_digest)
    assert v1.profile_digest is not None
    assert v2.profile_digest is not None
    assert not ws.artifacts.exists(v1.profile_digest)  # replaced profiles may hold erased values
    assert not ws.artifacts.exists(v2.profile_digest)
    assert v3.profile_digest is not None
    assert ws.artifacts.exists(v3.profile_digest)  # still the profile of version 3
    assert (one.source, one.created_at, one.operation) == (v1.source, v1.created_at, "create")

    after = table_files(ws)
    assert not any(f.startswith("datasets/people/") for f in after)
    assert after
    assert all(f.startswith("datasets/_rewritten/people/g1/") for f in after)

    events = ws.events(types=["dataset.erased"])
    assert len(events) == 1
    event = events[0]
    assert (event.subject, event.actor) == ("data:/people", "tester")
    assert event.payload["predicate"] == "customer_id = 7"
    assert event.payload["reason"] == "GDPR request 17"
    assert event.payload["rows_removed"] == {"1": 1, "2": 1, "3": 0}
    assert ANA not in orjson.dumps(event.payload).decode()

    later = data.register("people", _people(200, 2), mode="append")
    assert (later.version, later.rows) == (4, 5)
    assert data.load_table("people").column("customer_id").to_pylist() == [100, 101, 102, 200, 201]


def test_a_second_erase_moves_on_and_leaves_one_table(ws: Workspace) -> None:
    ws.data.register("people", _people(0, 10))
    ws.data.erase("people", where=f"email = '{ANA}'", reason="request 1")
    ws.data.erase("people", where="spend >= 8 or customer_id in (0, 1)", reason="request 2")
    assert ws.data.load_table("people").column("customer_id").to_pylist() == [2, 3, 4, 5, 6]
    files = table_files(ws)
    assert files
    assert all(f.startswith("datasets/_rewritten/people/g2/") for f in files)
    nothing = ws.data.erase("people", where="customer_id = 999", reason="request 3")
    assert nothing.total_removed == 0
    assert table_files(ws) == files
    assert len(ws.events(types=["dataset.erased"])) == 3


def test_erasing_every_row_leaves_empty_versions(ws: Workspace) -> None:
    ws.data.register("people", _people(0, 3))
    ws.data.erase("people", where="customer_id >= 0", reason="all of them")
    assert ws.data.load_table("people/1").num_rows == 0
    assert ws.data.get("people/1").rows == 0


def test_bad_erasures_are_refused_and_change_nothing(ws: Workspace) -> None:
    first = ws.data.register("people", _people(0, 10))
    with pytest.raises(QuerySyntaxError, match="expected a value"):
        ws.data.erase("people", where="email == 'x'", reason="r")
    with pytest.raises(ValidationFailed, match=r"has the column\(s\) \['mail'\]"):
        ws.data.erase("people", where="mail = 'x'", reason="r")
    with pytest.raises(ValidationFailed, match="needs a reason"):
        ws.data.erase("people", where="customer_id = 7", reason=" ")
    with pytest.raises(ValidationFailed, match="cannot compare column 'customer_id'"):
        ws.data.erase("people", where="customer_id = 'seven'", reason="r")
    with pytest.raises(NotFound):
        ws.data.erase("nobody", where="customer_id = 7", reason="r")
    assert ws.data.history("people") == [first]
    assert ws.events(types=["dataset.erased"]) == []


def test_predicates_follow_sql_null_rules_and_never_evaluate_python() -> None:
    table = pa.table({"a": [1, None, 3], "s": ["x", "y", None]})
    assert parse_predicate("not a = 1").mask(table).to_pylist() == [False, False, True]
    assert parse_predicate("a is null or s is null").mask(table).to_pylist() == [
        False,
        True,
        True,
    ]
    assert parse_predicate("s not in ('x')").mask(table).to_pylist() == [False, True, False]
    assert parse_predicate("\"a\" <> 1 and s = 'y'").mask(table).to_pylist() == [
        False,
        False,
        False,
    ]
    for bad in ("__import__('os').system('true')", "a = 1; drop", "a = b", ""):
        with pytest.raises(ValidationFailed):
            parse_predicate(bad)


def test_mc_data_erase_acts_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLCYCLE_HOME", raising=False)
    try:
        mc.data.register("people", _people(0, 10))
        assert mc.data.erase("people", where="customer_id < 5", reason="r").total_removed == 5
        assert mc.data.load("people")["customer_id"].tolist() == [5, 6, 7, 8, 9]
    finally:
        mc.close()
