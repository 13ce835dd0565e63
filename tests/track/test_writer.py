"""The background writer: periodic flushes, backpressure, heartbeats and errors that surface."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta

import pytest

from mlcycle.clock import SimulatedClock
from mlcycle.errors import BackendUnavailable, ImmutableValue, NotFound
from mlcycle.settings import Settings
from mlcycle.store import RunStatus
from mlcycle.workspace import Workspace

Wait = Callable[[Callable[[], bool]], None]


def test_values_reach_the_store_without_a_flush(workspace: Workspace, wait_until: Wait) -> None:
    run = workspace.start_run("exp")
    for step in range(100):
        run.log_metric("loss", float(step), step=step)
    run.log_param("lr", 0.1)
    run.set_tag("phase", "train")
    store = workspace.metadata

    def all_stored() -> bool:
        try:
            return len(store.metric_history(run.id, "loss")) == 100
        except NotFound:  # the run's start is buffered too, and written the same way
            return False

    wait_until(all_stored)
    wait_until(lambda: store.get_run(run.id).params == {"lr": "0.1"})
    assert store.get_run(run.id).tags["phase"] == "train"
    assert store.get_run(run.id).status is RunStatus.RUNNING
    run.finish()


def test_a_full_buffer_makes_log_calls_wait_not_drop(settings: Settings) -> None:
    tiny = settings.tracking.model_copy(update={"buffer_size": 3})
    with Workspace.open(settings.model_copy(update={"tracking": tiny})) as workspace:
        with workspace.start_run("exp") as run:
            for step in range(600):
                run.log_metric("loss", float(step), step=step)
            run.log_metrics({f"m{index}": float(index) for index in range(50)}, step=0)
        history = workspace.get_run(run.id).metric_history("loss")
        assert [point.value for point in history] == [float(step) for step in range(600)]
        assert len(workspace.get_run(run.id).metrics) == 51


def test_a_store_that_fails_is_reported_at_the_next_log_call_and_at_finish(
    settings: Settings, wait_until: Wait
) -> None:
    quick = settings.tracking.model_copy(update={"flush_interval_s": 0.05})
    workspace = Workspace.open(settings.model_copy(update={"tracking": quick}))
    run = workspace.start_run("exp")
    run.log_metric("loss", 1.0)
    workspace.flush()
    with sqlite3.connect(settings.workspace_dir / "mlcycle.db") as conn:
        conn.execute("DROP TABLE metric_chunks")
    run.log_metric("loss", 2.0)
    raised: list[BaseException] = []

    def log_fails() -> bool:
        try:
            run.log_metric("loss", 3.0)
        except BackendUnavailable as exc:
            raised.append(exc)
            return True
        return False

    wait_until(log_fails)
    assert "cannot write logged values to the metadata store" in str(raised[0])
    with pytest.raises(BackendUnavailable, match="kept in memory and retried"):
        run.finish()
    workspace.close()


def test_a_param_changed_behind_the_runs_back_is_reported(
    workspace: Workspace, settings: Settings
) -> None:
    run = workspace.start_run("exp")
    workspace.flush()
    with Workspace.open(settings) as other:
        other.metadata.log_batch(run.id, params={"lr": "0.1"})
    run.log_param("lr", 0.2)
    run.log_metric("loss", 1.0)
    run.finish()
    with pytest.raises(ImmutableValue, match=r"0\.1.*0\.2|0\.2.*0\.1"):
        workspace.flush()
    found = workspace.get_run(run.id)
    assert found.params == {"lr": "0.1"}
    assert found.status is RunStatus.FINISHED  # the refused values did not cost the run its end
    assert found.metrics == {}


def test_one_runs_refused_values_do_not_cost_other_runs_theirs(
    workspace: Workspace, settings: Settings
) -> None:
    bad = workspace.start_run("exp")
    workspace.flush()
    with Workspace.open(settings) as other:
        other.metadata.log_batch(bad.id, params={"lr": "0.1"})
    good = workspace.start_run("exp", params={"lr": 0.2})
    good.log_metric("loss", 1.0)
    bad.log_param("lr", 0.2)
    bad.log_metric("loss", 2.0)
    later = workspace.start_run("exp", parent=good.id)
    later.log_metric("loss", 3.0)
    for run in (later, bad, good):
        run.finish()
    with pytest.raises(ImmutableValue, match=f"run '{bad.id}'"):
        workspace.flush()
    workspace.flush()  # reported once
    for run, metrics in ((good, {"loss": 1.0}), (later, {"loss": 3.0}), (bad, {})):
        found = workspace.get_run(run.id)
        assert (found.status, found.metrics) == (RunStatus.FINISHED, metrics)
    assert workspace.get_run(later.id).parent_id == good.id
    assert workspace.get_run(good.id).params == {"lr": "0.2"}


def test_the_writer_heartbeats_live_runs(simulated: Settings, wait_until: Wait) -> None:
    clock = SimulatedClock(simulated.clock_state_file)
    with Workspace.open(simulated) as workspace, Workspace.open(simulated) as observer:
        run = workspace.start_run("exp")
        started = workspace.get_run(run.id).heartbeat_at
        clock.advance(timedelta(minutes=5))
        wait_until(
            lambda: observer.metadata.get_run(run.id).heartbeat_at > started + timedelta(minutes=4)
        )
        assert observer.reap_stale_runs() == []
        assert observer.get_run(run.id).status is RunStatus.RUNNING
        run.finish()
        workspace.flush()  # the end is buffered like everything else; another reader waits
        assert observer.get_run(run.id).status is RunStatus.FINISHED


def test_close_ends_open_runs_and_writes_everything(settings: Settings) -> None:
    workspace = Workspace.open(settings)
    run = workspace.start_run("exp")
    for step in range(1000):
        run.log_metric("loss", float(step), step=step)
    workspace.close()
    workspace.close()
    with Workspace.open(settings) as again:
        found = again.get_run(run.id)
        assert found.status is RunStatus.FINISHED
        assert len(found.metric_history("loss")) == 1000


def test_a_failure_to_record_the_end_is_noted_on_the_users_exception(
    settings: Settings, wait_until: Wait
) -> None:
    quick = settings.tracking.model_copy(update={"flush_interval_s": 0.05})
    workspace = Workspace.open(settings.model_copy(update={"tracking": quick}))
    run = workspace.start_run("exp")
    with sqlite3.connect(settings.workspace_dir / "mlcycle.db") as conn:
        conn.execute("DROP TABLE metric_chunks")

    def train() -> None:
        with run:
            run.log_metric("loss", 1.0)
            raise ValueError("diverged")

    with pytest.raises(ValueError, match="diverged") as raised:
        train()
    assert any("could not record the end of run" in note for note in raised.value.__notes__)
    assert workspace.get_run(run.id).status is RunStatus.FAILED
    workspace.close()
