"""The metadata contract on SQLite, and what only a SQLite file can get wrong."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlcycle.errors import BackendUnavailable, ValidationFailed, WorkspaceError
from mlcycle.store import (
    MetadataStore,
    MetricPoint,
    SqlMetadataStore,
    open_metadata_store,
    upgrade_metadata,
)
from mlcycle.store._sql_db import Database
from mlcycle.store.testing import MetadataStoreContract

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class TestSqliteMetadataStore(MetadataStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[MetadataStore]:
        store = open_metadata_store(f"sqlite:///{tmp_path}/mlcycle.db")
        yield store
        store.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sqlite_is_tuned_for_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "mlcycle.db"
    open_metadata_store(f"sqlite:///{path}", busy_timeout_s=7).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store = SqlMetadataStore.open(f"sqlite:///{path}", busy_timeout_s=7)
    with store._db.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("busy_timeout", "synchronous", "foreign_keys")
        }
    store.close()
    assert pragmas == {"busy_timeout": 7000, "synchronous": 1, "foreign_keys": 1}


@pytest.mark.parametrize(
    "content",
    [b"this is my thesis, not a database\n" * 50, b"SQLite format 3\x00" + os.urandom(4000)],
    ids=["text", "garbage-after-header"],
)
def test_a_file_that_is_not_a_database_is_refused_and_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "mlcycle.db"
    path.write_bytes(content)
    before = _sha256(path)
    with pytest.raises(WorkspaceError, match=str(path)) as caught:
        open_metadata_store(f"sqlite:///{path}")
    assert "left untouched" in str(caught.value)
    with pytest.raises(WorkspaceError, match=str(path)):
        upgrade_metadata(f"sqlite:///{path}")
    assert _sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlcycle.db"]


def test_a_folder_at_the_database_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mlcycle.db").mkdir()
    with pytest.raises(WorkspaceError, match="is a folder"):
        open_metadata_store(f"sqlite:///{tmp_path}/mlcycle.db")


def test_a_workspace_under_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "project"
    blocker.write_text("a file where the project folder should be")
    with pytest.raises(WorkspaceError, match=str(blocker / ".mlcycle")):
        open_metadata_store(f"sqlite:///{blocker}/.mlcycle/mlcycle.db")


def test_a_read_only_workspace_is_refused(unwritable_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match=str(unwritable_dir)):
        open_metadata_store(f"sqlite:///{unwritable_dir}/mlcycle.db")
    assert list(unwritable_dir.iterdir()) == []


def test_a_bad_url_says_what_a_good_one_looks_like() -> None:
    with pytest.raises(ValidationFailed, match="sqlite:///"):
        open_metadata_store("postgresql://ana@db:port-is-not-a-number/x")


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ValidationFailed, match="no metadata backend for the scheme 'mongodb'"):
        open_metadata_store("mongodb://localhost/x")


def test_in_memory_database_works() -> None:
    store = open_metadata_store("sqlite://")
    assert store.ensure_experiment("x", actor="a").name == "x"
    store.close()


def _write_runs(url: str, worker: int, runs: int, points: int) -> None:
    store = open_metadata_store(url, busy_timeout_s=0.05)  # tiny: forces the retry path
    experiment = store.ensure_experiment("shared", actor=f"w{worker}")
    for index in range(runs):
        run = store.create_run(
            experiment_id=experiment.id, name=f"w{worker}-{index}", actor="w", start_time=T0
        )
        for batch in range(5):
            metrics = [
                MetricPoint("loss", float(step), batch * points + step, 1.0)
                for step in range(points)
            ]
            store.log_batch(run.id, metrics=metrics, params={f"p{batch}": str(batch)})
    store.close()


def test_four_processes_write_one_file_without_losing_a_value(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/mlcycle.db"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_runs, args=(url, w, 6, 40)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    store = open_metadata_store(url)
    runs = store.search_runs(experiments=["shared"], limit=1000)
    assert len(runs) == 24
    for run in runs:
        assert len(store.metric_history(run.id, "loss")) == 200
        assert len(run.params) == 5
    assert len(store.list_experiments()) == 1
    store.close()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_write_waits_for_a_lock_held_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "mlcycle.db"
    store = open_metadata_store(f"sqlite:///{path}", busy_timeout_s=0.01)
    holder = _hold_write_lock(path)
    releaser = threading.Timer(0.5, holder.rollback)
    releaser.start()
    experiment = store.ensure_experiment("patient", actor="a")  # retried, not refused
    releaser.join()
    holder.close()
    assert store.get_experiment("patient") == experiment
    store.close()


def test_a_lock_that_is_never_released_becomes_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mlcycle.db"
    open_metadata_store(f"sqlite:///{path}").close()
    database = Database(f"sqlite:///{path}", busy_timeout_s=0.01, retry_for_s=0.3)
    holder = _hold_write_lock(path)
    try:
        with pytest.raises(BackendUnavailable, match=r"stayed busy.*busy_timeout_s"):
            database.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x)"))
    finally:
        holder.rollback()
        holder.close()
        database.close()
