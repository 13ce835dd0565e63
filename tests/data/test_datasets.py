"""Versioned datasets on Delta Lake, on a local and an S3 table area."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.data.conftest import table_files

from mlcycle.clock import SimulatedClock
from mlcycle.data import DatasetRegistry, content_digest, parse_ref
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

HOUR_CSV = Path(__file__).parents[2] / "src" / "mlcycle" / "datasets" / "hour.csv"


def _frame(start: int, rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": pd.date_range("2030-01-01", periods=rows, freq="D").date[:rows]
            if start == 0
            else pd.date_range("2030-01-01", periods=start + rows, freq="D").date[start:],
            "hr": [i % 24 for i in range(start, start + rows)],
            "cnt": [float(i) for i in range(start, start + rows)],
        }
    )


def test_register_append_load_history_and_rollback(ws: Workspace) -> None:
    data = ws.data
    first = data.register("sales", _frame(0, 10), time_column="day", key=["day", "hr"])
    assert (first.version, first.rows, first.operation) == (1, 10, "create")
    assert first.columns == ["day", "hr", "cnt"]
    assert data.register("sales", _frame(0, 10), mode="overwrite") == first  # no change
    second = data.register("sales", _frame(10, 5))
    assert (second.version, second.rows, second.operation) == (2, 15, "append")
    assert data.load("sales").shape == (15, 3)
    assert data.load("sales/1").equals(_frame(0, 10))
    assert data.load("sales", version=1, columns=["cnt"]).columns.tolist() == ["cnt"]
    assert data.load("data:/sales@latest")["cnt"].tolist() == [float(i) for i in range(15)]
    assert len(data.load("sales", start="2030-01-05", end="2030-01-08")) == 3
    assert [v.version for v in data.history("sales")] == [1, 2]
    back = data.rollback("sales", 1)
    assert (back.version, back.operation, back.digest) == (3, "rollback", first.digest)
    assert data.load("sales").equals(_frame(0, 10))
    assert [v.version for v in data.history("sales")] == [1, 2, 3]
    assert data.get("sales/2") == second
    assert [d.name for d in data.list()] == ["sales"]
    assert first.profile_digest is not None
    assert ws.artifacts.exists(first.profile_digest)


def test_as_of_is_commit_time(ws: Workspace, tmp_path: Path) -> None:
    clock = SimulatedClock(tmp_path / "clock.json")
    clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    registry = DatasetRegistry(
        catalog=ws.metadata,  # type: ignore[arg-type]  # the SQL store is every catalog
        lineage=ws.metadata,
        tables=ws.artifacts,  # type: ignore[arg-type]  # every artifact store has a table area
        artifacts=None,
        clock=clock,
        actor="tester",
    )
    registry.register("sales", _frame(0, 3))
    middle = clock.now() + timedelta(seconds=30)
    clock.advance(timedelta(seconds=60))
    registry.register("sales", _frame(3, 2))
    assert registry.get("sales", as_of=middle).version == 1
    assert len(registry.load("sales", as_of=clock.now())) == 5
    with pytest.raises(NotFound, match="had no version at"):
        registry.get("sales", as_of=middle - timedelta(days=1))


def test_the_bike_sharing_csv_registers_with_its_source_in_lineage(ws: Workspace) -> None:
    version = ws.data.register("bike", HOUR_CSV, time_column="dteday", key=["dteday", "hr"])
    assert version.rows == 17379
    assert version.source == f"file:{HOUR_CSV.resolve()}"
    assert ws.data.register("bike", str(HOUR_CSV), mode="overwrite") == version
    edges = ws.metadata.edges_into(version.ref)
    assert [(e.source, e.kind) for e in edges] == [(version.source, "source")]
    events = ws.events(types=["dataset.version_created"])
    assert [e.subject for e in events] == ["data:/bike/1"]


def test_a_run_that_loads_a_version_lists_it_in_its_lineage(ws: Workspace) -> None:
    version = ws.data.register("bike", HOUR_CSV)
    ws.data.load("bike")  # outside a run: no edge
    with ws.start_run("demand") as run:
        ws.data.load_table("bike/1", columns=["cnt"])
    lines = ws.lineage(run.id).lines()
    assert f"└── {version.ref} (input)" in lines
    assert any(version.source in line for line in lines)
    assert [e.target for e in ws.metadata.edges_from(version.ref)] == [f"run:{run.id}"]


def test_a_new_column_needs_schema_merge_and_shows_in_the_diff(ws: Workspace) -> None:
    ws.data.register("sales", _frame(0, 4), key=["day", "hr"])
    wider = _frame(4, 2).assign(temp=[1.5, 2.5])
    with pytest.raises(ValidationFailed, match=r"new column\(s\) \['temp'\].*schema='merge'"):
        ws.data.register("sales", wider)
    merged = ws.data.register("sales", wider, schema="merge")
    assert merged.columns == ["day", "hr", "cnt", "temp"]
    diff = ws.data.diff("sales", 1, 2)
    assert diff.columns_added == [("temp", "double")]
    assert (diff.rows_added, diff.rows_removed, diff.rows_changed) == (2, 0, 0)
    assert ws.data.load("sales")["temp"].isna().sum() == 4


def test_diff_by_key_and_by_row_hashes(ws: Workspace) -> None:
    base = _frame(0, 6)
    changed = base.copy()
    changed.loc[0, "cnt"] = 99.0
    changed = pd.concat([changed.drop(index=1), _frame(6, 2)], ignore_index=True)
    for name, key in (("keyed", ["day", "hr"]), ("plain", None)):
        ws.data.register(name, base, key=key)
        ws.data.register(name, changed, mode="overwrite")
    keyed = ws.data.diff("keyed", 1, 2)
    assert (keyed.rows_added, keyed.rows_removed, keyed.rows_changed) == (2, 1, 1)
    plain = ws.data.diff("plain", 1, 2)
    assert (plain.rows_added, plain.rows_removed, plain.rows_changed) == (3, 2, 0)
    cnt = next(c for c in keyed.distributions if c.name == "cnt")
    assert cnt.mean_old == pytest.approx(2.5)
    assert cnt.mean_delta is not None
    assert cnt.mean_delta > 0
    assert ws.data.diff("keyed", 1, 1).unchanged
    assert keyed.to_dict()["rows"]["changed"] == 1


def test_a_failing_check_writes_nothing(ws: Workspace) -> None:
    def refuse(table: pa.Table) -> None:
        raise ValidationFailed(f"{table.num_rows} rows refused")

    with pytest.raises(ValidationFailed, match="10 rows refused"):
        ws.data.register("sales", _frame(0, 10), check=refuse)
    assert ws.data.list() == []
    assert table_files(ws) == []


def test_unknown_datasets_versions_and_aliases_are_clear(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="no dataset 'sales'"):
        ws.data.load("sales")
    ws.data.register("sales", _frame(0, 2))
    with pytest.raises(NotFound, match=r"no version 9 \(latest is 1\)"):
        ws.data.load("sales/9")
    with pytest.raises(NotFound, match="no alias '@production'"):
        ws.data.load("sales@production")
    with pytest.raises(ValidationFailed, match="names a model"):
        ws.data.get("models:/sales/1")
    with pytest.raises(ValidationFailed, match="no column"):
        ws.data.load("sales", columns=["nope"])
    with pytest.raises(ValidationFailed, match="no time column"):
        ws.data.load("sales", start="2030-01-01")


@given(
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True),
    version=st.integers(min_value=1, max_value=10**6),
    kind=st.sampled_from(["data", "models"]),
)
def test_references_round_trip(name: str, version: int, kind: str) -> None:
    ref = parse_ref(f"{kind}:/{name}/{version}")
    assert (ref.name, ref.version, ref.kind) == (name, version, kind)
    assert parse_ref(ref.uri) == ref
    assert parse_ref(f"{name}@production", kind="models").uri == f"models:/{name}@production"


@pytest.mark.parametrize("text", ["", "bike/0", "bike/x", "/bike", "bike@", "s3:/bike", "a b"])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(ValidationFailed, match=r"reference|numbered from 1"):
        parse_ref(text)


@given(values=st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=50))
def test_the_digest_ignores_chunking_and_pandas_metadata(values: list[int]) -> None:
    table = pa.table({"x": values, "s": [str(v) for v in values]})
    cut = len(values) // 2
    chunked = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    assert content_digest(chunked) == content_digest(table)
    assert content_digest(pa.Table.from_pandas(table.to_pandas())) == content_digest(table)
    assert content_digest(table.slice(1)) != content_digest(table)


def test_mc_data_acts_on_the_working_directory_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlcycle as mc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLCYCLE_HOME", str(tmp_path))
    try:
        version = mc.data.register("sales", _frame(0, 3), key=["day", "hr"])
        mc.data.register("sales", _frame(3, 1))
        assert mc.data.get("sales@latest").version == 2
        assert len(mc.data.load("sales/1")) == 3
        assert mc.data.load_table("sales").num_rows == 4
        _, schema, batches = mc.data.scan("sales", columns=["hr"], batch_rows=3)
        assert [b.num_rows for b in batches] == [3, 1]
        assert schema == mc.data.load_table("sales", columns=["hr"]).schema
        assert [v.version for v in mc.data.history("sales")] == [1, 2]
        assert mc.data.diff("sales", 1, 2).rows_added == 1
        assert mc.data.rollback("sales", 1).digest == version.digest
        assert [d.name for d in mc.data.list()] == ["sales"]
        assert mc.data.sql("SELECT 1", "sqlite://").url == "sqlite://"
        assert mc.data.csv("x.csv", delimiter=";").delimiter == ";"
    finally:
        mc.close()


def test_dataset_files_are_parquet_with_lz4(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    with Workspace.open(Settings(home=tmp_path, actor="tester")) as ws:
        ws.data.register("bike", _frame(0, 48))
        files = list(Path(ws.artifacts.table_uri("datasets/bike")).glob("*.parquet"))
    assert files
    for file in files:
        meta = pq.ParquetFile(file).metadata
        assert meta.row_group(0).column(0).compression in {"LZ4", "LZ4_RAW"}  # pyarrow says LZ4
