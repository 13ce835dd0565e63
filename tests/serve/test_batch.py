"""Batch scoring: ``mlcycle predict`` over dataset versions and files, lineage, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import Ridge
from tests.conftest import unwritable
from tests.serve.conftest import Invoke

import mlcycle as mc
from mlcycle.errors import NotFound, ValidationFailed, WorkspaceError
from mlcycle.workspace import Workspace

FEATURES = ["station", "hr", "temp"]


@pytest.fixture
def bike(bike_models: Workspace, hours: pd.DataFrame) -> Workspace:
    """``bike-demand`` 1..3 and dataset ``bike`` version 1 holding ``hours`` with a day column."""
    frame = hours.assign(dteday=[f"2030-05-{1 + i // 24:02d}" for i in range(len(hours))])
    bike_models.data.register("bike", frame, validate=False)
    return bike_models


def _expected(workspace: Workspace, ref: str, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(workspace.registry.load(ref).predict(frame[FEATURES]), dtype=np.float64)


def test_a_dataset_version_is_scored_in_batches_with_lineage(
    bike: Workspace, hours: pd.DataFrame, invoke: Invoke, project: Path
) -> None:
    result = invoke(
        "predict", "models:/bike-demand@production", "--data", "bike/1", "--out",
        "scores.parquet", "--keep", "dteday,hr", "--batch-rows", "7",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scored 60 rows of data:/bike/1 with models:/bike-demand/1" in result.output
    scores = pq.read_table(project / "scores.parquet")
    assert scores.column_names == ["row", "dteday", "hr", "prediction"]
    assert scores.column("row").to_pylist() == list(range(60))
    assert scores.column("hr").to_pylist() == hours["hr"].tolist()
    np.testing.assert_allclose(
        scores.column("prediction").to_numpy(), _expected(bike, "bike-demand/1", hours)
    )
    digest = result.output.split("lineage: scores:")[1].split()[0]
    with bike.artifacts.open(digest) as stored:  # type: ignore[arg-type]
        assert stored.read() == (project / "scores.parquet").read_bytes()
    parents = {(e.source, e.kind) for e in bike.metadata.edges_into(f"scores:{digest}")}
    assert parents == {("models:/bike-demand/1", "model"), ("data:/bike/1", "input")}
    assert not list(project.glob(".scores.parquet.*"))


def test_a_version_of_several_appends_is_streamed_in_row_order(
    bike: Workspace, hours: pd.DataFrame, tmp_path: Path
) -> None:
    """Each append is a Delta file of its own; the scores follow the version's row order."""
    later = [hours.iloc[::-1].assign(dteday="2030-06-01"), hours.assign(dteday="2030-06-02")]
    for part in later:
        bike.data.register("bike", part, validate=False)
    whole = bike.data.load("bike/3")
    try:
        scores = mc.serve.score(
            "bike-demand/2", "bike/3", tmp_path / "out.parquet", keep=["hr", "dteday"], batch_rows=7
        )
    finally:
        mc.close()
    assert (scores.rows, scores.data) == (180, "data:/bike/3")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("row").to_pylist() == list(range(180))
    assert table.column("hr").to_pylist() == whole["hr"].tolist()
    assert table.column("dteday").to_pylist() == whole["dteday"].tolist()
    np.testing.assert_allclose(
        table.column("prediction").to_numpy(), _expected(bike, "bike-demand/2", whole)
    )
    parents = {(e.source, e.kind) for e in bike.metadata.edges_into(scores.ref)}
    assert parents == {("models:/bike-demand/2", "model"), ("data:/bike/3", "input")}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_files_are_streamed_and_scored(
    bike: Workspace, hours: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / f"hours{suffix}"
    rows = pd.concat([hours] * 50, ignore_index=True)  # 3,000 rows: several CSV blocks
    if suffix == ".csv":
        rows.to_csv(source, index=False)
    else:
        rows.to_parquet(source, row_group_size=500)
    try:
        scores = mc.serve.score("bike-demand/2", source, tmp_path / "out.parquet", batch_rows=256)
    finally:
        mc.close()
    assert scores.rows == 3000
    assert scores.data == f"file:{source.resolve()}"
    assert scores.model == "models:/bike-demand/2"
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["row", "prediction"]
    np.testing.assert_allclose(
        table.column("prediction").to_numpy(), _expected(bike, "bike-demand/2", rows)
    )


def test_onnx_and_native_models_score_alike(
    bike: Workspace, hours: pd.DataFrame, tmp_path: Path
) -> None:
    model = Ridge(alpha=1.0).fit(hours[FEATURES], hours["cnt"])
    native_settings = bike.settings.model_copy(
        update={"registry": bike.settings.registry.model_copy(update={"convert_onnx": False})}
    )
    with Workspace.open(native_settings) as native:
        plain = native.registry.register("bike-native", model, input_example=hours[FEATURES])
    converted = bike.registry.register("bike-onnx", model, input_example=hours[FEATURES])
    assert "onnx" in converted.files
    assert "onnx" not in plain.files
    try:
        by_onnx = mc.serve.score(converted.ref, "bike", tmp_path / "onnx.parquet")
        by_native = mc.serve.score(plain.ref, "bike", tmp_path / "native.parquet")
    finally:
        mc.close()
    assert (by_onnx.runtime, by_native.runtime) == ("onnx", "native")
    onnx = pq.read_table(tmp_path / "onnx.parquet").column("prediction").to_numpy()
    native_scores = pq.read_table(tmp_path / "native.parquet").column("prediction").to_numpy()
    np.testing.assert_allclose(onnx, model.predict(hours[FEATURES]), rtol=1e-5)
    np.testing.assert_allclose(native_scores, model.predict(hours[FEATURES]))


def test_bad_input_is_refused_and_no_file_is_left(
    bike: Workspace, hours: pd.DataFrame, invoke: Invoke, project: Path
) -> None:
    hours.drop(columns=["temp"]).to_csv(project / "no-temp.csv", index=False)
    broken = hours.astype({"temp": object})
    broken.loc[40, "temp"] = None
    broken.to_parquet(project / "gap.parquet")
    (project / "folder").mkdir()
    cases = [
        (["models:/nope@production", "--data", "bike/1"], "nope"),
        (["bike-demand/1", "--data", "bike/9"], "no version 9"),
        (["bike-demand/1", "--data", "ghost"], "ghost"),
        (["bike-demand/1", "--data", "missing.csv"], "no file"),
        (["bike-demand/1", "--data", "no-temp.csv"], "has no column(s) ['temp']"),
        (["bike-demand/1", "--data", "gap.parquet"], "row 40, column 'temp'"),
        (["bike-demand/1", "--data", "bike/1", "--keep", "weather"], "cannot keep"),
        (["bike-demand/1", "--data", "bike/1", "--keep", "row"], "their own such column"),
    ]
    for args, problem in cases:
        result = invoke("predict", *args, "--out", "scores.parquet")
        assert result.exit_code == 1, (args, result.output)
        assert problem in result.output, (args, result.output)
    unwritable = [
        ("/sys/scores.parquet", "choose a writable place"),  # refused even to root
        ("nowhere/scores.parquet", "does not exist"),
        ("folder", "is a directory"),  # refused by the option itself (usage error, exit 2)
    ]
    for out, problem in unwritable:
        result = invoke("predict", "bike-demand/1", "--data", "bike/1", "--out", out)
        assert result.exit_code in {1, 2}
        assert problem in result.output, (out, result.output)
    assert not (project / "scores.parquet").exists()
    assert [p.name for p in project.iterdir() if p.name.startswith(".scores")] == []
    assert list((project / "folder").iterdir()) == []


def test_an_existing_file_is_kept_when_scoring_fails(bike: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"yesterday's scores")
    with pytest.raises(ValidationFailed, match="has no rows to score"):
        mc.serve.score("bike-demand/1", _empty_csv(tmp_path), out)
    with pytest.raises(NotFound):
        mc.serve.score("bike-demand/7", "bike", out)
    with pytest.raises(ValidationFailed, match="is a folder; give a file name"):
        mc.serve.score("bike-demand/1", "bike", tmp_path)
    mc.close()
    assert out.read_bytes() == b"yesterday's scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "project", "scores.parquet"]


def test_scores_the_store_refuses_leave_out_as_it_was(
    bike: Workspace, invoke: Invoke, project: Path
) -> None:
    """The file is stored and its lineage recorded before it replaces ``out``."""
    out = project / "scores.parquet"
    out.write_bytes(b"yesterday's scores")
    with unwritable(bike.settings.workspace_dir / "artifacts" / "tmp"):
        result = invoke("predict", "bike-demand/1", "--data", "bike/1", "--out", out.name)
        try:
            with pytest.raises(WorkspaceError, match="cannot write to the artifact store"):
                mc.serve.score("bike-demand/1", "bike/1", project / "new.parquet")
        finally:
            mc.close()
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "error: cannot write to the artifact store" in said
    assert "make that folder writable, or set store.artifacts_url" in said
    assert out.read_bytes() == b"yesterday's scores"
    assert not (project / "new.parquet").exists()
    assert [p.name for p in project.iterdir() if p.name.startswith((".scores", ".new"))] == []
    recorded = bike.events(types=["lineage.edge_added"])
    assert [e.subject for e in recorded if e.subject.startswith("scores:")] == []


def _empty_csv(folder: Path) -> Path:
    path = folder / "empty.csv"
    path.write_text("station,hr,temp\n")
    return path


def test_a_csv_whose_types_change_after_the_first_block_is_named(
    bike: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "drifting.csv"
    lines = ["station,hr,temp", *(["1,5,0.5"] * 1_000_000), "1,five,0.5"]  # past block one
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationFailed, match="Column types are taken from the first rows"):
        mc.serve.score("bike-demand/1", path, tmp_path / "out.parquet")
    mc.close()
    assert not (tmp_path / "out.parquet").exists()


def test_unreadable_files_and_bad_batch_sizes_are_named(bike: Workspace, tmp_path: Path) -> None:
    (tmp_path / "fake.parquet").write_text("not parquet at all")
    (tmp_path / "empty-file.csv").write_bytes(b"")
    out = tmp_path / "out.parquet"
    cases = [
        ({"data": tmp_path / "fake.parquet"}, "is not a Parquet file"),
        ({"data": tmp_path / "empty-file.csv"}, "cannot read"),
        ({"data": "bike", "batch_rows": 0}, "batch_rows=0 must be at least 1"),
    ]
    try:
        for arguments, problem in cases:
            with pytest.raises(ValidationFailed, match=problem):
                mc.serve.score("bike-demand/1", out=out, **arguments)  # type: ignore[arg-type]
    finally:
        mc.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty-file.csv",
        "fake.parquet",
        "project",
    ]
