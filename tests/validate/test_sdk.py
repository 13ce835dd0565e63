"""``mc.validate``: schemas inferred from dataset versions into ``schemas/<name>.yaml``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import mlcycle as mc
from mlcycle.errors import AlreadyExists, ValidationFailed
from mlcycle.settings import Settings
from mlcycle.validate import check, infer_schema, load_schema, schema_path
from mlcycle.workspace import Workspace

RIDES = pa.table(
    {
        "day": [f"2030-01-{d:02d}" for d in range(1, 21)],
        "hr": [i % 24 for i in range(20)],
        "season": ["winter", "spring"] * 10,
    }
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project in the working directory, with the default workspace closed afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLCYCLE_HOME", raising=False)
    try:
        yield tmp_path
    finally:
        mc.close()


def test_infer_from_a_reference_saves_the_project_schema_with_the_dataset_key(
    project: Path,
) -> None:
    mc.data.register("rides", RIDES, key=["day"])
    schema = mc.validate.infer_schema("rides/1")
    path = project / "schemas" / "rides.yaml"
    assert path.is_file()
    assert load_schema(path) == schema
    assert schema.dataset == "rides"
    assert schema.key == ["day"]
    assert mc.validate.check("rides/1").ok
    report = mc.validate.check(pa.table({"day": ["x"], "hr": [40], "season": ["monsoon"]}), path)
    assert {a.kind for a in report.errors} == {"out_of_range", "unseen_category"}


def test_an_existing_schema_with_other_content_is_kept_unless_overwrite(project: Path) -> None:
    mc.data.register("rides", RIDES)
    path = project / "schemas" / "rides.yaml"
    mc.validate.infer_schema("rides")
    edited = path.read_text().replace("- winter", "- winter\n    - summer")
    assert edited != path.read_text()
    path.write_text(edited)
    mc.validate.infer_schema("rides", save=False)  # returns it, writes nothing
    with pytest.raises(AlreadyExists, match=r"rides\.yaml exists .*overwrite=True"):
        mc.validate.infer_schema("rides")
    assert path.read_text() == edited
    assert "summer" in (load_schema(path).column("season").domain or [])
    again = mc.validate.infer_schema("rides", overwrite=True)
    assert load_schema(path) == again
    mc.validate.infer_schema("rides")  # the same content again: no error, no change
    assert load_schema(path) == again


def test_tables_are_saved_only_when_asked(project: Path) -> None:
    schema = mc.validate.infer_schema(RIDES)
    assert not (project / "schemas").exists()
    mc.validate.infer_schema(RIDES, dataset="rides", save=True)
    assert load_schema(project / "schemas" / "rides.yaml") == schema.__class__(
        columns=schema.columns, key=schema.key, min_rows=schema.min_rows, dataset="rides"
    )
    target = project / "elsewhere" / "r.yaml"
    mc.validate.infer_schema(RIDES, save=target)
    assert load_schema(target) == schema
    with pytest.raises(ValidationFailed, match="needs a dataset name"):
        mc.validate.infer_schema(RIDES, save=True)


def test_check_without_a_schema_names_the_missing_file_or_asks_for_one(project: Path) -> None:
    mc.data.register("rides", RIDES)
    with pytest.raises(ValidationFailed, match=r"no schema file .*schemas/rides\.yaml"):
        mc.validate.check("rides")
    with pytest.raises(ValidationFailed, match="give the schema"):
        mc.validate.check(RIDES)


def test_an_explicit_registry_uses_its_workspace_schemas(tmp_path: Path) -> None:
    with Workspace.open(Settings(home=tmp_path / "p", actor="tester")) as ws:
        ws.data.register("rides", RIDES)
        infer_schema("rides/1", registry=ws.data)
        assert schema_path("rides/1", registry=ws.data) == ws.schemas_dir / "rides.yaml"
        assert (tmp_path / "p" / "schemas" / "rides.yaml").is_file()
        bad = RIDES.set_column(1, "hr", pa.array([99] * 20))
        ws.data.register("rides", bad, mode="overwrite")
        report = check("rides", registry=ws.data)
        assert report.dataset == "data:/rides/2"
        assert [a.kind for a in report.errors] == ["out_of_range"]
