"""Step outputs stored by type; pickle only when opted in, and loaded only when trusted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from tests.pipeline import flows

from mlcycle.errors import PipelineFailed, Untrusted, ValidationFailed
from mlcycle.pipeline import load_output, store_output
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.store import LocalArtifactStore
from mlcycle.workspace import Workspace


def _round_trip(value: object, tmp: Path, *, allow_pickle: bool = False) -> tuple[str, object]:
    artifacts = LocalArtifactStore(root=tmp / "artifacts")
    output = store_output(
        value, step="s", allow_pickle=allow_pickle, artifacts=artifacts, publisher="ana"
    )
    loaded = load_output(output, what="x", artifacts=artifacts, settings=Settings(), trust=True)
    return output.serializer, loaded


def test_frames_and_arrays_round_trip_without_pickle(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[10, 20])
    serializer, loaded = _round_trip(frame, tmp_path)
    assert serializer == "pandas.parquet"
    pd.testing.assert_frame_equal(loaded, frame)  # type: ignore[arg-type]
    table = pa.table({"a": [1.5, None]})
    assert _round_trip(table, tmp_path) == ("arrow.parquet", table)
    polars_frame = pl.DataFrame({"a": [1, 2]})
    serializer, loaded = _round_trip(polars_frame, tmp_path)
    assert serializer == "polars.parquet"
    assert polars_frame.equals(loaded)  # type: ignore[arg-type]
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    serializer, loaded = _round_trip(array, tmp_path)
    assert serializer == "numpy.npy"
    np.testing.assert_array_equal(loaded, array)  # type: ignore[arg-type]


def test_models_go_through_the_registry_flavors(tmp_path: Path) -> None:
    model = Ridge().fit([[0.0], [1.0]], [0.0, 2.0])
    serializer, loaded = _round_trip(model, tmp_path)
    assert serializer == "model.sklearn"
    assert isinstance(loaded, Ridge)
    assert loaded.predict([[2.0]]) == pytest.approx(model.predict([[2.0]]))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(value=json_values)
def test_json_values_round_trip(value: object) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        assert _round_trip(value, Path(folder)) == ("json", value)


def test_small_json_outputs_stay_in_the_record_with_the_stores_digest(tmp_path: Path) -> None:
    import io

    from mlcycle.errors import IntegrityError
    from mlcycle.pipeline import INLINE_LIMIT

    artifacts = LocalArtifactStore(root=tmp_path / "artifacts")
    small = store_output(
        {"rmse": 0.5}, step="s", allow_pickle=False, artifacts=artifacts, publisher="a"
    )
    assert small.inline == '{"rmse":0.5}'
    assert not artifacts.exists(small.digest)  # no blob written for it
    assert small.digest == artifacts.put(io.BytesIO(small.inline.encode()))  # the same digest
    big = store_output(
        "x" * INLINE_LIMIT, step="s", allow_pickle=False, artifacts=artifacts, publisher="a"
    )
    assert big.inline is None
    assert artifacts.exists(big.digest)
    changed = replace(small, inline='{"rmse":0.1}')
    with pytest.raises(IntegrityError, match=r"no longer matches its digest.*--no-cache"):
        load_output(changed, what="x", artifacts=artifacts, settings=Settings(), trust=False)


def test_no_serializer_names_the_step_the_type_and_the_fix(tmp_path: Path) -> None:
    artifacts = LocalArtifactStore(root=tmp_path)
    with pytest.raises(ValidationFailed) as caught:
        store_output(
            flows.Box(1), step="make_box", allow_pickle=False, artifacts=artifacts, publisher="a"
        )
    message = str(caught.value)
    assert "step 'make_box' returned a tests.pipeline.flows.Box" in message
    assert "@step(pickle=True)" in message
    objects = np.array([object()], dtype=object)
    with pytest.raises(ValidationFailed, match=r"returned a numpy\.ndarray"):
        store_output(objects, step="s", allow_pickle=False, artifacts=artifacts, publisher="a")


def test_a_step_without_a_serializer_fails_its_run(workspace: Workspace, executor: str) -> None:
    with pytest.raises(PipelineFailed, match=r"step 'unboxable' returned a .*Box") as caught:
        flows.unserializable.run(workspace=workspace, executor=executor)
    failed = workspace.metadata.list_step_runs(caught.value.run_id)  # type: ignore[attr-defined]
    assert failed[0].status.value == "failed"


def test_every_serializer_passes_outputs_between_steps(
    workspace: Workspace, marks: str, executor: str
) -> None:
    """Parquet (pandas, Arrow, polars), numpy, JSON and a model reach the next step alike."""
    result = flows.kinds.run(workspace=workspace, marks=marks, executor=executor)
    serializers = {name: s.outputs["return"].serializer for name, s in result.steps.items()}
    assert serializers == {
        "make": "pandas.parquet",
        "as_arrow": "arrow.parquet",
        "as_polars": "polars.parquet",
        "as_numpy": "numpy.npy",
        "as_json": "json",
        "fit": "model.sklearn",
        "describe": "json",
    }
    assert result.output("describe") == {
        "pandas": ["DataFrame", 12.0],
        "arrow": ["Table", 4, ["x", "y"]],
        "polars": ["DataFrame", 12.0],
        "numpy": ["ndarray", [4, 2], "float64"],
        "json": {"rows": 4, "columns": ["x", "y"], "first": {"x": 0.0, "y": 0.0}},
        "model": ["Ridge", 2.166667],
    }
    assert isinstance(result.output("as_polars"), pl.DataFrame)  # read back from the store
    np.testing.assert_array_equal(result.output("as_numpy"), [[0, 0], [1, 2], [2, 4], [3, 6]])


def test_pickled_outputs_load_only_when_trusted(home: Path) -> None:
    with Workspace.open(Settings(home=home, actor="ana")) as workspace:
        result = flows.pickled.run(workspace=workspace)
        assert result.output("unbox") == 7
        assert result.steps["boxed"].outputs["return"].serializer == "pickle"
        assert result.steps["boxed"].outputs["return"].publisher == "ana"
        again = flows.pickled.run(workspace=workspace)  # unbox is cached; boxed is not loaded
        with pytest.raises(Untrusted, match=r"output of step 'boxed'.*published by 'ana'"):
            again.output("boxed")
        assert isinstance(again.output("boxed", trust=True), flows.Box)
        with pytest.raises(PipelineFailed, match="not trusted") as caught:
            flows.pickled.run(workspace=workspace, plus=1)  # boxed cached, unbox must load it
        steps = workspace.metadata.list_step_runs(caught.value.run_id)  # type: ignore[attr-defined]
        assert [s.status.value for s in steps] == ["cached", "failed"]
        assert flows.pickled.run(workspace=workspace, plus=1, trust=True).output("unbox") == 8
    trusted = Settings(
        home=home, actor="bo", registry=RegistrySettings(trusted_publishers=("ana",))
    )
    with Workspace.open(trusted) as workspace:
        assert flows.pickled.run(workspace=workspace).output("boxed").value == 7  # type: ignore[attr-defined]


def test_every_executor_refuses_an_untrusted_pickle(home: Path, executor: str) -> None:
    """On every executor a step that must load a pickled output runs only when it is trusted."""
    with Workspace.open(Settings(home=home, actor="ana")) as workspace:
        if executor == "local":  # one process: boxed's value is still in memory, nothing loads
            assert flows.pickled.run(workspace=workspace, value=3).output("unbox") == 3
        else:  # a worker reads boxed's pickled output from the store
            with pytest.raises(PipelineFailed, match="not trusted") as caught:
                flows.pickled.run(workspace=workspace, executor=executor, value=3)
            steps = workspace.metadata.list_step_runs(caught.value.run_id)  # type: ignore[attr-defined]
            assert [s.status.value for s in steps] == ["completed", "failed"]
        with pytest.raises(PipelineFailed, match="not trusted") as caught:
            flows.pickled.run(workspace=workspace, executor=executor, value=3, plus=1)
        steps = workspace.metadata.list_step_runs(caught.value.run_id)  # type: ignore[attr-defined]
        assert [s.status.value for s in steps] == ["cached", "failed"]
        trusted = flows.pickled.run(
            workspace=workspace, executor=executor, value=3, plus=1, trust=True
        )
        assert trusted.output("unbox") == 4
