"""The contract every metadata store backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``store`` fixture that
returns a fresh, empty store; the tests use only the ``MetadataStore``
Protocol, so a REST client for a team server can run the same suite::

    class TestSqliteMetadataStore(MetadataStoreContract):
        @pytest.fixture
        def store(self, tmp_path: Path) -> Iterator[MetadataStore]:
            store = open_metadata_store(f"sqlite:///{tmp_path}/mlcycle.db")
            yield store
            store.close()
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import AlreadyExists, ImmutableValue, NotFound, ValidationFailed
from mlcycle.ids import Digest, RunId, new_id
from mlcycle.store._protocols import MetadataStore
from mlcycle.store._records import (
    ArtifactRecord,
    Environment,
    Experiment,
    MetricPoint,
    Run,
    RunEnd,
    RunError,
    RunStart,
    RunStatus,
    RunValues,
    WriteBatch,
    WriteOperation,
)

__all__ = ["MetadataStoreContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
BAD_KEYS = ["", " rmse", "rmse ", "rmse!", "a" * 251, "métrique", "x;drop"]
DIGEST = Digest("sha256:" + "ab" * 32)


def _experiment(store: MetadataStore, name: str = "bike-demand") -> Experiment:
    return store.ensure_experiment(name, actor="ana")


def _run(
    store: MetadataStore,
    name: str = "gbm",
    *,
    parent_id: RunId | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    git_commit: str | None = None,
    git_dirty: bool | None = None,
    command: str | None = None,
    environment_digest: Digest | None = None,
) -> Run:
    return store.create_run(
        experiment_id=_experiment(store).id,
        name=name,
        actor="ana",
        start_time=T0,
        parent_id=parent_id,
        params=params,
        tags=tags,
        git_commit=git_commit,
        git_dirty=git_dirty,
        command=command,
        environment_digest=environment_digest,
    )


def _points(key: str, *values: float) -> list[MetricPoint]:
    return [MetricPoint(key, v, step, 1000.0 + step) for step, v in enumerate(values)]


class MetadataStoreContract:
    """Behaviour every ``MetadataStore`` backend shares; subclasses provide ``store``."""

    # -- experiments -------------------------------------------------------------

    def test_ensure_experiment_creates_once(self, store: MetadataStore) -> None:
        first = store.ensure_experiment("bike-demand", actor="ana")
        again = store.ensure_experiment("bike-demand", actor="bob")
        assert again == first
        assert first.actor == "ana"
        assert store.get_experiment("bike-demand") == first
        assert store.get_experiment(first.id) == first
        created = store.read_events(types=["experiment.created"])
        assert [event.payload["name"] for event in created] == ["bike-demand"]

    def test_list_experiments_oldest_first(self, store: MetadataStore) -> None:
        names = ["b", "a", "c"]
        for name in names:
            store.ensure_experiment(name, actor="ana")
        assert [experiment.name for experiment in store.list_experiments()] == names

    def test_unknown_experiment_is_named(self, store: MetadataStore) -> None:
        with pytest.raises(NotFound, match="no experiment 'nope'"):
            store.get_experiment("nope")

    def test_experiment_name_must_not_be_empty(self, store: MetadataStore) -> None:
        with pytest.raises(ValidationFailed, match="experiment name"):
            store.ensure_experiment("  ", actor="ana")

    # -- runs ----------------------------------------------------------------------

    def test_create_run_round_trips(self, store: MetadataStore) -> None:
        run = _run(
            store,
            params={"model": "gbm", "lr": "0.1"},
            tags={"owner": "ana"},
            git_commit="abc123",
            git_dirty=True,
            command="train.py --fast",
            environment_digest=DIGEST,
        )
        loaded = store.get_run(run.id)
        assert loaded == run
        assert loaded.status is RunStatus.RUNNING
        assert loaded.start_time == T0
        assert loaded.heartbeat_at == T0
        assert loaded.end_time is None
        assert loaded.experiment_name == "bike-demand"
        assert loaded.params == {"model": "gbm", "lr": "0.1"}
        assert loaded.tags == {"owner": "ana"}
        assert (loaded.git_commit, loaded.git_dirty, loaded.command) == (
            "abc123",
            True,
            "train.py --fast",
        )
        started = store.read_events(types=["run.started"])
        assert [(event.subject, event.actor) for event in started] == [(f"run:{run.id}", "ana")]

    def test_run_ids_are_unique_and_sortable(self, store: MetadataStore) -> None:
        ids = [_run(store, name=f"r{i}").id for i in range(20)]
        assert len(set(ids)) == 20
        assert sorted(ids) == ids

    def test_nested_run_names_its_parent(self, store: MetadataStore) -> None:
        parent = _run(store, name="sweep")
        child = _run(store, name="trial", parent_id=parent.id)
        assert store.get_run(child.id).parent_id == parent.id

    def test_unknown_parent_is_refused(self, store: MetadataStore) -> None:
        with pytest.raises(NotFound, match="NOPARENT"):
            _run(store, parent_id=RunId("NOPARENT"))

    def test_unknown_run_names_the_id(self, store: MetadataStore) -> None:
        with pytest.raises(NotFound, match="no run '01NOSUCHRUN'"):
            store.get_run("01NOSUCHRUN")

    def test_finish_run_keeps_the_error(self, store: MetadataStore) -> None:
        run = _run(store)
        error = RunError("ValueError", "bad lr", "Traceback...\nValueError: bad lr")
        end = T0 + timedelta(minutes=5)
        done = store.finish_run(run.id, status=RunStatus.FAILED, end_time=end, error=error)
        assert done.status is RunStatus.FAILED
        assert done.error == error
        assert done.end_time == end
        assert store.get_run(run.id) == done
        failed = store.read_events(types=["run.failed"])
        assert [event.payload["error_type"] for event in failed] == ["ValueError"]

    def test_a_finished_run_cannot_finish_again(self, store: MetadataStore) -> None:
        run = _run(store)
        store.finish_run(run.id, status=RunStatus.FINISHED, end_time=T0)
        with pytest.raises(ValidationFailed, match="already finished"):
            store.finish_run(run.id, status=RunStatus.KILLED, end_time=T0)
        with pytest.raises(ValidationFailed, match="not running"):
            store.finish_run(_run(store).id, status=RunStatus.RUNNING, end_time=T0)

    def test_stale_runs_are_killed_and_keep_their_data(self, store: MetadataStore) -> None:
        stale, alive, done = _run(store, name="stale"), _run(store, name="alive"), _run(store)
        store.log_batch(stale.id, metrics=_points("loss", 3.0, 2.0), params={"p": "1"})
        store.finish_run(done.id, status=RunStatus.FINISHED, end_time=T0)
        store.heartbeat([stale.id, alive.id], at=T0 + timedelta(seconds=10))
        store.heartbeat([alive.id], at=T0 + timedelta(seconds=100))
        reaped = store.reap_stale_runs(
            older_than=T0 + timedelta(seconds=50), at=T0 + timedelta(seconds=110)
        )
        assert reaped == [stale.id]
        killed = store.get_run(stale.id)
        assert killed.status is RunStatus.KILLED
        assert killed.end_time == T0 + timedelta(seconds=10)
        assert killed.metrics == {"loss": 2.0}
        assert killed.params == {"p": "1"}
        assert len(store.metric_history(stale.id, "loss")) == 2
        assert store.get_run(alive.id).status is RunStatus.RUNNING
        assert store.get_run(done.id).status is RunStatus.FINISHED
        events = store.read_events(types=["run.killed"])
        assert [event.subject for event in events] == [f"run:{stale.id}"]
        assert store.reap_stale_runs(older_than=T0 + timedelta(seconds=50), at=T0) == []

    def test_set_seed(self, store: MetadataStore) -> None:
        run = _run(store)
        store.set_seed(run.id, 42)
        assert store.get_run(run.id).seed == 42

    # -- metrics, params, tags ---------------------------------------------------

    def test_metric_history_and_latest_value(self, store: MetadataStore) -> None:
        run = _run(store)
        store.log_batch(run.id, metrics=[MetricPoint("rmse", 40.0, 5, 10.0)])
        store.log_batch(run.id, metrics=[MetricPoint("rmse", 50.0, 2, 20.0)])  # older step
        store.log_batch(run.id, metrics=[MetricPoint("rmse", 45.0, 5, 30.0)])  # same step, later
        history = store.metric_history(run.id, "rmse")
        assert [(p.step, p.value) for p in history] == [(2, 50.0), (5, 40.0), (5, 45.0)]
        assert store.get_run(run.id).metrics == {"rmse": 45.0}
        assert store.metric_history(run.id, "never-logged") == []

    def test_nan_and_infinity_are_kept(self, store: MetadataStore) -> None:
        run = _run(store)
        points = [
            MetricPoint("a", math.nan, 0, 1.0),
            MetricPoint("b", math.inf, 0, 1.0),
            MetricPoint("c", -math.inf, 0, 1.0),
        ]
        store.log_batch(run.id, metrics=points)
        latest = store.get_run(run.id).metrics
        assert math.isnan(latest["a"])
        assert (latest["b"], latest["c"]) == (math.inf, -math.inf)
        assert math.isnan(store.metric_history(run.id, "a")[0].value)

    def test_non_numeric_metric_names_the_key(self, store: MetadataStore) -> None:
        run = _run(store)
        with pytest.raises(TypeError, match="metric 'acc'"):
            store.log_batch(run.id, metrics=[MetricPoint("acc", "high", 0, 1.0)])  # type: ignore[arg-type]

    def test_params_are_immutable(self, store: MetadataStore) -> None:
        run = _run(store, params={"lr": "0.1"})
        store.log_batch(run.id, params={"lr": "0.1", "depth": "3"})  # same value again: fine
        with pytest.raises(ImmutableValue, match=r"'lr'.*'0\.1'.*'0\.2'"):
            store.log_batch(
                run.id,
                params={"lr": "0.2", "new": "x"},
                tags={"t": "1"},
                metrics=_points("m", 1.0),
            )
        loaded = store.get_run(run.id)
        assert loaded.params == {"lr": "0.1", "depth": "3"}  # the whole batch was refused
        assert loaded.tags == {}
        assert loaded.metrics == {}

    def test_tags_can_change(self, store: MetadataStore) -> None:
        run = _run(store, tags={"stage": "dev"})
        store.log_batch(run.id, tags={"stage": "prod", "owner": "ana"})
        assert store.get_run(run.id).tags == {"stage": "prod", "owner": "ana"}

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_invalid_keys_are_refused(self, store: MetadataStore, key: str) -> None:
        run = _run(store)
        with pytest.raises(ValidationFailed, match="key"):
            store.log_batch(run.id, metrics=[MetricPoint(key, 1.0, 0, 1.0)])
        with pytest.raises(ValidationFailed, match="key"):
            store.log_batch(run.id, params={key: "1"})
        with pytest.raises(ValidationFailed, match="key"):
            store.log_batch(run.id, tags={key: "1"})
        assert store.get_run(run.id).metrics == {}

    def test_logging_to_an_unknown_run_names_it(self, store: MetadataStore) -> None:
        with pytest.raises(NotFound, match="NOSUCH"):
            store.log_batch(RunId("NOSUCH"), metrics=_points("m", 1.0))
        with pytest.raises(NotFound, match="NOSUCH"):
            store.metric_history(RunId("NOSUCH"), "m")

    def test_threads_log_into_one_store_without_losing_values(self, store: MetadataStore) -> None:
        runs = [_run(store, name=f"t{i}") for i in range(4)]
        errors: list[BaseException] = []

        def log(run: Run) -> None:
            try:
                for batch in range(10):
                    points = [
                        MetricPoint("loss", float(step), batch * 20 + step, 1.0)
                        for step in range(20)
                    ]
                    store.log_batch(run.id, metrics=points, tags={"batch": str(batch)})
            except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
                errors.append(exc)

        threads = [threading.Thread(target=log, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        for run in runs:
            assert len(store.metric_history(run.id, "loss")) == 200
            assert store.get_run(run.id).metrics == {"loss": 19.0}

    @settings(
        max_examples=25,
        deadline=None,
        # Each example makes its own run, so sharing the store fixture between examples,
        # and this method between the backends' subclasses, cannot leak state.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 5),
                st.floats(0, 10, allow_nan=False),
                st.floats(allow_nan=True, width=32),
            ),
            min_size=1,
            max_size=12,
        ),
        st.integers(1, 4),
    )
    def test_latest_metric_is_the_greatest_step_then_time(
        self, store: MetadataStore, points: list[tuple[int, float, float]], batches: int
    ) -> None:
        run = _run(store)
        logged = [MetricPoint("m", value, step, ts) for step, ts, value in points]
        size = math.ceil(len(logged) / batches)
        for start in range(0, len(logged), size):
            store.log_batch(run.id, metrics=logged[start : start + size])
        top = max((p.step, p.timestamp) for p in logged)
        expected = [p.value for p in logged if (p.step, p.timestamp) == top][-1]
        got = store.get_run(run.id).metrics["m"]
        assert got == expected or (math.isnan(got) and math.isnan(expected))
        assert len(store.metric_history(run.id, "m")) == len(logged)

    # -- batches -----------------------------------------------------------------

    def _start(
        self, store: MetadataStore, name: str, *, parent_id: RunId | None = None
    ) -> RunStart:
        inputs = [("env:sha256:ab", "environment")]
        if parent_id is not None:
            inputs.append((f"run:{parent_id}", "parent"))
        return RunStart(
            id=RunId(new_id()),
            experiment_id=_experiment(store).id,
            name=name,
            actor="ana",
            start_time=T0,
            parent_id=parent_id,
            seed=7,
            params={"lr": "0.1"},
            tags={"stage": "dev"},
            inputs=inputs,
        )

    def test_a_batch_starts_logs_and_ends_runs_in_order(self, store: MetadataStore) -> None:
        parent = self._start(store, "sweep")
        child = self._start(store, "trial", parent_id=parent.id)
        end = T0 + timedelta(minutes=1)
        store.apply(
            WriteBatch(
                [
                    parent,
                    child,
                    RunValues(child.id, metrics=_points("rmse", 3.0, 2.0), tags={"stage": "a"}),
                    RunValues(child.id, params={"depth": "3"}, tags={"stage": "b"}),
                    RunEnd(child.id, RunStatus.FAILED, end, RunError("E", "m", "tb")),
                    RunEnd(parent.id, RunStatus.FINISHED, end),
                ],
                heartbeats=[parent.id],
                heartbeat_at=end,
            )
        )
        loaded = store.get_run(child.id)
        assert (loaded.status, loaded.end_time, loaded.error) == (
            RunStatus.FAILED,
            end,
            RunError("E", "m", "tb"),
        )
        assert (loaded.parent_id, loaded.seed, loaded.experiment_name) == (
            parent.id,
            7,
            "bike-demand",
        )
        assert loaded.params == {"lr": "0.1", "depth": "3"}
        assert loaded.tags == {"stage": "b"}
        assert loaded.metrics == {"rmse": 2.0}
        assert store.get_run(parent.id).status is RunStatus.FINISHED
        events = [(event.type, event.subject) for event in store.read_events()[1:]]
        assert events == [
            ("run.started", f"run:{parent.id}"),
            ("lineage.edge_added", f"run:{parent.id}"),
            ("run.started", f"run:{child.id}"),
            ("lineage.edge_added", f"run:{child.id}"),
            ("lineage.edge_added", f"run:{child.id}"),
            ("run.failed", f"run:{child.id}"),
            ("run.finished", f"run:{parent.id}"),
        ]
        assert {edge.kind for edge in store.edges_into(f"run:{child.id}")} == {
            "environment",
            "parent",
        }

    def test_a_refused_batch_writes_nothing(self, store: MetadataStore) -> None:
        kept = self._start(store, "kept")
        store.apply(WriteBatch([kept]))
        fresh = self._start(store, "fresh")
        batches: list[list[WriteOperation]] = [
            [fresh, RunValues(kept.id, params={"lr": "0.2"})],
            [fresh, RunEnd(RunId("NOSUCH"), RunStatus.FINISHED, T0)],
            [fresh, RunValues(kept.id, metrics=[MetricPoint("bad key!", 1.0, 0, 1.0)])],
            [fresh, RunEnd(kept.id, RunStatus.KILLED, T0), RunEnd(kept.id, RunStatus.KILLED, T0)],
            [self._start(store, "orphan", parent_id=RunId("NOPARENT")), fresh],
        ]
        errors = (ImmutableValue, NotFound, ValidationFailed, ValidationFailed, NotFound)
        for operations, error in zip(batches, errors, strict=True):
            with pytest.raises(error):
                store.apply(WriteBatch(operations))
        with pytest.raises(NotFound, match=fresh.id):
            store.get_run(fresh.id)
        assert store.get_run(kept.id).status is RunStatus.RUNNING
        assert store.get_run(kept.id).params == {"lr": "0.1"}
        assert [event.type for event in store.read_events(types=["run.started"])] == ["run.started"]

    # -- search ------------------------------------------------------------------

    def test_search_filters_and_orders_by_latest_metric(self, store: MetadataStore) -> None:
        made = {}
        for name, rmse, model in [("a", 44.0, "gbm"), ("b", 41.0, "gbm"), ("c", 30.0, "lin")]:
            run = _run(store, name=name, params={"model": model})
            store.log_batch(run.id, metrics=[MetricPoint("rmse", 99.0, 0, 1.0)])
            store.log_batch(run.id, metrics=[MetricPoint("rmse", rmse, 1, 2.0)])
            made[name] = run.id
        other = store.ensure_experiment("other", actor="ana")
        store.create_run(experiment_id=other.id, name="z", actor="ana", start_time=T0)
        found = store.search_runs(
            experiments=["bike-demand"],
            where="metrics.rmse < 45 and params.model = 'gbm'",
            order_by=["metrics.rmse"],
        )
        assert [run.name for run in found] == ["b", "a"]
        assert found[0].metrics == {"rmse": 41.0}
        assert found[0].params == {"model": "gbm"}
        assert len(store.search_runs()) == 4
        assert [run.name for run in store.search_runs(order_by=["metrics.rmse"], limit=1)] == ["c"]
        assert [run.name for run in store.search_runs(order_by="metrics.rmse", limit=1)] == ["c"]
        page = store.search_runs(experiments=["bike-demand"], order_by=["name"], offset=1)
        assert [run.name for run in page] == ["b", "c"]

    def test_search_an_unknown_experiment_names_it(self, store: MetadataStore) -> None:
        with pytest.raises(NotFound, match="no experiment 'ghost'"):
            store.search_runs(experiments=["ghost"])

    def test_search_returns_nan_metrics(self, store: MetadataStore) -> None:
        run = _run(store)
        store.log_batch(run.id, metrics=[MetricPoint("loss", math.nan, 0, 1.0)])
        (found,) = store.search_runs(experiments=["bike-demand"])
        assert math.isnan(found.metrics["loss"])

    def test_search_injection_changes_nothing(self, store: MetadataStore) -> None:
        run = _run(store, params={"model": "gbm"})
        found = store.search_runs(where="params.model = 'x''; DROP TABLE runs; --'")
        assert found == []
        with pytest.raises(ValidationFailed):
            store.search_runs(where="metrics.rmse < 1; DROP TABLE runs")
        assert store.get_run(run.id).params == {"model": "gbm"}

    # -- environments and artifacts ----------------------------------------------

    def test_environments_are_stored_once(self, store: MetadataStore) -> None:
        env = Environment(DIGEST, "3.11.7", "Linux-x86_64", {"numpy": "2.4.6", "pandas": "3.1"})
        store.put_environment(env)
        store.put_environment(env)
        assert store.get_environment(DIGEST) == env
        with pytest.raises(NotFound, match="sha256:00"):
            store.get_environment(Digest("sha256:00"))

    def test_artifacts_are_indexed_by_name(self, store: MetadataStore) -> None:
        run = _run(store)
        record = ArtifactRecord(run.id, "report.html", DIGEST, 10, "text/html", T0)
        other = ArtifactRecord(run.id, "data/a.csv", DIGEST, 10, "text/csv", T0)
        store.record_artifact(record)
        store.record_artifact(other)
        assert store.list_artifacts(run.id) == [other, record]
        with pytest.raises(AlreadyExists, match=r"report\.html"):
            store.record_artifact(record)
        with pytest.raises(NotFound, match="NOSUCH"):
            store.list_artifacts(RunId("NOSUCH"))

    # -- events --------------------------------------------------------------------

    def test_events_read_after_a_position(self, store: MetadataStore) -> None:
        made = [
            store.append_event(
                "model.alias_moved" if i % 2 else "alert.fired",
                subject=f"models:/bike/{i}",
                actor="agent",
                time=T0 + timedelta(seconds=i),
                payload={"i": i, "nested": {"ok": True}},
            )
            for i in range(6)
        ]
        positions = [event.position for event in made]
        assert positions == sorted(positions)
        assert len(set(positions)) == 6
        assert store.read_events() == made
        assert store.read_events(since=made[2].position) == made[3:]
        assert store.read_events(since=made[0].position, limit=2) == made[1:3]
        assert store.read_events(types=["alert.fired"]) == made[0::2]
        assert store.read_events(since=made[-1].position) == []
        assert made[1].payload == {"i": 1, "nested": {"ok": True}}
        assert made[1].time == T0 + timedelta(seconds=1)

    @pytest.mark.parametrize("bad_type", ["", "Run.Finished", "finished", "run finished"])
    def test_event_type_is_checked(self, store: MetadataStore, bad_type: str) -> None:
        with pytest.raises(ValidationFailed, match="event type"):
            store.append_event(bad_type, subject="run:1", actor="a", time=T0)

    def test_cursors_remember_positions(self, store: MetadataStore) -> None:
        assert store.load_cursor("agent") == 0
        store.save_cursor("agent", 7)
        store.save_cursor("agent", 9)
        store.save_cursor("ui", 3)
        assert (store.load_cursor("agent"), store.load_cursor("ui")) == (9, 3)
        with pytest.raises(ValidationFailed):
            store.save_cursor("agent", -1)

    # -- lineage -----------------------------------------------------------------

    def test_edges_are_idempotent(self, store: MetadataStore) -> None:
        first = store.add_edge("data:/bike/3", "run:R1", kind="input", actor="ana", time=T0)
        again = store.add_edge(
            "data:/bike/3", "run:R1", kind="input", actor="bob", time=T0 + timedelta(days=1)
        )
        assert again == first
        store.add_edge("env:sha256:ab", "run:R1", kind="environment", actor="ana", time=T0)
        store.add_edge("run:R1", "models:/bike/1", kind="produced", actor="ana", time=T0)
        assert {edge.source for edge in store.edges_into("run:R1")} == {
            "data:/bike/3",
            "env:sha256:ab",
        }
        assert [edge.target for edge in store.edges_from("run:R1")] == ["models:/bike/1"]
        added = store.read_events(types=["lineage.edge_added"])
        assert len(added) == 3
        assert added[0].payload == {"source": "data:/bike/3", "target": "run:R1", "kind": "input"}

    def test_an_edge_to_deleted_data_is_removed_with_an_event(self, store: MetadataStore) -> None:
        store.add_edge("data-content:a", "monitor-reference:b", kind="ref", actor="ana", time=T0)
        store.add_edge("data-content:a", "monitor-reference:c", kind="ref", actor="ana", time=T0)
        assert store.remove_edge(
            "data-content:a", "monitor-reference:b", kind="ref", actor="bob", time=T0
        )
        assert [e.target for e in store.edges_from("data-content:a")] == ["monitor-reference:c"]
        assert store.edges_into("monitor-reference:b") == []
        assert not store.remove_edge(
            "data-content:a", "monitor-reference:b", kind="ref", actor="bob", time=T0
        )
        assert not store.remove_edge(
            "data-content:a", "monitor-reference:c", kind="other", actor="bob", time=T0
        )
        [removed] = store.read_events(types=["lineage.edge_removed"])
        assert (removed.subject, removed.actor) == ("monitor-reference:b", "bob")
        assert removed.payload == {
            "source": "data-content:a",
            "target": "monitor-reference:b",
            "kind": "ref",
        }

    def test_edge_references_are_checked(self, store: MetadataStore) -> None:
        with pytest.raises(ValidationFailed, match="reference"):
            store.add_edge("", "run:R1", kind="input", actor="ana", time=T0)
        with pytest.raises(ValidationFailed, match="kind"):
            store.add_edge("data:/a", "run:R1", kind="", actor="ana", time=T0)
