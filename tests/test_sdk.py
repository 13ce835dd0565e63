"""The module-level SDK: ``import mlcycle as mc`` acting on the working directory's workspace."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlcycle as mc
from mlcycle.settings import CONFIG_FILE


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder as the working directory; the default workspace is closed after."""
    for name in ("MLCYCLE_HOME", "MLCYCLE_STORE__METADATA_URL", "MLCYCLE_STORE__ARTIFACTS_URL"):
        monkeypatch.delenv(name, raising=False)
    mc.close()
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    mc.close()


def test_the_issue_example_works(project: Path) -> None:
    (project / "report.html").write_text("<p>ok</p>")
    with mc.start_run(
        experiment="bike-demand", params={"model": "gbm", "learning_rate": 0.1}
    ) as run:
        assert mc.active_run() is run
        run.log_metric("rmse", 41.2, step=3)
        run.log_metrics({"mae": 30.1, "r2": 0.81}, step=3)
        run.log_artifact("report.html")
        run.set_tags({"owner": "ana"})
        with mc.start_run("bike-demand") as child:
            pass
    assert mc.active_run() is None
    assert (project / CONFIG_FILE).is_file()
    runs = mc.search_runs(
        "bike-demand",
        where="metrics.rmse < 45 and params.model = 'gbm'",
        order_by="metrics.rmse",
        limit=100,
    )
    assert runs["run_id"].tolist() == [run.id]
    assert runs.loc[0, "params.learning_rate"] == "0.1"
    history = mc.get_run(run.id).metric_history("rmse")
    assert [(point.step, point.value) for point in history] == [(3, 41.2)]
    assert mc.get_run(child.id).parent_id == run.id
    assert [experiment.name for experiment in mc.list_experiments()] == ["bike-demand"]
    started = mc.events(types=["run.started"])
    assert [event.subject for event in started] == [f"run:{run.id}", f"run:{child.id}"]
    assert mc.events(since=started[-1].position, types=["run.started"]) == []
    assert f"run:{run.id}" in "\n".join(mc.lineage(f"run:{child.id}").lines())


def test_the_workspace_is_found_from_a_subfolder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mc.start_run("exp") as run:
        pass
    mc.close()
    monkeypatch.chdir(project / "notebooks")
    assert mc.current_workspace().settings.home == project.resolve()
    assert mc.get_run(run.id).experiment_name == "exp"


def test_seed_everything_before_a_run_is_recorded_on_it(project: Path) -> None:
    assert mc.seed_everything(7) == 7
    with mc.start_run("exp") as run:
        pass
    assert mc.get_run(run.id).seed == 7


def test_lazy_names() -> None:
    from mlcycle.track import ActiveRun, RunView
    from mlcycle.workspace import Workspace

    assert mc.Workspace is Workspace
    assert mc.ActiveRun is ActiveRun
    assert mc.RunView is RunView
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = mc.nope  # type: ignore[attr-defined]
    lazy = {
        "Workspace",
        "ActiveRun",
        "RunView",
        "step",
        "pipeline",
        "data",
        "monitor",
        "registry",
        "validate",
    }
    assert set(mc.__all__) <= set(dir(mc)) | lazy
    assert mc.step is __import__("mlcycle.pipeline", fromlist=["step"]).step


def test_import_mlcycle_is_light() -> None:
    script = textwrap.dedent(
        """
        import sys
        import mlcycle
        heavy = ["pandas", "numpy", "sqlalchemy", "mlcycle.store", "mlcycle.track"]
        print(sorted(name for name in [*heavy, "mlcycle.workspace"] if name in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
