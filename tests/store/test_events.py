"""The event log: pollers see every event exactly once while writers race, across restarts too."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection

from mlcycle.errors import NotFound
from mlcycle.ids import RunId
from mlcycle.store import SqlMetadataStore, open_metadata_store
from mlcycle.store._sql_events import append_event

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PER_WRITER = 40


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mlcycle.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    return postgres_url


def _process_writer(url: str, name: str) -> None:
    store = open_metadata_store(url)
    experiment = store.ensure_experiment("race", actor=name)
    for index in range(PER_WRITER):
        if index % 4 == 0:
            store.create_run(experiment_id=experiment.id, name=name, actor=name, start_time=T0)
        else:
            store.append_event("alert.fired", subject=f"w:{name}", actor=name, time=T0)
    store.close()


def _slow_writer(store: SqlMetadataStore, name: str) -> None:
    """Commits a while after taking its position, as a long transaction would."""
    rng = random.Random(name)

    def work(conn: Connection) -> None:
        append_event(conn, "dataset.version_created", subject=f"w:{name}", actor=name, time=T0)
        time.sleep(rng.uniform(0, 0.01))

    for _ in range(PER_WRITER):
        store._db.write(work)


def _poll(store: SqlMetadataStore, done: threading.Event, seen: list[int]) -> None:
    cursor = 0
    while True:
        finished = done.is_set()  # read before polling: a last pass after the writers end
        batch = store.read_events(since=cursor, limit=7)
        seen.extend(event.position for event in batch)
        if batch:
            cursor = batch[-1].position
        elif finished:
            return
        else:
            time.sleep(0.002)  # let the writers run; an agent polls on an interval too


def test_a_poller_sees_every_event_once_while_threads_and_processes_write(url: str) -> None:
    store = SqlMetadataStore.open(url)
    done, seen = threading.Event(), []
    poller = threading.Thread(target=_poll, args=(store, done, seen))
    poller.start()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_process_writer, args=(url, f"p{i}")) for i in range(2)]
    threads = [threading.Thread(target=_slow_writer, args=(store, f"t{i}")) for i in range(3)]
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join(timeout=120)
    for process in processes:
        process.join(timeout=120)
    done.set()
    poller.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    everything = [event.position for event in store.read_events(limit=100_000)]
    assert len(everything) == 5 * PER_WRITER + 1  # and one experiment.created
    assert seen == everything  # no gap, no repeat, in order
    store.close()


def test_cursors_survive_reopening_and_resume_where_they_stopped(url: str) -> None:
    store = open_metadata_store(url)
    for index in range(10):
        store.append_event("alert.fired", subject=f"a:{index}", actor="m", time=T0)
    handled = store.read_events(limit=4)
    store.save_cursor("agent", handled[-1].position)
    store.close()

    reopened = open_metadata_store(url)
    cursor = reopened.load_cursor("agent")
    assert cursor == handled[-1].position
    rest = reopened.read_events(since=cursor)
    assert [e.subject for e in handled + rest] == [f"a:{i}" for i in range(10)]
    assert reopened.load_cursor("someone-else") == 0
    reopened.close()


def test_a_refused_change_records_no_event(url: str) -> None:
    store = open_metadata_store(url)
    experiment = store.ensure_experiment("e", actor="a")
    with pytest.raises(NotFound):
        store.create_run(
            experiment_id=experiment.id,
            name="orphan",
            actor="a",
            start_time=T0,
            parent_id=RunId("NOPARENT"),
        )
    assert [e.type for e in store.read_events()] == ["experiment.created"]
    assert store.search_runs() == []
    store.close()
