"""``DatasetRegistry.scan``: a version streamed in row order, typed as ``load_table`` gives it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.errors import MlcycleError, NotFound, ValidationFailed
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace


def _part(start: int, rows: int) -> pa.Table:
    index = np.arange(start, start + rows)
    return pa.table(
        {
            "id": pa.array(index, pa.int64()),
            "x": pa.array(index * 0.5),
            "name": pa.array([f"n{i}" for i in index]),
            "day": pa.array([dt.date(2030, 1, 1) + dt.timedelta(days=int(i % 30)) for i in index]),
            "at": pa.array(
                [
                    dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=int(i))
                    for i in index
                ],
                pa.timestamp("ns", tz="UTC"),
            ),
        }
    )


def _stream(ws: Workspace, ref: str, **options: object) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    _, schema, batches = ws.data.scan(ref, **options)  # type: ignore[arg-type]
    return schema, list(batches)


def test_a_version_of_many_appends_streams_in_row_order_as_load_table_reads_it(
    ws: Workspace,
) -> None:
    for start, rows in ((0, 1_000), (1_000, 500), (1_500, 2_500), (4_000, 1_000)):
        ws.data.register("events", _part(start, rows))  # one Delta file per append
    whole = ws.data.load_table("events/4")
    schema, batches = _stream(ws, "events/4", batch_rows=300)
    assert schema == whole.schema
    assert all(batch.schema == whole.schema for batch in batches)
    assert max(batch.num_rows for batch in batches) <= 300
    assert pa.Table.from_batches(batches, schema).equals(whole)
    earlier, _ = _stream(ws, "events/2")
    assert earlier == ws.data.load_table("events/2").schema
    assert sum(b.num_rows for b in _stream(ws, "events/2")[1]) == 1_500


def test_columns_are_chosen_and_a_column_added_by_a_merge_is_null_in_older_files(
    ws: Workspace,
) -> None:
    ws.data.register("events", _part(0, 100))
    ws.data.register(
        "events", _part(100, 50).append_column("extra", pa.array(range(50))), schema="merge"
    )
    whole = ws.data.load_table("events/2", columns=["extra", "id"])
    schema, batches = _stream(ws, "events/2", columns=["extra", "id"], batch_rows=64)
    assert schema.names == ["extra", "id"]
    assert pa.Table.from_batches(batches, schema).equals(whole)
    assert whole.column("extra").null_count == 100


def test_a_scan_inside_a_run_records_the_version_as_its_input(ws: Workspace) -> None:
    version = ws.data.register("events", _part(0, 10))
    _stream(ws, "events")  # outside a run: no edge
    with ws.start_run("score") as run:
        _stream(ws, "events/1")
    assert [e.target for e in ws.metadata.edges_from(version.ref)] == [f"run:{run.id}"]


def test_unknown_versions_columns_and_bad_batch_sizes_are_refused(ws: Workspace) -> None:
    ws.data.register("events", _part(0, 10))
    with pytest.raises(NotFound):
        ws.data.scan("events/9")
    with pytest.raises(ValidationFailed, match=r"has no column\(s\) \['nope'\]"):
        ws.data.scan("events", columns=["id", "nope"])
    with pytest.raises(ValidationFailed, match="batch_rows=0 must be at least 1"):
        ws.data.scan("events", batch_rows=0)


def test_a_data_file_whose_rows_are_out_of_order_is_refused(tmp_path: Path) -> None:
    with Workspace.open(Settings(home=tmp_path)) as ws:
        ws.data.register("events", _part(0, 10))
        folder = Path(ws.settings.artifacts_url) / "tables" / "datasets" / "events"
        (file,) = folder.glob("*.parquet")
        table = pq.read_table(file)
        pq.write_table(table.take(list(reversed(range(10)))), file)
        _, _, batches = ws.data.scan("events")
        with pytest.raises(MlcycleError, match="not in the order their numbers say"):
            list(batches)


def test_files_without_row_statistics_are_read_through_the_ordered_scan(ws: Workspace) -> None:
    """delta-rs keeps statistics of the first 32 columns only: a wide table with a nested
    column (written by delta-rs) has none for the row number, and is still read in order."""
    wide = {f"c{i:02d}": pa.array(np.arange(40) * i) for i in range(33)}
    tags = pa.array([[f"t{i}"] for i in range(40)])
    ws.data.register("wide", pa.table({**wide, "tags": tags}).take(list(reversed(range(40)))))
    schema, batches = _stream(ws, "wide/1", batch_rows=16)
    # load_table leaves DataFusion's string views inside lists; scan gives plain strings
    assert schema.field("tags").type.value_type == pa.string()
    assert schema.names == ws.data.get("wide/1").columns
    streamed = pa.Table.from_batches(batches, schema)
    assert streamed.to_pylist() == ws.data.load_table("wide/1").to_pylist()
    assert [b.num_rows for b in batches] == [16, 16, 8]
    assert batches[0].column("c01")[0].as_py() == 39


def test_files_whose_row_statistics_do_not_line_up_are_read_through_the_ordered_scan(
    tmp_path: Path,
) -> None:
    """Statistics a file cannot have (a run of 4 numbers for 5 rows) are not trusted."""
    with Workspace.open(Settings(home=tmp_path)) as ws:
        ws.data.register("events", _part(0, 10))
        ws.data.register("events", _part(10, 5))
        log = Path(ws.settings.artifacts_url) / "tables/datasets/events/_delta_log"
        commit = log / "00000000000000000001.json"
        text = commit.read_text()
        assert '"minValues":{' in text.replace("\\", "")
        commit.write_text(text.replace('\\"_mlcycle_row\\":10}', '\\"_mlcycle_row\\":11}', 1))
        schema, batches = _stream(ws, "events/2", batch_rows=4)
        assert pa.Table.from_batches(batches, schema).equals(ws.data.load_table("events/2"))
        assert [b.num_rows for b in batches] == [4, 4, 4, 3]
