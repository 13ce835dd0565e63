"""Edges of the SQL metadata store: odd input, plugin backends, errors that must not hide."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from mlcycle.errors import NotFound, ValidationFailed, WorkspaceError
from mlcycle.ids import ExperimentId, RunId
from mlcycle.store import MetricPoint, SqlMetadataStore, check_key, open_metadata_store
from mlcycle.store._sql_db import Database

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    store = SqlMetadataStore.open(f"sqlite:///{tmp_path}/mlcycle.db")
    yield store
    store.close()


def test_naive_datetimes_are_taken_as_utc(store: SqlMetadataStore) -> None:
    experiment = store.ensure_experiment("e", actor="a")
    run = store.create_run(
        experiment_id=experiment.id,
        name="r",
        actor="a",
        start_time=datetime(2030, 1, 1),  # noqa: DTZ001
    )
    assert store.get_run(run.id).start_time == T0


def test_an_experiment_name_is_not_an_experiment_id(store: SqlMetadataStore) -> None:
    store.ensure_experiment("bike", actor="a")
    with pytest.raises(NotFound, match="no experiment with id 'bike'"):
        store.create_run(experiment_id=ExperimentId("bike"), name="r", actor="a", start_time=T0)


def test_odd_arguments_get_clear_errors(store: SqlMetadataStore) -> None:
    experiment = store.ensure_experiment("e", actor="a")
    run = store.create_run(experiment_id=experiment.id, name="r", actor="a", start_time=T0)
    with pytest.raises(TypeError, match="step of metric 'm'"):
        store.log_batch(run.id, metrics=[MetricPoint("m", 1.0, 1.5, 0.0)])  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="not JSON-able"):
        store.append_event("alert.fired", subject="a:1", actor="a", time=T0, payload={"x": {1j}})
    with pytest.raises(ValidationFailed, match="must not be negative"):
        store.read_events(since=-1)
    with pytest.raises(ValidationFailed, match="consumer name"):
        store.save_cursor("", 1)
    with pytest.raises(ValidationFailed, match="must be a string"):
        check_key(5)  # type: ignore[arg-type]
    store.heartbeat([], at=T0)
    assert store.read_events(types=["alert.fired"]) == []


def test_search_accepts_one_experiment_name(store: SqlMetadataStore) -> None:
    experiment = store.ensure_experiment("e", actor="a")
    run = store.create_run(experiment_id=experiment.id, name="r", actor="a", start_time=T0)
    assert [r.id for r in store.search_runs(experiments="e")] == [run.id]  # type: ignore[arg-type]


def test_the_store_names_its_url_without_secrets(tmp_path: Path) -> None:
    store = SqlMetadataStore.open(f"sqlite:///{tmp_path}/m.db")
    assert repr(store) == f"SqlMetadataStore('sqlite:///{tmp_path}/m.db')"
    store.close()


def test_a_bug_in_a_query_is_not_disguised_as_a_workspace_problem(
    store: SqlMetadataStore,
) -> None:
    with pytest.raises(OperationalError, match="no such table"):
        store._db.read(lambda conn: conn.exec_driver_sql("SELECT * FROM no_such_table").all())


@pytest.mark.postgres
def test_a_bug_in_a_postgres_query_is_not_disguised(postgres_url: str) -> None:
    database = Database(postgres_url)
    with pytest.raises(ProgrammingError, match="no_such_table"):
        database.read(lambda conn: conn.exec_driver_sql("SELECT * FROM no_such_table").all())
    database.close()


def test_a_backend_from_an_entry_point_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "memo_backend.py").write_text(
        "from mlcycle.store import SqlMetadataStore\n"
        "class MemoStore:\n"
        "    @classmethod\n"
        "    def open(cls, url, *, busy_timeout_s):\n"
        "        return SqlMetadataStore.open('sqlite://')\n"
    )
    info = tmp_path / "memo_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: memo-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[mlcycle.backends]\nmetadata.memo = memo_backend:MemoStore\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        store = open_metadata_store("memo://anything")
        assert store.list_experiments() == []
        store.close()
    finally:
        sys.modules.pop("memo_backend", None)


def test_an_unopenable_sqlite_file_is_a_workspace_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/m.db")
    (tmp_path / "m.db").mkdir()  # appears after the checks, before the first connection
    with pytest.raises(WorkspaceError, match="unable to open database file"):
        database.read(lambda conn: conn.exec_driver_sql("SELECT 1").all())
    database.close()


def test_an_unknown_run_is_not_found_when_setting_its_seed(store: SqlMetadataStore) -> None:
    with pytest.raises(NotFound, match="NOSUCH"):
        store.set_seed(RunId("NOSUCH"), 1)
