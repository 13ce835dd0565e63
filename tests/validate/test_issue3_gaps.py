"""Issue 3's schema and validation lines on every store set-up (local, S3, PostgreSQL).

The other validate tests use a local project only. Here a schema is inferred
from a version's profile as stored in the set-up's artifact store (a bucket on
a real S3-compatible server for ``sqlite-s3``), saved as YAML in the project,
and used to check the next version by reference, with the report's JSON and
HTML renderings and ``raise_for_errors``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from tests.data.conftest import STORES, Stores, open_stores, table_files

from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import ValidationFailed
from mlcycle.validate import ValidationReport, check, infer_schema, load_schema
from mlcycle.workspace import Workspace


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest) -> Stores:
    """Each store set-up in turn."""
    return open_stores(request, request.param)


@pytest.fixture
def ws(tmp_path: Path, stores: Stores) -> Iterator[Workspace]:
    """A workspace on each store set-up in turn."""
    with Workspace.open(stores.settings(tmp_path)) as workspace:
        yield workspace


def test_a_schema_inferred_from_a_stored_version_checks_the_next_one(ws: Workspace) -> None:
    bike = pacsv.read_csv(BIKE_SHARING_HOURLY)
    first = ws.data.register("bike", bike.slice(0, 8000), key=["dteday", "hr"])
    assert first.profile_digest is not None
    assert ws.artifacts.exists(first.profile_digest)  # the profile lives in this store
    schema = infer_schema("bike/1", registry=ws.data)
    path = ws.schemas_dir / "bike.yaml"
    assert path.is_file()  # readable YAML in the project, whatever the stores
    assert "# mlcycle schema for bike" in path.read_text()
    assert load_schema(path) == schema
    assert list(schema.key or []) == ["dteday", "hr"]
    assert check("bike/1", registry=ws.data).ok
    later = bike.slice(8000, 2000)
    hot = later.set_column(later.schema.get_field_index("temp"), "temp", pc.add(later["temp"], 5.0))
    ws.data.register("bike", hot, mode="overwrite")
    report = check("bike/2", registry=ws.data)
    assert report.dataset == "data:/bike/2"
    assert ("out_of_range", "temp") in [(a.kind, a.column) for a in report.errors]
    assert json.loads(report.to_json())["ok"] is False
    assert ValidationReport.from_dict(json.loads(report.to_json())) == report
    assert "out_of_range" in report.to_html(title="bike/2")
    with pytest.raises(ValidationFailed, match=r"dataset 'data:/bike/2' breaks its schema"):
        report.raise_for_errors()


def test_validation_at_registration_refuses_and_writes_nothing_to_the_store(
    ws: Workspace,
) -> None:
    ws.data.register("rides", pa.table({"hr": [0, 1, 2, 3], "cnt": [1.0, 2.0, 3.0, 4.0]}))
    infer_schema("rides/1", registry=ws.data, slack=0.0)
    files = table_files(ws)
    bad = pa.table({"hr": [99], "cnt": [float("nan")]})
    with pytest.raises(ValidationFailed, match=r"(?s)breaks its schema.*Nothing was registered"):
        ws.data.register("rides", bad, validate=True)
    assert table_files(ws) == files  # the Delta table in this store is untouched
    assert [v.version for v in ws.data.history("rides")] == [1]
    assert len(ws.events(types=["dataset.version_created"])) == 1
