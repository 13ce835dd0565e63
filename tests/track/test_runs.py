"""Runs: statuses, nesting, immutable params, values, steps and seeds, on a real SQLite store."""

from __future__ import annotations

import math
import random
import threading

import numpy as np
import pytest

from mlcycle.errors import ImmutableValue, NotFound, ValidationFailed
from mlcycle.ids import RunId
from mlcycle.store import RunStatus, WriteBatch
from mlcycle.track import current_run, seed_everything
from mlcycle.workspace import Workspace


def test_a_normal_exit_finishes_the_run(workspace: Workspace) -> None:
    with workspace.start_run("exp", name="first", params={"model": "gbm"}) as run:
        assert current_run() is run
        run.log_metric("rmse", 41.2, step=3)
        run.log_metrics({"mae": 30.1, "r2": 0.81}, step=3)
        run.set_tags({"owner": "ana"})
    assert current_run() is None
    found = workspace.get_run(run.id)
    assert found.status is RunStatus.FINISHED
    assert found.name == "first"
    assert found.end_time is not None
    assert found.params == {"model": "gbm"}
    assert found.metrics == {"rmse": 41.2, "mae": 30.1, "r2": 0.81}
    assert found.tags["owner"] == "ana"
    assert [point.step for point in found.metric_history("rmse")] == [3]


def test_an_exception_fails_the_run_and_is_reraised(workspace: Workspace) -> None:
    run = workspace.start_run("exp")

    def train() -> None:
        with run:
            run.log_metric("before", 1.0)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        train()
    found = workspace.get_run(run.id)
    assert found.status is RunStatus.FAILED
    assert found.error is not None
    assert found.error.type == "ZeroDivisionError"
    assert found.error.message == "division by zero"
    assert "_ = 1 / 0" in found.error.traceback
    assert found.metrics == {"before": 1.0}


def test_ctrl_c_kills_the_run(workspace: Workspace) -> None:
    with pytest.raises(KeyboardInterrupt), workspace.start_run("exp") as run:
        raise KeyboardInterrupt
    found = workspace.get_run(run.id)
    assert found.status is RunStatus.KILLED
    assert found.error is not None
    assert found.error.type == "KeyboardInterrupt"


def test_sys_exit_zero_finishes_and_other_codes_fail(workspace: Workspace) -> None:
    with pytest.raises(SystemExit), workspace.start_run("exp") as ok:
        raise SystemExit(0)
    with pytest.raises(SystemExit), workspace.start_run("exp") as bad:
        raise SystemExit(2)
    assert workspace.get_run(ok.id).status is RunStatus.FINISHED
    assert workspace.get_run(bad.id).status is RunStatus.FAILED


def test_finish_twice_and_logging_after_the_end(workspace: Workspace) -> None:
    run = workspace.start_run("exp")
    first = run.finish()
    assert run.finish() == first
    with pytest.raises(ValidationFailed, match=f"run {run.id} has ended"):
        run.log_metric("rmse", 1.0)
    with pytest.raises(ValidationFailed, match="has ended"):
        run.log_params({"a": 1})
    with pytest.raises(ValidationFailed, match="has ended"):
        run.set_tag("a", 1)
    with pytest.raises(ValidationFailed, match="has ended"):
        run.log_artifact(b"x", name="x.bin")


def test_nested_runs_are_children(workspace: Workspace) -> None:
    with workspace.start_run("exp") as parent:
        with workspace.start_run("exp") as child, workspace.start_run("exp") as grandchild:
            pass
        sibling = workspace.start_run("exp", parent=child.id)
        sibling.finish()
    assert workspace.get_run(child.id).parent_id == parent.id
    assert workspace.get_run(grandchild.id).parent_id == child.id
    assert workspace.get_run(sibling.id).parent_id == child.id
    assert workspace.get_run(parent.id).parent_id is None
    tree = workspace.lineage(f"run:{grandchild.id}")
    assert f"run:{parent.id}" in "\n".join(tree.lines())


def test_an_unknown_parent_is_named(workspace: Workspace) -> None:
    with pytest.raises(NotFound, match="NOPE"):
        workspace.start_run("exp", parent="NOPE")


def test_runs_in_other_threads_are_not_children(workspace: Workspace) -> None:
    ids: list[str] = []
    with workspace.start_run("exp"):
        thread = threading.Thread(target=lambda: ids.append(workspace.start_run("exp").finish().id))
        thread.start()
        thread.join(30)
    assert workspace.get_run(ids[0]).parent_id is None


def test_params_are_immutable_at_the_call_site(workspace: Workspace) -> None:
    with workspace.start_run("exp", params={"lr": 0.1}) as run:
        run.log_param("lr", 0.1)
        run.log_param("depth", 3)
        with pytest.raises(
            ImmutableValue, match=r"param 'lr' .* already '0\.1'; cannot change it to '0\.2'"
        ):
            run.log_param("lr", 0.2)
        with pytest.raises(ImmutableValue, match=r"'3'.*'4'"):
            run.log_params({"other": 1, "depth": 4})
    assert workspace.get_run(run.id).params == {"lr": "0.1", "depth": "3"}


def test_nan_and_infinities_are_kept(workspace: Workspace) -> None:
    with workspace.start_run("exp") as run:
        run.log_metrics({"nan": math.nan, "up": math.inf, "down": -math.inf})
        run.log_metric("np", np.float32(0.5))
    found = workspace.get_run(run.id)
    assert math.isnan(found.metrics["nan"])
    assert found.metrics["up"] == math.inf
    assert found.metrics["down"] == -math.inf
    assert math.isnan(found.metric_history("nan")[0].value)
    frame = workspace.search_runs("exp")
    assert math.isnan(frame.loc[0, "metrics.nan"])
    assert frame.loc[0, "metrics.down"] == -math.inf


def test_bad_values_and_keys_raise_at_the_call(workspace: Workspace) -> None:
    with workspace.start_run("exp") as run:
        for bad in ["1.0", None, True]:
            with pytest.raises(TypeError, match="metric 'loss' must be a number"):
                run.log_metric("loss", bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed, match="invalid metric key 'lo\\$s'"):
            run.log_metric("lo$s", 1.0)
        with pytest.raises(ValidationFailed, match="must be a string"):
            run.log_metric(3, 1.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="dict of name to number"):
            run.log_metrics([1.0])  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed, match="experiment name"):
            workspace.start_run("")


def test_steps_count_up_per_key_unless_given(workspace: Workspace) -> None:
    with workspace.start_run("exp") as run:
        for value in (3.0, 2.0, 1.0):
            run.log_metric("loss", value)
        run.log_metric("loss", 0.5, step=np.int64(10))
        run.log_metric("loss", 0.4)
    history = workspace.get_run(run.id).metric_history("loss")
    assert [(p.step, p.value) for p in history] == [
        (0, 3.0),
        (1, 2.0),
        (2, 1.0),
        (10, 0.5),
        (11, 0.4),
    ]


def test_metric_history_sees_what_was_just_logged(workspace: Workspace) -> None:
    with workspace.start_run("exp") as run:
        for step in range(500):
            run.log_metric("loss", 1 / (step + 1), step=step)
        assert len(workspace.get_run(run.id).metric_history("loss")) == 500


def test_seed_is_set_and_recorded(workspace: Workspace) -> None:
    with workspace.start_run("exp") as run:
        seed_everything(42)
        first = (random.random(), np.random.rand())
    seed_everything(42)
    assert (random.random(), np.random.rand()) == first
    with workspace.start_run("exp") as later:
        pass
    with workspace.start_run("exp") as after:
        pass
    assert workspace.get_run(run.id).seed == 42
    assert workspace.get_run(later.id).seed == 42
    assert workspace.get_run(after.id).seed is None
    with pytest.raises(ValidationFailed, match="seed -1 must be an int"):
        seed_everything(-1)


def test_eight_threads_with_their_own_runs(workspace: Workspace) -> None:
    ids: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            with workspace.start_run("threads", params={"thread": index}) as run:
                for step in range(300):
                    run.log_metric("value", index * 1000 + step, step=step)
            ids[index] = run.id
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for index, run_id in ids.items():
        found = workspace.get_run(run_id)
        assert found.status is RunStatus.FINISHED
        assert found.parent_id is None
        values = [point.value for point in found.metric_history("value")]
        assert values == [float(index * 1000 + step) for step in range(300)]
    assert len(ids) == 8


def test_a_stored_start_is_written_before_start_run_returns(workspace: Workspace) -> None:
    tracker = workspace.tracker
    with tracker.start_run("exp", name="quick") as parent:
        tracker.flush()
        child = tracker.start_run("exp", name="step", parent=parent.id, stored=True)
        found = workspace.metadata.get_run(child.id)  # the store itself: nothing settles
        assert (found.status, found.parent_id) == (RunStatus.RUNNING, parent.id)
        with child:
            child.log_metric("loss", 0.5)
    tracker.flush()
    ended = workspace.get_run(child.id)
    assert ended.status is RunStatus.FINISHED
    assert ended.metrics == {"loss": 0.5}


def test_a_start_handed_to_write_is_stored_by_the_caller(workspace: Workspace) -> None:
    tracker = workspace.tracker
    handed: list[RunId] = []

    def write(run_id: RunId, batch: WriteBatch) -> None:
        handed.append(run_id)
        workspace.metadata.apply(batch)  # the caller's own transaction would go here

    with tracker.start_run("exp", name="step", params={"lr": 0.1}, write=write) as run:
        assert handed == [run.id]
        found = workspace.metadata.get_run(run.id)  # stored before start_run returned
        assert (found.status, found.params) == (RunStatus.RUNNING, {"lr": "0.1"})
    tracker.flush()
    assert workspace.get_run(run.id).status is RunStatus.FINISHED

    def refuse(run_id: RunId, batch: WriteBatch) -> None:
        raise ValidationFailed("the caller's rows were refused")

    with pytest.raises(ValidationFailed, match="refused"):
        tracker.start_run("exp", name="lost", write=refuse)
    assert current_run() is None  # nothing was left running in this thread
    tracker.flush()
    assert list(workspace.search_runs("exp")["name"]) == ["step"]
