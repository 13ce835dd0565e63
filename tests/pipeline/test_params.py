"""Parameters: code defaults, mlcycle.toml, the call and the command line; datasets pinned first."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tests.pipeline import flows

from mlcycle.data import DatasetRef
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.settings import PipelineSettings, Settings
from mlcycle.workspace import Workspace


def test_every_effective_value_is_recorded_with_its_source(
    home: Path, marks: str, executor: str
) -> None:
    settings = Settings(
        home=home,
        actor="tester",
        pipelines={"simple": PipelineSettings(params={"rows": 7, "factor": 3})},
    )
    with Workspace.open(settings) as workspace:
        result = flows.simple.run(workspace=workspace, marks=marks, factor=0.5, executor=executor)
        assert result.record.params == {"marks": marks, "rows": 7, "factor": 0.5}
        assert result.record.param_sources == {"marks": "run", "rows": "config", "factor": "run"}
        assert result.output("total") == {"x": 10.5, "y": 21.0}
        tracked = workspace.get_run(result.record.run_id or "")
        assert tracked.params["rows"] == "7"
        from_cli = flows.simple.run_from_cli(
            {"marks": marks, "factor": "4"}, workspace=workspace, executor=executor
        )
        assert from_cli.record.param_sources["factor"] == "cli"
        assert from_cli.record.params["factor"] == 4.0


def test_mlcycle_toml_sets_parameters(home: Path, marks: str) -> None:
    config = home / "mlcycle.toml"
    config.write_text(config.read_text() + "\n[pipelines.simple.params]\nrows = 3\n")
    from mlcycle.settings import load_settings

    with Workspace.open(load_settings(home)) as workspace:
        result = flows.simple.run(workspace=workspace, marks=marks)
    assert result.record.params["rows"] == 3
    assert result.record.param_sources["rows"] == "config"


def test_unknown_and_missing_parameters_are_named(home: Path, marks: str) -> None:
    settings = Settings(home=home, pipelines={"simple": PipelineSettings(params={"rowz": 1})})
    with (
        Workspace.open(settings) as workspace,
        pytest.raises(ValidationFailed, match=r"no parameter 'rowz' in \[pipelines.simple"),
    ):
        flows.simple.run(workspace=workspace, marks=marks)
    with Workspace.open(Settings(home=home)) as workspace:
        with pytest.raises(ValidationFailed, match="needs parameter 'marks'"):
            flows.simple.run(workspace=workspace)
        with pytest.raises(ValidationFailed, match="is an int"):
            flows.simple.run(workspace=workspace, marks=marks, rows="many")
        assert workspace.metadata.list_pipeline_runs() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [("rows", "12", 12), ("factor", "1.5", 1.5), ("factor", "2", 2.0), ("marks", "12", "12")],
)
def test_command_line_values_are_typed_by_annotation(name: str, text: str, value: object) -> None:
    assert flows.simple.parse_params({name: text}) == {name: value}


def test_bad_command_line_values_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="'rows' is a number; 'x' is not one"):
        flows.simple.parse_params({"rows": "x"})
    with pytest.raises(ValidationFailed, match="'rows' is an int"):
        flows.simple.parse_params({"rows": "1.5"})
    with pytest.raises(ValidationFailed, match="give true or false"):
        flows.diamond.parse_params({"rendezvous": "maybe"})
    assert flows.diamond.parse_params({"rendezvous": "yes"}) == {"rendezvous": True}
    with pytest.raises(ValidationFailed, match="no parameter 'nope'"):
        flows.simple.parse_params({"nope": "1"})


def test_datasets_are_pinned_before_any_step_and_linked(
    workspace: Workspace, executor: str
) -> None:
    frame = pd.DataFrame({"hour": [1, 2, 3]})
    workspace.data.register("bike", frame, validate=False)
    workspace.data.register("bike", pd.concat([frame, frame]), validate=False)  # appended: 9 rows
    result = flows.from_data.run(workspace=workspace, executor=executor)
    assert result.record.params == {"data": "bike/2"}
    assert result.record.datasets == {"data": "data:/bike/2"}
    assert result.output("count_rows") == 9
    edges = workspace.metadata.edges_into(f"pipeline:{result.id}")
    assert [edge.source for edge in edges] == ["data:/bike/2"]
    read_run = result.steps["read"].run_id
    assert "data:/bike/2" in [e.source for e in workspace.metadata.edges_into(f"run:{read_run}")]
    pinned = flows.from_data.run(workspace=workspace, data=DatasetRef("bike/1"), executor=executor)
    assert pinned.output("count_rows") == 3


def test_a_missing_dataset_stops_the_run_before_it_is_recorded(workspace: Workspace) -> None:
    with pytest.raises(NotFound, match="bike"):
        flows.from_data.run(workspace=workspace)
    assert workspace.metadata.list_pipeline_runs() == []  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed, match="names a model"):
        DatasetRef("models:/bike/1")
