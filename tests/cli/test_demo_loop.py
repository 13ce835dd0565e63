"""The demo's ``mlcycle.toml`` sections: added when missing, a project's own kept, all parsed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle.agent import parse_policies
from mlcycle.cli._demo_data import DemoData, DemoSpec, prepare
from mlcycle.cli._demo_loop import PIPELINE, configure
from mlcycle.errors import ValidationFailed
from mlcycle.monitor import rules_from_settings
from mlcycle.project import init_project
from mlcycle.settings import load_settings


@pytest.fixture
def data(tmp_path: Path) -> DemoData:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=600), "label": rng.choice(["a", "b"], size=600)})
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    spec = DemoSpec(path=path, target="label", days=10, dataset="table", model="table-label")
    return prepare(spec)


def test_the_sections_are_added_to_a_new_project_and_parse(tmp_path: Path, data: DemoData) -> None:
    root = init_project(tmp_path / "project")
    added = configure(root / "mlcycle.toml", data, test_metric=0.9)
    assert added == [
        "[alerts.rules.table-label-drift]",
        "[alerts.rules.table-label-decay]",
        "[alerts.rules.table-label-stale]",
        "[monitors.table-label]",
        "[training.table-label]",
    ]
    settings = load_settings(home=root)  # the settings accept what the demo wrote
    rules = rules_from_settings(settings.alerts)
    assert str(rules["table-label-decay"].expression) == "accuracy < 0.85 for 2 windows"
    [policy] = parse_policies(settings.training, rules=set(rules)).values()
    assert (policy.pipeline, policy.metric, policy.trial) == (PIPELINE, "accuracy", "shadow")
    assert policy.params["task"] == "classification"
    assert policy.params["promote"] is False
    assert settings.monitors["table-label"].label_column == "label"
    assert configure(root / "mlcycle.toml", data, test_metric=0.5) == []  # once only


def test_a_projects_own_sections_are_kept(tmp_path: Path, data: DemoData) -> None:
    path = tmp_path / "mlcycle.toml"
    own = (
        '[monitors.table-label]\nwindow = "1h"\n\n'
        '[alerts.rules.table-label-drift]\nwhen = "drift_share > 0.9"\n'
    )
    path.write_text(own)
    added = configure(path, data, test_metric=0.9)
    assert "[monitors.table-label]" not in added
    assert "[alerts.rules.table-label-drift]" not in added
    config = tomllib.loads(path.read_text())
    assert config["monitors"]["table-label"] == {"window": "1h"}
    assert config["alerts"]["rules"]["table-label-drift"] == {"when": "drift_share > 0.9"}
    assert "table-label-decay" in config["alerts"]["rules"]
    assert path.read_text().startswith(own)


def test_a_file_the_sections_cannot_join_is_left_alone(tmp_path: Path, data: DemoData) -> None:
    path = tmp_path / "mlcycle.toml"
    inline = 'alerts = { rules = { other = { when = "rows < 1" } } }\n'
    path.write_text(inline)
    with pytest.raises(ValidationFailed, match="Add them by hand"):
        configure(path, data, test_metric=0.9)
    assert path.read_text() == inline
