"""The Workspace facade: opening, finding, reaping, events, lineage and searching."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mlcycle.clock import SimulatedClock
from mlcycle.errors import NotFound, QuerySyntaxError, WorkspaceError
from mlcycle.settings import CONFIG_FILE, ClockSettings, Settings
from mlcycle.store import RunStatus
from mlcycle.track import BASE_COLUMNS
from mlcycle.workspace import Workspace


def test_open_creates_the_workspace_folder(settings: Settings) -> None:
    with Workspace.open(settings) as workspace:
        assert settings.workspace_dir.is_dir()
        assert workspace.actor == "tester"
        assert workspace.list_experiments() == []
        assert repr(workspace) == f"Workspace(home={str(settings.home)!r})"


def test_an_unwritable_workspace_is_named_with_the_fix(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    (tmp_path / ".mlcycle").write_text("not a folder")
    with pytest.raises(
        WorkspaceError, match=r"cannot write the workspace folder .*\.mlcycle.*writable"
    ):
        Workspace.open(settings)
    assert (tmp_path / ".mlcycle").read_text() == "not a folder"


def test_a_read_only_workspace_folder_is_refused(unwritable_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match=str(unwritable_dir)):
        Workspace.open(Settings(home=unwritable_dir))
    assert list(unwritable_dir.iterdir()) == []


def test_find_walks_up_and_initialises_when_there_is_no_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLCYCLE_HOME", raising=False)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with Workspace.find(fresh) as workspace:
        assert workspace.settings.home == fresh.resolve()
        assert (fresh / CONFIG_FILE).is_file()
        assert (fresh / "pipelines").is_dir()
    deep = fresh / "notebooks" / "a" / "b"
    deep.mkdir(parents=True)
    with Workspace.find(deep) as workspace:
        assert workspace.settings.home == fresh.resolve()
    assert not (deep / CONFIG_FILE).exists()


def test_a_closed_workspace_says_so(settings: Settings) -> None:
    workspace = Workspace.open(settings)
    workspace.close()
    with pytest.raises(WorkspaceError, match="is closed"):
        workspace.start_run("exp")


def test_runs_whose_process_died_are_killed_when_runs_are_read(settings: Settings) -> None:
    simulated = settings.model_copy(update={"clock": ClockSettings(mode="simulated")})
    clock = SimulatedClock(simulated.clock_state_file)
    with Workspace.open(simulated) as workspace:
        alive = workspace.start_run("exp")
        alive.log_metric("loss", 0.5)
        experiment = workspace.metadata.ensure_experiment("exp", actor="ghost")
        orphan = workspace.metadata.create_run(
            experiment_id=experiment.id, name="orphan", actor="ghost", start_time=clock.now()
        )
        workspace.metadata.log_batch(orphan.id, params={"lr": "0.1"})
        assert workspace.get_run(orphan.id).status is RunStatus.RUNNING
        clock.advance(timedelta(seconds=simulated.tracking.stale_after_s + 5))
        frame = workspace.search_runs("exp", order_by="name")
        statuses = dict(zip(frame["run_id"], frame["status"], strict=True))
        assert statuses == {orphan.id: "killed", alive.id: "running"}
        found = workspace.get_run(orphan.id)
        assert found.status is RunStatus.KILLED
        assert found.params == {"lr": "0.1"}
        alive.finish()
        assert workspace.get_run(alive.id).status is RunStatus.FINISHED
        assert workspace.reap_stale_runs() == []


def test_search_returns_a_dataframe_with_the_agreed_columns(settings: Settings) -> None:
    with Workspace.open(settings) as workspace:
        assert list(workspace.search_runs().columns) == list(BASE_COLUMNS)
        for model, rmse in [("gbm", 41.2), ("linear", 52.0), ("gbm", 39.5)]:
            with workspace.start_run("bike", params={"model": model}, tags={"owner": "ana"}) as run:
                run.log_metric("rmse", rmse)
        with workspace.start_run("other") as other:
            other.log_metric("rmse", 1.0)
        frame = workspace.search_runs(
            "bike", where="metrics.rmse < 45 and params.model = 'gbm'", order_by="metrics.rmse"
        )
        columns = list(frame.columns)
        assert columns[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
        groups = [column.split(".", 1)[0] for column in columns[len(BASE_COLUMNS) :]]
        assert groups == sorted(groups, key=["params", "metrics", "tags"].index)
        assert {"params.model", "metrics.rmse", "tags.owner"} <= set(columns)
        assert frame["metrics.rmse"].tolist() == [39.5, 41.2]
        assert set(frame["experiment"]) == {"bike"}
        assert str(frame["start_time"].dtype).startswith("datetime64")
        both = workspace.search_runs(["bike", "other"], order_by=["metrics.rmse DESC"], limit=2)
        assert both["metrics.rmse"].tolist() == [52.0, 41.2]
        with pytest.raises(QuerySyntaxError):
            workspace.search_runs(where="metrics.rmse < 1; DROP TABLE runs")
        assert len(workspace.search_runs()) == 4


def test_unknown_run_ids_are_named(workspace_settings: Settings) -> None:
    with (
        Workspace.open(workspace_settings) as workspace,
        pytest.raises(NotFound, match="NOSUCHRUN"),
    ):
        workspace.get_run("NOSUCHRUN")


def test_events_and_lineage(settings: Settings) -> None:
    with Workspace.open(settings) as workspace:
        with workspace.start_run("exp") as parent, workspace.start_run("exp") as child:
            pass
        events = workspace.events(types=["run.started", "run.finished"])
        assert [(event.type, event.subject) for event in events] == [
            ("run.started", f"run:{parent.id}"),
            ("run.started", f"run:{child.id}"),
            ("run.finished", f"run:{child.id}"),
            ("run.finished", f"run:{parent.id}"),
        ]
        later = workspace.events(since=events[1].position, types=["run.finished"])
        assert [event.subject for event in later] == [f"run:{child.id}", f"run:{parent.id}"]
        tree = workspace.lineage(f"run:{child.id}")
        kinds = {edge.kind for edge in workspace.metadata.edges_into(f"run:{child.id}")}
        assert kinds == {"environment", "parent"}
        text = "\n".join(tree.lines())
        assert f"run:{parent.id}" in text
        assert "env:sha256:" in text
        assert workspace.lineage(child.id).to_dict() == tree.to_dict()


@pytest.fixture
def workspace_settings(settings: Settings) -> Settings:
    return settings


def test_a_bad_artifact_store_closes_the_metadata_store_again(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the artifact folder should be")
    settings = Settings(home=tmp_path, store={"artifacts_url": str(blocker / "artifacts")})
    with pytest.raises(WorkspaceError):
        Workspace.open(settings)
