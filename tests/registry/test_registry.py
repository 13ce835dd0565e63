"""Register and load: flavors, signatures, examples, references, digests and trust."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlcycle.errors import IntegrityError, NotFound, Untrusted, ValidationFailed
from mlcycle.registry import SklearnFlavor
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.workspace import Workspace


def _double(values: np.ndarray) -> np.ndarray:
    return values * 2


class _UnsafeSklearn(SklearnFlavor):
    """The skops flavor, declared unsafe: stands in for a pickle flavor in trust tests."""

    safe = False


def test_register_then_load_round_trips(
    workspace: Workspace, ridge: Ridge, frame: pd.DataFrame
) -> None:
    registry = workspace.registry
    version = registry.register(
        "bike",
        ridge,
        input_example=frame.head(5),
        metrics={"rmse": 41.2},
        tags={"algo": "ridge"},
        params={"alpha": 0.1},
        description="baseline",
    )
    assert (version.name, version.version, version.flavor, version.safe) == (
        "bike",
        1,
        "sklearn",
        True,
    )
    assert version.digest.startswith("sha256:")
    assert version.size > 0
    assert (version.metrics, version.tags, version.params) == (
        {"rmse": 41.2},
        {"algo": "ridge"},
        {"alpha": "0.1"},
    )
    assert (version.run_id, version.dataset_versions, version.code_version) == (None, (), None)
    assert [c["name"] for c in version.signature["inputs"]] == ["temp", "hr", "holiday"]
    assert [c["type"] for c in version.signature["inputs"]] == ["float64", "int64", "bool"]
    assert version.signature["outputs"][0]["type"] == "float64"
    loaded = registry.load("models:/bike/1")
    assert loaded.version == version
    assert loaded.signature.input_names == ["temp", "hr", "holiday"]
    np.testing.assert_allclose(loaded.predict(frame), ridge.predict(frame))
    reordered = frame[["holiday", "temp", "hr"]]
    np.testing.assert_allclose(loaded.predict(reordered), ridge.predict(frame))
    pd.testing.assert_frame_equal(registry.input_example(version), frame.head(5))
    assert registry.models()[0].name == "bike"
    assert registry.versions("bike") == [version]


def test_no_flavor_lists_the_supported_ones(workspace: Workspace) -> None:
    with pytest.raises(ValidationFailed, match=r"no flavor can store a builtins.dict.*sklearn"):
        workspace.registry.register("bike", {"not": "a model"})
    with pytest.raises(ValidationFailed, match="model name"):
        workspace.registry.register("bad name", {"not": "a model"})
    with pytest.raises(ValidationFailed, match="no model flavor 'nope'"):
        workspace.registry.register("bike", {}, flavor="nope")


def test_references_resolve_by_number_alias_and_latest(workspace: Workspace, ridge: Ridge) -> None:
    registry = workspace.registry
    one = registry.register("bike", ridge)
    two = registry.register("bike", ridge)
    registry.promote("bike", 1, to="staging")
    for ref, expected in [
        ("models:/bike/1", one),
        ("models:/bike/2", two),
        ("bike/1", one),
        ("bike", two),
        ("bike@latest", two),
        ("models:/bike@latest", two),
        ("models:/bike@staging", one),
        ("bike@staging", one),
    ]:
        assert registry.get(ref) == expected, ref
    assert registry.get(one) is one
    with pytest.raises(NotFound, match=r"model 'bike' has no version 9 \(latest is 2\)"):
        registry.get("models:/bike/9")
    with pytest.raises(NotFound, match=r"no alias 'production' \(its aliases: staging -> 1\)"):
        registry.get("bike@production")
    with pytest.raises(NotFound, match="no model 'nope'"):
        registry.get("nope@production")
    with pytest.raises(ValidationFailed, match="names a dataset"):
        registry.get("data:/bike/1")
    with pytest.raises(ValidationFailed, match="is not a reference"):
        registry.get("models:/bike/x/y")
    registry.catalog.ensure_model("empty", actor="ana", time=workspace.clock.now())
    with pytest.raises(NotFound, match="'empty' has no versions yet"):
        registry.get("empty")


def test_a_tampered_file_is_refused_naming_the_digest(workspace: Workspace, ridge: Ridge) -> None:
    version = workspace.registry.register("bike", ridge)
    path = Path(workspace.artifacts.location(version.digest))
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match=f"refusing to load models:/bike/1.*{version.digest}"):
        workspace.registry.load("bike/1")
    path.unlink()
    with pytest.raises(NotFound, match=version.digest):
        workspace.registry.load("bike/1")


def test_an_untrusted_skops_type_is_refused_naming_it(
    tmp_path: Path, frame: pd.DataFrame, target: np.ndarray
) -> None:
    model = make_pipeline(FunctionTransformer(_double), Ridge()).fit(frame, target)
    with Workspace.open(Settings(home=tmp_path, actor="ana")) as workspace:
        workspace.registry.register("custom", model, input_example=frame.head(2))
        with pytest.raises(Untrusted, match=r"_double.*registry.trusted_types"):
            workspace.registry.load("custom")
        with pytest.raises(NotFound, match="without an input example"):
            workspace.registry.input_example(workspace.registry.register("plain", Ridge()))
    trusted = RegistrySettings(trusted_types=(f"{__name__}._double",))
    with Workspace.open(Settings(home=tmp_path, actor="ana", registry=trusted)) as workspace:
        loaded = workspace.registry.load("custom")
        np.testing.assert_allclose(loaded.predict(frame), model.predict(frame))


def test_unsafe_versions_load_only_when_trusted(tmp_path: Path, ridge: Ridge) -> None:
    with Workspace.open(Settings(home=tmp_path, actor="eve")) as workspace:
        version = workspace.registry.register("risky", ridge, flavor=_UnsafeSklearn())
        assert not version.safe
        with pytest.raises(Untrusted, match=r"models:/risky/1.*published by 'eve'.*trust=True"):
            workspace.registry.load("risky")
        assert workspace.registry.load("risky", trust=True).version == version
    publishers = RegistrySettings(trusted_publishers=("eve",))
    with Workspace.open(Settings(home=tmp_path, actor="bo", registry=publishers)) as workspace:
        assert workspace.registry.load("risky").version == version


def test_array_examples_and_updates(workspace: Workspace, frame: pd.DataFrame) -> None:
    values = frame.to_numpy(dtype=float)
    model = Ridge().fit(values, values[:, 0])
    version = workspace.registry.register("arr", model, input_example=values[:3])
    assert [c["name"] for c in version.signature["inputs"]] == ["0", "1", "2"]
    assert list(workspace.registry.input_example("arr").columns) == ["0", "1", "2"]
    updated = workspace.registry.update(
        "arr/1", tags={"owner": "ana"}, description="d", limitations="no winter data"
    )
    assert (updated.tags, updated.description, updated.limitations) == (
        {"owner": "ana"},
        "d",
        "no winter data",
    )
    assert workspace.registry.gate_results("arr") is None
