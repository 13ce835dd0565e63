"""Migrations: the head schema is the schema in code, and older databases upgrade with data kept."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text

from mlcycle.errors import WorkspaceError
from mlcycle.ids import RunId
from mlcycle.store import SqlMetadataStore, open_metadata_store, upgrade_metadata
from mlcycle.store._records import MetricPoint
from mlcycle.store._schema import metadata
from mlcycle.store._sql_db import MIGRATIONS_DIR, Database, _alembic_config

HEAD = "0011"
OPTS = {"version_table": "mlcycle_alembic_version"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mlcycle.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    return postgres_url


def _migrate(url: str, action: str, revision: str) -> None:
    database = Database(url)

    def work(conn: Connection) -> None:
        config = _alembic_config()
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)

    database.write(work)
    database.close()


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def test_head_schema_is_the_schema_in_code(url: str) -> None:
    assert upgrade_metadata(url) == HEAD
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=OPTS), metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert tables == set(metadata.tables) | {"mlcycle_alembic_version"}


def test_upgrade_is_idempotent_and_reports_the_revision(url: str) -> None:
    assert upgrade_metadata(url) == HEAD
    assert upgrade_metadata(url) == HEAD
    store = SqlMetadataStore.open(url)
    assert store.revision() == HEAD
    store.close()


def test_a_database_at_the_older_schema_is_upgraded_with_its_data(url: str) -> None:
    _migrate(url, "upgrade", "0001")
    _sql(
        url,
        "INSERT INTO experiments VALUES ('E1', 'old', 1.0, 'ana')",
        "INSERT INTO runs (id, experiment_id, name, status, start_time, heartbeat_at, actor) "
        "VALUES ('R1', 'E1', 'legacy', 'finished', 1.0, 2.0, 'ana')",
        "INSERT INTO params VALUES ('R1', 'model', 'gbm')",
        "INSERT INTO tags VALUES ('R1', 'owner', 'ana')",
        "INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan) VALUES "
        "('R1', 'rmse', 1, 10.0, 50.0, false), ('R1', 'rmse', 3, 5.0, 42.0, false), "
        "('R1', 'rmse', 2, 99.0, 60.0, false), ('R1', 'rmse', 3, 7.0, 41.0, false), "
        "('R1', 'loss', 0, 1.0, NULL, true)",
    )
    store = open_metadata_store(url)
    assert store.revision() == HEAD
    run = store.get_run("R1")
    assert (run.name, run.experiment_name, run.params, run.tags) == (
        "legacy",
        "old",
        {"model": "gbm"},
        {"owner": "ana"},
    )
    assert run.metrics["rmse"] == 41.0  # step 3, the later timestamp
    assert math.isnan(run.metrics["loss"])
    assert [p.value for p in store.metric_history(run.id, "rmse")] == [50.0, 60.0, 42.0, 41.0]
    assert [r.id for r in store.search_runs(where="metrics.rmse < 45")] == ["R1"]
    store.close()


_HISTORY = (
    "SELECT run_id, key, step, timestamp, value, is_nan FROM metrics "
    "ORDER BY run_id, key, step, timestamp, id"
)
_LATEST = "SELECT run_id, key, step, timestamp, value, is_nan FROM latest_metrics ORDER BY 1, 2"


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(query))]
    engine.dispose()
    return rows


def _per_point_history(url: str) -> None:
    """A database at 0002 with metric rows as that schema wrote them, one per point."""
    _migrate(url, "upgrade", "0002")
    _sql(
        url,
        "INSERT INTO experiments VALUES ('E1', 'old', 1.0, 'ana')",
        "INSERT INTO runs (id, experiment_id, name, status, start_time, heartbeat_at, actor) "
        "VALUES ('R1', 'E1', 'a', 'finished', 1.0, 2.0, 'ana'), "
        "('R2', 'E1', 'b', 'running', 1.0, 2.0, 'ana')",
        "INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan) VALUES "
        "('R1', 'rmse', 3, 5.0, 42.0, false), ('R1', 'rmse', 1, 10.0, 50.0, false), "
        "('R1', 'rmse', 3, 5.0, 43.0, false), ('R1', 'rmse', 2, 99.0, 60.0, false), "
        "('R1', 'loss', 0, 1.0, NULL, true), ('R1', 'loss', -4, 2.0, 1e308, false), "
        "('R2', 'rmse', 0, 1.0, -1.5, false), ('R2', 'big', 9000000000000, 3.5, 0.25, false)",
        "INSERT INTO latest_metrics VALUES ('R1', 'rmse', 3, 5.0, 43.0, false), "
        "('R1', 'loss', 0, 1.0, NULL, true), ('R2', 'rmse', 0, 1.0, -1.5, false), "
        "('R2', 'big', 9000000000000, 3.5, 0.25, false)",
    )


def test_a_database_with_per_point_history_is_upgraded_to_chunks(url: str) -> None:
    _per_point_history(url)
    before = _rows(url, _HISTORY)
    latest = _rows(url, _LATEST)
    store = open_metadata_store(url)
    assert store.revision() == HEAD
    after = [
        (run_id, key, p.step, p.timestamp, None if math.isnan(p.value) else p.value)
        for run_id, key in dict.fromkeys((row[0], row[1]) for row in before)
        for p in store.metric_history(RunId(run_id), key)
    ]
    assert after == [row[:5] for row in before]  # the order the per-point table gave
    assert [p.value for p in store.metric_history(RunId("R1"), "rmse")] == [50.0, 60.0, 42.0, 43.0]
    assert math.isnan(store.metric_history(RunId("R1"), "loss")[1].value)
    assert store.get_run(RunId("R1")).metrics["rmse"] == 43.0
    assert _rows(url, _LATEST) == latest
    store.log_batch(RunId("R2"), metrics=[MetricPoint("rmse", 7.0, 0, 1.0)])  # same step and time
    assert [p.value for p in store.metric_history(RunId("R2"), "rmse")] == [-1.5, 7.0]
    store.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert "metrics" not in inspect(conn).get_table_names()
    engine.dispose()


def test_downgrading_expands_the_chunks_into_rows_again(url: str) -> None:
    _per_point_history(url)
    before = _rows(url, _HISTORY)
    upgrade_metadata(url)
    _migrate(url, "downgrade", "0002")
    assert _rows(url, _HISTORY) == before
    assert upgrade_metadata(url) == HEAD
    store = open_metadata_store(url)
    assert [p.value for p in store.metric_history(RunId("R1"), "rmse")] == [50.0, 60.0, 42.0, 43.0]
    store.close()


def test_migrations_go_down_and_up_again(url: str) -> None:
    upgrade_metadata(url)
    _migrate(url, "downgrade", "base")
    engine = create_engine(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"mlcycle_alembic_version"}
    engine.dispose()
    assert upgrade_metadata(url) == HEAD


def test_a_revision_from_a_newer_mlcycle_is_named(url: str) -> None:
    upgrade_metadata(url)
    _sql(url, "UPDATE mlcycle_alembic_version SET version_num = '9999'")
    with pytest.raises(WorkspaceError, match=r"'9999'.*upgrade mlcycle"):
        open_metadata_store(url)


def test_concurrent_first_opens_migrate_once(url: str) -> None:
    errors: list[BaseException] = []

    def open_and_write(index: int) -> None:
        try:
            store = open_metadata_store(url)
            store.ensure_experiment("shared", actor=f"t{index}")
            store.close()
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    store = open_metadata_store(url)
    assert [e.name for e in store.list_experiments()] == ["shared"]
    store.close()


def test_an_existing_sqlite_file_with_foreign_tables_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with sqlite3.connect(path) as conn:  # as Optuna leaves it: its own alembic_version
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('v3.2.0.a')")
    conn.close()
    assert upgrade_metadata(f"sqlite:///{path}") == HEAD
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("v3.2.0.a",)]
        assert conn.execute("SELECT version_num FROM mlcycle_alembic_version").fetchall() == [
            (HEAD,)
        ]
    conn.close()


def test_an_empty_sqlite_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    assert upgrade_metadata(f"sqlite:///{path}") == HEAD


def test_the_migrations_ship_inside_the_package() -> None:
    names = {p.name for p in MIGRATIONS_DIR.rglob("*") if p.suffix in {".py", ".mako"}}
    assert {
        "env.py",
        "script.py.mako",
        "0001_initial.py",
        "0002_events_lineage.py",
        "0003_metric_chunks.py",
        "0004_datasets.py",
        "0006_models.py",
        "0008_agent.py",
        "0009_deployments.py",
        "0010_alerts.py",
        "0011_monitor_results.py",
    } <= names
    assert MIGRATIONS_DIR.parent.name == "store"
