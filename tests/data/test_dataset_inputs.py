"""Bad input to dataset registration: clear errors naming file and line, nothing registered."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.data.conftest import Stores

from mlcycle.data import CsvFile, SqlQuery
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.workspace import Workspace


def _nothing_registered(ws: Workspace) -> None:
    assert ws.data.list() == []
    assert ws.events(types=["dataset.version_created"]) == []


def test_a_ragged_csv_names_the_file_and_line(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n")
    with pytest.raises(ValidationFailed, match=r"ragged\.csv, line 4: expected 3 fields, found 2"):
        ws.data.register("x", path)
    _nothing_registered(ws)


def test_a_csv_that_is_not_utf8_names_the_line(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name,n\nana,1\nJos\u00e9,2\n".encode("latin-1"))
    with pytest.raises(ValidationFailed, match=r"latin\.csv, line 3: the bytes are not UTF-8"):
        ws.data.register("x", path)
    _nothing_registered(ws)


def test_a_csv_with_another_delimiter_says_which(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(ValidationFailed, match=r"semi\.csv, line 1: .*';'-delimited"):
        ws.data.register("x", path)
    _nothing_registered(ws)
    version = ws.data.register("x", CsvFile(path, delimiter=";"))
    assert version.columns == ["a", "b", "c"]


def test_missing_files_empty_data_and_unknown_types_are_refused(
    ws: Workspace, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match=r"nope\.csv does not exist"):
        ws.data.register("x", tmp_path / "nope.csv")
    with pytest.raises(NotFound, match="no file matches"):
        ws.data.register("x", str(tmp_path / "*.parquet"))
    with pytest.raises(ValidationFailed, match="has no rows"):
        ws.data.register("x", pd.DataFrame({"a": pd.Series([], dtype="int64")}))
    (tmp_path / "notes.xlsx").write_bytes(b"x")
    with pytest.raises(ValidationFailed, match="unknown file type"):
        ws.data.register("x", tmp_path / "notes.xlsx")
    with pytest.raises(ValidationFailed, match="cannot register a dict"):
        ws.data.register("x", {"a": [1]})
    with pytest.raises(ValidationFailed, match="dataset name"):
        ws.data.register("bad name", pd.DataFrame({"a": [1]}))
    _nothing_registered(ws)


def test_sql_queries_register_and_failing_ones_say_why(ws: Workspace, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE sales (day TEXT, cnt INTEGER)")
        conn.executemany("INSERT INTO sales VALUES (?, ?)", [("2030-01-01", 3), ("2030-01-02", 4)])
    conn.close()
    url = f"sqlite:///{db}"
    with pytest.raises(ValidationFailed, match=r"the query failed on .*no such table: nope"):
        ws.data.register("sales", SqlQuery("SELECT * FROM nope", url))
    _nothing_registered(ws)
    version = ws.data.register("sales", SqlQuery("SELECT * FROM sales ORDER BY day", url))
    assert (version.rows, version.source) == (2, f"sql:{url}")


def test_parquet_globs_polars_and_arrow_sources(ws: Workspace, tmp_path: Path) -> None:
    for part in range(3):
        pq.write_table(pa.table({"a": [part, part]}), tmp_path / f"part-{part}.parquet")
    version = ws.data.register("parts", str(tmp_path / "part-*.parquet"))
    assert ws.data.load("parts")["a"].tolist() == [0, 0, 1, 1, 2, 2]
    assert version.source.startswith(f"file:{tmp_path}")
    again = ws.data.register("parts", pl.DataFrame({"a": [0, 0, 1, 1, 2, 2]}), mode="overwrite")
    assert again == version  # same rows, same schema: no new version
    arrow = ws.data.register("parts", pa.table({"a": [7]}))
    assert (arrow.version, arrow.rows) == (2, 7)


def test_an_append_with_conflicting_types_leaves_the_table_unchanged(ws: Workspace) -> None:
    first = ws.data.register("sales", pd.DataFrame({"day": ["a", "b"], "cnt": [1, 2]}))
    bad = pd.DataFrame({"day": ["c"], "cnt": ["many"]})
    with pytest.raises(
        ValidationFailed, match=r"'cnt' is int64 in version 1 but large_string.*mode='overwrite'"
    ):
        ws.data.register("sales", bad)
    assert ws.data.history("sales") == [first]
    assert ws.data.load("sales")["cnt"].tolist() == [1, 2]
    replaced = ws.data.register("sales", bad, mode="overwrite")
    assert (replaced.version, replaced.types) == (2, ["large_string", "large_string"])


def _append(home: str, worker: int, times: int, stores: Stores) -> None:
    with Workspace.open(stores.settings(home, f"w{worker}")) as ws:
        for index in range(times):
            ws.data.register("shared", pd.DataFrame({"w": [worker] * 3, "i": [index] * 3}))


@pytest.mark.slow
def test_two_processes_appending_at_once_both_land_as_versions(
    tmp_path: Path, stores: Stores
) -> None:
    # The workers inherit the bucket's credentials from the environment.
    with Workspace.open(stores.settings(tmp_path)) as ws:
        ws.data.register("shared", pd.DataFrame({"w": [-1], "i": [-1]}))
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append, args=(str(tmp_path), w, 4, stores)) for w in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [worker.exitcode for worker in workers] == [0, 0]
    with Workspace.open(stores.settings(tmp_path)) as ws:
        history = ws.data.history("shared")
        assert [v.version for v in history] == list(range(1, 10))
        assert [v.rows for v in history] == [1 + 3 * n for n in range(9)]
        deltas = [v.delta_version for v in history]
        assert deltas == sorted(deltas)
        assert len(set(deltas)) == len(deltas)
        frame = ws.data.load("shared")
        assert len(frame) == 25
        assert sorted(frame.groupby("w").size().tolist()) == [1, 12, 12]
        for version in history:
            assert len(ws.data.load(version.ref.removeprefix("data:/"))) == version.rows
