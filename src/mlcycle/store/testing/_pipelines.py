"""The contract every ``PipelineLog`` backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``log`` fixture that
returns a fresh, empty store implementing ``PipelineLog``, ``EventLog`` and
``LineageGraph``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest, ExperimentId, RunId, new_id
from mlcycle.store._pipeline_records import (
    PipelineRun,
    PipelineStatus,
    StepOutput,
    StepRun,
    StepStatus,
)
from mlcycle.store._records import RunStart, WriteBatch

__all__ = ["PipelineLogContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
CODE = Digest("sha256:" + "c0" * 32)
OUT = StepOutput(
    digest=Digest("sha256:" + "aa" * 32), serializer="json", type="builtins.dict", size=12
)
INLINE = StepOutput(
    digest=Digest("sha256:" + "ab" * 32),
    serializer="json",
    type="builtins.int",
    size=1,
    inline="7",
)


def _run(**changes: Any) -> PipelineRun:  # Any: field values
    record = PipelineRun(
        id=new_id(),
        pipeline="training",
        target="pipelines.py:training",
        status=PipelineStatus.RUNNING,
        params={"n_estimators": 200, "data": "bike/3"},
        param_sources={"n_estimators": "run", "data": "code"},
        datasets={"data": "data:/bike/3"},
        code_digest=CODE,
        executor="local",
        actor="ana",
        created_at=T0,
        heartbeat_at=T0,
    )
    return replace(record, **changes)


def _steps(run: PipelineRun) -> list[StepRun]:
    return [
        StepRun(pipeline_run_id=run.id, step="load", position=0, status=StepStatus.PENDING),
        StepRun(
            pipeline_run_id=run.id,
            step="train",
            position=1,
            status=StepStatus.PENDING,
            upstream=("load",),
            params={"n_estimators": 200},
        ),
    ]


class PipelineLogContract:
    """Tests every pipeline log must pass; subclasses provide ``log``."""

    def test_a_run_is_recorded_with_steps_lineage_and_event(self, log: Any) -> None:
        run = _run()
        stored = log.create_pipeline_run(run, _steps(run))
        assert stored == run
        assert log.get_pipeline_run(run.id) == run
        assert [s.step for s in log.list_step_runs(run.id)] == ["load", "train"]
        assert log.list_step_runs(run.id)[1].upstream == ("load",)
        edges = log.edges_into(run.ref)
        assert [(e.source, e.kind) for e in edges] == [("data:/bike/3", "input")]
        events = log.read_events(types=["pipeline.started"])
        assert [(e.subject, e.payload["params"]["n_estimators"]) for e in events] == [
            (run.ref, 200)
        ]

    def test_the_same_id_twice_is_refused(self, log: Any) -> None:
        run = _run()
        log.create_pipeline_run(run, [])
        with pytest.raises(ValidationFailed, match=run.id):
            log.create_pipeline_run(run, [])

    def test_unknown_ids_name_the_id(self, log: Any) -> None:
        with pytest.raises(NotFound, match="no pipeline run 'nope'"):
            log.get_pipeline_run("nope")
        with pytest.raises(NotFound, match="nope"):
            log.list_step_runs("nope")
        run = _run()
        log.create_pipeline_run(run, [])
        ghost = StepRun(pipeline_run_id=run.id, step="ghost", position=0, status=StepStatus.RUNNING)
        with pytest.raises(NotFound, match="no step 'ghost'"):
            log.save_step_run(ghost)

    def test_step_state_round_trips(self, log: Any) -> None:
        run = _run()
        log.create_pipeline_run(run, _steps(run))
        done = replace(
            _steps(run)[0],
            status=StepStatus.COMPLETED,
            inputs={"df": Digest("sha256:" + "bb" * 32)},
            outputs={"return": OUT, "extra": INLINE},
            code_digest=CODE,
            cache_key="sha256:" + "dd" * 32,
            attempts=2,
            started_at=T0,
            ended_at=T0 + timedelta(seconds=2),
            duration_s=2.0,
            run_id=RunId(new_id()),
            logs="hello\n",
        )
        log.save_step_run(done)
        assert log.list_step_runs(run.id)[0] == done
        assert log.find_cached_step(done.cache_key) == done
        assert log.find_cached_step("sha256:" + "ee" * 32) is None

    def test_several_steps_are_saved_together_or_not_at_all(self, log: Any) -> None:
        run = _run()
        log.create_pipeline_run(run, _steps(run))
        load, train = _steps(run)
        done = replace(load, status=StepStatus.COMPLETED, outputs={"return": OUT})
        started = replace(train, status=StepStatus.RUNNING, started_at=T0)
        log.save_step_runs([done, started])
        assert log.list_step_runs(run.id) == [done, started]
        ghost = StepRun(pipeline_run_id=run.id, step="ghost", position=2, status=StepStatus.FAILED)
        with pytest.raises(NotFound, match="no step 'ghost'"):
            log.save_step_runs([replace(started, status=StepStatus.FAILED), ghost])
        assert log.list_step_runs(run.id) == [done, started]  # the first was rolled back
        log.save_step_runs([])

    def test_a_tracking_start_is_saved_with_the_steps_or_not_at_all(self, log: Any) -> None:
        run = _run()
        log.create_pipeline_run(run, _steps(run))
        experiment = log.ensure_experiment("pipelines", actor="ana")

        def start(name: str) -> RunStart:
            return RunStart(
                id=RunId(new_id()),
                experiment_id=experiment.id,
                name=name,
                actor="ana",
                start_time=T0,
            )

        load, train = _steps(run)
        first = start("load")
        started = replace(load, status=StepStatus.RUNNING, started_at=T0, run_id=first.id)
        log.save_step_runs([started], tracking=WriteBatch([first]))
        assert log.get_run(first.id).name == "load"
        assert log.list_step_runs(run.id) == [started, train]
        ghost = StepRun(pipeline_run_id=run.id, step="ghost", position=2, status=StepStatus.FAILED)
        second = start("ghost")
        with pytest.raises(NotFound, match="no step 'ghost'"):
            log.save_step_runs([ghost], tracking=WriteBatch([second]))
        with pytest.raises(NotFound):
            log.get_run(second.id)  # the run's start was rolled back with the step
        nowhere = replace(start("train"), experiment_id=ExperimentId("no-such-experiment"))
        ran = replace(train, status=StepStatus.RUNNING, started_at=T0, run_id=nowhere.id)
        with pytest.raises(NotFound, match="no experiment"):
            log.save_step_runs([ran], tracking=WriteBatch([nowhere]))
        assert log.list_step_runs(run.id) == [started, train]  # the step waits as it was

    def test_only_completed_steps_serve_the_cache(self, log: Any) -> None:
        run = _run()
        log.create_pipeline_run(run, _steps(run))
        key = "sha256:" + "12" * 32
        failed = replace(_steps(run)[0], status=StepStatus.FAILED, cache_key=key)
        log.save_step_run(failed)
        assert log.find_cached_step(key) is None

    def test_ending_records_the_event_and_lists_newest_first(self, log: Any) -> None:
        first, second = _run(), _run(pipeline="other")
        for run in (first, second):
            log.create_pipeline_run(run, [])
        ended = replace(first, status=PipelineStatus.COMPLETED, ended_at=T0 + timedelta(1))
        assert log.update_pipeline_run(ended) == ended
        failed = replace(second, status=PipelineStatus.FAILED, error="boom", ended_at=T0)
        log.update_pipeline_run(failed)
        assert [e.type for e in log.read_events(types=["pipeline.finished"])] == [
            "pipeline.finished"
        ]
        assert log.read_events(types=["pipeline.failed"])[0].payload["error"] == "boom"
        assert [r.id for r in log.list_pipeline_runs()] == [second.id, first.id]
        assert [r.id for r in log.list_pipeline_runs(pipeline="training")] == [first.id]

    def test_stale_runs_are_reaped_as_killed_with_their_running_steps(self, log: Any) -> None:
        stale, alive = _run(), _run()
        for run in (stale, alive):
            log.create_pipeline_run(run, _steps(run))
        log.save_step_run(replace(_steps(stale)[0], status=StepStatus.RUNNING))
        log.heartbeat_pipeline_run(alive.id, at=T0 + timedelta(seconds=60))
        reaped = log.reap_stale_pipeline_runs(older_than=T0 + timedelta(seconds=30), at=T0)
        assert reaped == [stale.id]
        assert log.get_pipeline_run(stale.id).status is PipelineStatus.KILLED
        assert log.get_pipeline_run(alive.id).status is PipelineStatus.RUNNING
        statuses = [s.status for s in log.list_step_runs(stale.id)]
        assert statuses == [StepStatus.KILLED, StepStatus.PENDING]
        killed = log.read_events(types=["pipeline.failed"])
        assert [e.payload["status"] for e in killed] == ["killed"]

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        params=st.dictionaries(
            st.text(min_size=1, max_size=10),
            st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20), st.booleans()),
            max_size=5,
        )
    )
    def test_params_round_trip(self, log: Any, params: dict[str, Any]) -> None:
        run = _run(params=params)
        log.create_pipeline_run(run, [])
        assert log.get_pipeline_run(run.id).params == params
