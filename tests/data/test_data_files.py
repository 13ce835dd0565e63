"""Dataset files written by pyarrow and committed to Delta: same rows, digests and statistics."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from mlcycle.data import content_digest
from mlcycle.data._content import canonical
from mlcycle.data._datasets import ROW_COLUMN, TABLE_PROPERTIES
from mlcycle.data._delta_files import commit_files, fits_as_files, write_data_files
from mlcycle.workspace import Workspace


def _every_plain_type(rows: int) -> pa.Table:
    utc = dt.UTC
    return pa.table(
        {
            "i8": pa.array([i % 100 - 50 if i % 7 else None for i in range(rows)], pa.int8()),
            "i64": pa.array([i * 1_000_003 if i % 5 else None for i in range(rows)], pa.int64()),
            "f32": pa.array([i / 3 for i in range(rows)], pa.float32()),
            "f64": pa.array([float("nan") if i % 11 == 0 else i / 7 for i in range(rows)]),
            "b": pa.array([None if i % 13 == 0 else i % 2 == 0 for i in range(rows)]),
            "s": pa.array(
                [f"v{i % 17}é" if i % 3 else None for i in range(rows)], pa.large_string()
            ),
            "bin": pa.array([bytes([i % 256]) * (i % 4) for i in range(rows)], pa.large_binary()),
            "d": pa.array([dt.date(2030, 1, 1) + dt.timedelta(days=i) for i in range(rows)]),
            "ts": pa.array(
                [
                    dt.datetime(2030, 1, 1, tzinfo=utc) + dt.timedelta(microseconds=i)
                    for i in range(rows)
                ],
                pa.timestamp("us", "UTC"),
            ),
            "ntz": pa.array(
                [dt.datetime(2030, 1, 1) + dt.timedelta(seconds=i) for i in range(rows)],  # noqa: DTZ001
                pa.timestamp("us"),
            ),
            "dec": pa.array([decimal.Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
        }
    )


def _same_rows(found: pa.Table, expected: pa.Table) -> None:
    """Equal tables, NaN equal to NaN (``Table.equals`` says NaN differs from itself)."""
    expected = canonical(expected)
    assert found.schema == expected.schema
    for name in expected.column_names:
        if pa.types.is_floating(expected.schema.field(name).type):
            np.testing.assert_array_equal(found[name].to_numpy(), expected[name].to_numpy())
        else:
            assert found[name].equals(expected[name]), name


def test_every_plain_type_round_trips_with_its_digest(ws: Workspace) -> None:
    table = _every_plain_type(500)
    version = ws.data.register("types", table)
    loaded = ws.data.load_table("types")
    _same_rows(loaded, table)
    assert version.digest == content_digest(table) == content_digest(loaded)
    # the same content again is no change, and an append keeps both parts in order
    assert ws.data.register("types", table, mode="overwrite") == version
    appended = ws.data.register("types", table.slice(0, 10), mode="append")
    assert appended.rows == 510
    _same_rows(ws.data.load_table("types"), pa.concat_tables([table, table[:10]]))


def test_a_large_table_is_split_into_files_that_keep_the_row_order(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    table = _every_plain_type(3000)
    numbered = table.append_column(ROW_COLUMN, pa.array(range(3000), pa.int64()))
    files = write_data_files(uri, numbered, plain=(ROW_COLUMN,), part_bytes=numbered.nbytes // 2)
    assert len(files) == 2
    assert [json.loads(f.stats)["numRecords"] for f in files] == [1500, 1500]
    assert DeltaTable.is_deltatable(uri) is False  # written, not yet committed: no table
    commit_files(
        uri,
        None,
        files,
        mode="overwrite",
        schema=numbered.schema,
        storage_options=None,
        configuration=TABLE_PROPERTIES,
        commit_properties=None,
    )
    delta = DeltaTable(uri)
    assert delta.version() == 0
    assert delta.metadata().configuration == TABLE_PROPERTIES
    assert "timestampNtz" in (delta.protocol().reader_features or [])
    _same_rows(canonical(_scan(delta)).sort_by(ROW_COLUMN), numbered)


def _scan(delta: DeltaTable) -> pa.Table:
    from deltalake import QueryBuilder

    return pa.table(QueryBuilder().register("t", delta).execute('SELECT * FROM "t"'))


def test_statistics_match_what_delta_rs_records(tmp_path: Path) -> None:
    table = _every_plain_type(400)
    ours = write_data_files(str(tmp_path / "ours"), table)
    write_deltalake(str(tmp_path / "theirs"), table)
    [theirs] = pa.table(DeltaTable(str(tmp_path / "theirs")).get_add_actions()).to_pylist()
    mine = json.loads(ours[0].stats)
    assert mine["numRecords"] == theirs["num_records"] == 400
    recorded = {name: n for name, n in theirs["null_count"].items() if n is not None}
    assert recorded.items() <= mine["nullCount"].items()  # delta-rs counts no binary nulls
    for bound, key in (("minValues", "min"), ("maxValues", "max")):
        for name, value in mine[bound].items():
            assert (
                value == pytest.approx(theirs[key][name])
                if isinstance(value, float)
                else (value == theirs[key][name])
            ), (bound, name)
    assert set(mine["minValues"]) == {"i8", "i64", "f32", "f64", "b", "s"}


def test_schema_changes_and_other_types_go_through_delta_rs(ws: Workspace, tmp_path: Path) -> None:
    plain = pa.schema([("n", pa.int64())])
    assert fits_as_files(str(tmp_path), None, plain)
    assert not fits_as_files("s3://bucket/t", None, plain)
    for odd in (pa.uint32(), pa.list_(pa.int64()), pa.struct([("a", pa.int64())]), pa.null()):
        assert not fits_as_files(str(tmp_path), None, pa.schema([("x", odd)]))
    ws.data.register("evolving", pa.table({"n": [1, 2]}))
    wider = pa.table({"n": [3], "m": ["x"]})
    merged = ws.data.register("evolving", wider, mode="append", schema="merge")
    assert merged.columns == ["n", "m"]
    assert ws.data.load_table("evolving")["m"].to_pylist() == [None, None, "x"]
    nested = pa.table({"l": [[1, 2], None], "n": [1, 2]})
    replaced = ws.data.register("evolving", nested, mode="overwrite")
    assert replaced.digest == content_digest(nested)
    assert ws.data.register("evolving", nested, mode="overwrite") == replaced
    assert ws.data.load("evolving/1")["n"].tolist() == [1, 2]
