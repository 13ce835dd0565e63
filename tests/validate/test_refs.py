"""Dataset references: infer from a registered version's stored profile, check a version's rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from mlcycle.data import DatasetRegistry
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import NotFound
from mlcycle.settings import Settings
from mlcycle.validate import check, infer_schema, load_schema
from mlcycle.workspace import Workspace


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DatasetRegistry]:
    ws = Workspace.open(Settings(home=tmp_path, actor="tester"))
    try:
        yield ws.data
    finally:
        ws.close()


def test_infer_from_a_version_then_check_the_next_one(
    registry: DatasetRegistry, tmp_path: Path
) -> None:
    table = pacsv.read_csv(BIKE_SHARING_HOURLY)
    first = registry.register("bike", table.slice(0, 10_000), key=["instant"])
    assert first.profile_digest is not None  # inference reads the stored profile
    schema = infer_schema("bike/1", registry=registry, key=["instant"])
    assert schema.dataset == "bike"
    assert schema.column("cnt").max is not None
    path = schema.save(tmp_path / "schemas" / "bike.yaml")
    assert check(first.ref, path, registry=registry).anomalies == []
    hot = table.slice(10_000)
    hot = hot.set_column(hot.schema.get_field_index("temp"), "temp", pc.add(hot["temp"], 5.0))
    registry.register("bike", hot, mode="overwrite")
    report = check("bike", load_schema(path), registry=registry)
    assert report.dataset == "data:/bike/2"
    assert ("out_of_range", "temp") in [(a.kind, a.column) for a in report.errors]


def test_unknown_reference_is_not_found(registry: DatasetRegistry) -> None:
    registry.register("bike", pa.table({"x": [1]}))
    with pytest.raises(NotFound):
        infer_schema("nope/1", registry=registry)
    with pytest.raises(NotFound):
        check("bike/9", infer_schema("bike", registry=registry), registry=registry)
