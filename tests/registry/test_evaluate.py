"""``ModelRegistry.evaluate`` on the stores: split, training rows, policy, verdict, promotion.

Real workspaces on SQLite files with the bundled Bike Sharing data: a run
splits a recorded dataset version by time, models are registered from it,
and the registry gathers what the gates need from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import GateFailed, ValidationFailed
from mlcycle.registry import Evaluation
from mlcycle.settings import DataSettings, Settings
from mlcycle.store import ModelVersion
from mlcycle.workspace import Workspace

FEATURES = ["hr", "temp", "atemp", "hum", "windspeed", "workingday", "weathersit"]
CUT = "2012-09-01"


def _open(home: Path, **data: Any) -> Workspace:  # Any: DataSettings fields
    return Workspace.open(Settings(home=home, actor="ana", data=DataSettings(**data)))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with _open(tmp_path) as opened:
        opened.data.register("bike", BIKE_SHARING_HOURLY, time_column="dteday")
        yield opened


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = frame.assign(dteday=pd.to_datetime(frame["dteday"]))
    before = frame["dteday"] < pd.Timestamp(CUT)
    return frame[before].reset_index(drop=True), frame[~before].reset_index(drop=True)


def _train(
    workspace: Workspace, model: Any, *, log_split: bool = True
) -> ModelVersion:  # Any: sklearn
    with workspace.start_run("bike", name=type(model).__name__) as run:
        train, test = _split(workspace.data.load("bike/1"))
        if log_split:
            run.log_split("bike/1", train, test, time_column="dteday", test_from=CUT)
        model.fit(train[FEATURES], train["cnt"])
        return workspace.registry.register(
            "bike-demand", model, run=run, input_example=test[FEATURES].head(5)
        )


def _test_rows(workspace: Workspace) -> pd.DataFrame:
    return _split(workspace.data.load("bike/1"))[1]


def test_evaluate_gathers_split_baseline_rows_and_stores_the_verdict(workspace: Workspace) -> None:
    version = _train(workspace, HistGradientBoostingRegressor(max_iter=40, random_state=0))
    evaluation = workspace.registry.evaluate(version.ref, _test_rows(workspace), target="cnt")
    assert evaluation.passed, evaluation.summary()
    assert evaluation.result("disjoint_test").detail.startswith("no test row was a training row")
    baseline = evaluation.result("beats_baseline")  # fitted on the split's training rows, read back
    assert not baseline.skipped
    assert evaluation.compared["baseline"]["rmse"] > evaluation.metrics["rmse"]
    assert evaluation.result("no_regression").skipped  # nothing in production yet
    stored = workspace.registry.gate_results("bike-demand/1")
    assert stored is not None
    assert Evaluation.from_dict(stored) == evaluation
    assert stored["test_data"] != stored["train_data"]
    assert stored["production_version"] is None
    events = workspace.events(types=["model.evaluated"])
    assert [event.payload.get("version") for event in events] == [1]
    assert workspace.registry.promote("bike-demand", 1).gates == stored  # production unchanged


def test_a_model_no_better_than_the_mean_is_refused_production(workspace: Workspace) -> None:
    version = _train(workspace, DummyRegressor())
    evaluation = workspace.registry.evaluate(version, _test_rows(workspace), target="cnt")
    assert [gate.name for gate in evaluation.failures] == ["beats_baseline"]
    with pytest.raises(GateFailed, match="beats_baseline") as refused:
        workspace.registry.promote("bike-demand", version.version)
    assert refused.value.results["passed"] is False
    assert workspace.registry.get("bike-demand").version == 1
    assert "production" not in workspace.registry.catalog.get_model("bike-demand").aliases


def test_a_run_without_a_recorded_split_fails_the_disjoint_gate(workspace: Workspace) -> None:
    version = _train(workspace, Ridge(), log_split=False)
    evaluation = workspace.registry.evaluate(version, _test_rows(workspace), target="cnt")
    assert not evaluation.result("disjoint_test").passed
    assert "recorded no split" in evaluation.result("disjoint_test").detail
    assert "no training rows" in evaluation.result("beats_baseline").detail


def test_a_model_trained_on_a_denied_column_fails(tmp_path: Path) -> None:
    with _open(tmp_path, deny_columns=("windspeed",)) as workspace:
        workspace.data.register("bike", BIKE_SHARING_HOURLY, time_column="dteday")
        version = _train(workspace, Ridge())
        evaluation = workspace.registry.evaluate(version, _test_rows(workspace), target="cnt")
    denied = evaluation.result("no_denied_columns")
    assert not denied.passed
    assert "windspeed" in denied.detail


def test_promotion_runs_the_gates_again_against_the_production_of_the_day(
    workspace: Workspace,
) -> None:
    registry = workspace.registry
    test = _test_rows(workspace)
    weak = _train(workspace, Ridge())
    strong = _train(workspace, HistGradientBoostingRegressor(max_iter=60, random_state=0))
    assert registry.evaluate(weak, test, target="cnt").passed  # judged with nothing in production
    assert registry.evaluate(strong, test, target="cnt").passed
    registry.promote("bike-demand", strong.version)
    # Production moved to a much better model since the weak one was judged: promoting the
    # weak one now runs its gates again, on its stored rows, against the strong one.
    with pytest.raises(GateFailed, match="no_regression") as refused:
        registry.promote("bike-demand", weak.version)
    assert refused.value.results["production_version"] == strong.version
    stored = registry.gate_results(weak.ref)
    assert stored is not None
    assert stored["production_version"] == strong.version  # the fresh verdict is kept
    assert registry.get("bike-demand@production").version == strong.version
    forced = registry.promote("bike-demand", weak.version, force=True, reason="rollback drill")
    assert (forced.forced, forced.reason) == (True, "rollback drill")


def test_evaluate_refuses_bad_input_and_stores_nothing(workspace: Workspace) -> None:
    version = _train(workspace, Ridge())
    test = _test_rows(workspace)
    with pytest.raises(ValidationFailed, match="no test rows"):
        workspace.registry.evaluate(version, test.head(0), target="cnt")
    with pytest.raises(ValidationFailed, match="label column"):
        workspace.registry.evaluate(version, test)
    with pytest.raises(ValidationFailed, match=r"lacks the model's input column\(s\) \['hum'\]"):
        workspace.registry.evaluate(version, test.drop(columns=["hum"]), target="cnt")
    assert workspace.registry.gate_results(version) is None


def test_the_card_gathers_data_profiles_gates_environment_and_history(
    workspace: Workspace, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mlcycle.cli._app import app

    version = _train(workspace, HistGradientBoostingRegressor(max_iter=30, random_state=0))
    workspace.registry.update(
        version, tags={"purpose": "hourly rentals", "owner": "ana"}, limitations="no 2013 data"
    )
    workspace.registry.evaluate(version, _test_rows(workspace), target="cnt")
    workspace.registry.promote("bike-demand", 1, reason="first release")
    card = workspace.registry.card("bike-demand@production")
    text = card.to_markdown()
    assert text.startswith("# Model card: bike-demand version 1")
    for expected in (
        "hourly rentals",  # purpose, from the tags
        "data:/bike/1",  # the training data version, with its profile
        "17,379",
        "beats_baseline",  # the gate results
        "no 2013 data",  # limitations
        "first release",  # alias history
        "scikit-learn",  # the run's environment
    ):
        assert expected in text, expected
    assert "The training environment was not recorded" not in text
    assert "permutation" in text.lower()  # importance from the evaluation
    workspace.close()  # the CLI opens the project itself
    (tmp_path / "mlcycle.toml").write_text("")
    result = CliRunner().invoke(
        app,
        [
            "--home",
            str(tmp_path),
            "models",
            "card",
            "bike-demand",
            "1",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "c" / "bike-demand-v1.html").read_text()
    assert "<h2>Validation gates</h2>" in html
    assert "http" not in html.replace("http-equiv", "")  # offline: nothing fetched
    assert (tmp_path / "c" / "bike-demand-v1.md").read_text() == text


def test_promotion_loads_an_unsafe_version_again_only_when_trusted(workspace: Workspace) -> None:
    from tests.registry.custom_models import Doubler

    from mlcycle.errors import Untrusted

    registry = workspace.registry
    test = _test_rows(workspace)
    with workspace.start_run("bike", name="doubler") as run:
        train, _ = _split(workspace.data.load("bike/1"))
        run.log_split("bike/1", train, test, time_column="dteday", test_from=CUT)
        custom = registry.register(
            "bike-demand", Doubler(0.0), input_example=test[FEATURES].head(3), flavor="pyfunc"
        )
    with pytest.raises(Untrusted, match="trust=True"):
        registry.evaluate(custom, test, target="cnt")
    registry.evaluate(custom, test, target="cnt", trust=True)
    ridge = _train(workspace, Ridge())
    registry.evaluate(ridge, test, target="cnt")
    registry.promote("bike-demand", ridge.version, force=True, reason="baseline for the test")
    # Production moved: promoting the custom model runs its gates again, which unpickles it.
    with pytest.raises(Untrusted, match=r"models:/bike-demand/1 \(pyfunc flavor\)"):
        registry.promote("bike-demand", custom.version)
    with pytest.raises(GateFailed):  # trusted, judged, and it is far worse than ridge
        registry.promote("bike-demand", custom.version, trust=True)
    assert registry.get("bike-demand@production").version == ridge.version
