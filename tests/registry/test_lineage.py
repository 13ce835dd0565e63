"""Registering records the chain model version <- run <- dataset versions <- sources, and code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

import mlcycle as mc
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace


def _git_project(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (root / "train.py").write_text("print('train')\n")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "train")
    return git("rev-parse", "HEAD")


def test_registration_links_run_data_and_code(tmp_path: Path, frame: pd.DataFrame) -> None:
    commit = _git_project(tmp_path)
    with Workspace.open(Settings(home=tmp_path, actor="ana")) as workspace:
        workspace.data.register("bike", frame.assign(cnt=np.arange(len(frame))))
        with workspace.start_run("train") as run:
            table = workspace.data.load("bike")
            model = Ridge().fit(table[["temp", "hr"]], table["cnt"])
            run.log_metric("rmse", 1.5)
            run.log_params({"alpha": 1.0})
            version = workspace.registry.register("bike-demand", model)
        assert version.run_id == run.id
        assert version.dataset_versions == ("data:/bike/1",)
        assert version.code_version is not None
        assert version.code_version.startswith(commit)
        assert (version.metrics, version.params) == ({"rmse": 1.5}, {"alpha": "1.0"})
        workspace.registry.promote("bike-demand", 1, to="staging")
        tree = workspace.lineage("models:/bike-demand@staging")
        assert tree.ref == "models:/bike-demand/1"
        parents = {(p.ref, p.kind) for p in tree.parents}
        assert parents == {
            (f"run:{run.id}", "produced"),
            ("data:/bike/1", "training_data"),
            (f"git:{version.code_version}", "code"),
        }
        run_node = next(p for p in tree.parents if p.kind == "produced")
        assert ("data:/bike/1", "input") in {(p.ref, p.kind) for p in run_node.parents}
        data_node = next(p for p in run_node.parents if p.ref == "data:/bike/1")
        assert data_node.parents, "a dataset version keeps its source"
        as_json = tree.to_dict()
        assert as_json["ref"] == "models:/bike-demand/1"
        assert "run:" in "\n".join(tree.lines())
        explicit = workspace.registry.register("other", model, run=run.id)
        assert explicit.dataset_versions == ("data:/bike/1",)


def test_the_module_level_sdk_acts_on_the_working_directory(
    tmp_path: Path, monkeypatch: object, ridge: Ridge, frame: pd.DataFrame
) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLCYCLE_HOME", str(tmp_path))
    try:
        version = mc.registry.register("bike", ridge, input_example=frame.head(3), tags={"a": "b"})
        assert mc.registry.get("bike") == version
        assert mc.registry.versions("bike") == [version]
        assert [m.name for m in mc.registry.models()] == ["bike"]
        np.testing.assert_allclose(
            mc.registry.load("models:/bike/1").predict(frame), ridge.predict(frame)
        )
        assert len(mc.registry.input_example("bike/1")) == 3
        assert mc.registry.update("bike/1", description="x").description == "x"
        assert mc.registry.gate_results("bike/1") is None
        mc.registry.register("bike", ridge)
        mc.registry.promote("bike", 1, to="staging")
        mc.registry.promote("bike", 2, to="staging")
        assert mc.registry.rollback_target("bike", "staging") == mc.registry.get("bike/1")
        assert mc.registry.rollback("bike", "staging").to_version == 1
        assert len(mc.registry.history("bike", "staging")) == 3
        assert mc.lineage("models:/bike@staging").ref == "models:/bike/1"
    finally:
        mc.close()
