"""A file registered again is recognised by its bytes; the dataset files' Parquet options."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.data._delta_files import file_fingerprint, single_file, write_data_files
from mlcycle.workspace import Workspace


def _write(path: Path, values: list[float]) -> None:
    pq.write_table(pa.table({"id": list(range(len(values))), "x": values}), path)


def test_the_same_file_again_makes_no_version(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    _write(path, [1.0, 2.0, 3.0])
    first = ws.data.register("d", path, key=["id"])
    assert ws.data.register("d", str(path), mode="overwrite") == first
    assert ws.data.register("d", path, mode="overwrite", key=["id"]) == first
    assert [v.version for v in ws.data.history("d")] == [1]
    # recognised by its bytes, before any decoding
    same = ws.data._same_file("d", path.resolve(), time_column=None, key=None)
    assert same == first


def test_a_file_changed_in_place_with_the_same_size_and_time_is_read_again(
    ws: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "data.parquet"
    _write(path, [1.0, 2.0, 3.0])
    first = ws.data.register("d", path)
    state = path.stat()
    _write(path, [1.0, 2.0, 4.0])  # same types and row count: same size
    os.utime(path, ns=(state.st_atime_ns, state.st_mtime_ns))
    assert path.stat().st_size == state.st_size
    second = ws.data.register("d", path, mode="overwrite")
    assert (second.version, second.digest != first.digest) == (2, True)
    assert ws.data.load("d")["x"].tolist() == [1.0, 2.0, 4.0]
    assert ws.data.register("d", path, mode="overwrite") == second


def test_a_rollback_or_an_append_in_between_means_the_file_is_read(
    ws: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,x\n0,1.5\n1,2.5\n")
    first = ws.data.register("d", path)
    appended = ws.data.register("d", path)  # append: the rows twice
    assert (appended.version, appended.rows) == (2, 4)
    back = ws.data.register("d", path, mode="overwrite")  # the file's rows only: new version
    assert (back.version, back.rows, back.digest) == (3, 2, first.digest)
    assert ws.data.register("d", path, mode="overwrite") == back
    ws.data.rollback("d", 2)
    again = ws.data.register("d", path, mode="overwrite")
    assert (again.version, again.rows) == (5, 2)


def test_checks_still_run_on_an_unchanged_file(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    _write(path, [1.0])
    ws.data.register("d", path)
    seen: list[int] = []
    ws.data.register("d", path, mode="overwrite", check=lambda t: seen.append(t.num_rows))
    assert seen == [1]


def test_fingerprints_name_bytes_and_globs_are_not_single_files(tmp_path: Path) -> None:
    one, other = tmp_path / "a.csv", tmp_path / "b.csv"
    one.write_text("x\n1\n")
    other.write_text("x\n2\n")
    first, second = file_fingerprint(one), file_fingerprint(other)
    assert first is not None
    assert second is not None
    assert first.size == second.size
    assert first.app_id != second.app_id
    assert file_fingerprint(one) == first
    assert single_file(tmp_path / "*.csv") is None
    assert single_file(tmp_path / "missing.csv") is None
    assert single_file(tmp_path) is None
    assert single_file(pa.table({"x": [1]})) is None
    assert single_file(str(one)) == one.resolve()
    assert file_fingerprint(tmp_path / "missing.csv") is None


def test_float_columns_are_written_without_a_dictionary(ws: Workspace, tmp_path: Path) -> None:
    ws.data.register("d", pa.table({"n": [1, 1, 2], "x": [0.5, 0.5, 1.5], "c": ["a", "a", "b"]}))
    if ws.artifacts.table_uri("datasets/d").startswith("s3:"):
        return
    files = list(Path(ws.artifacts.table_uri("datasets/d")).glob("*.parquet"))
    meta = pq.ParquetFile(files[0]).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)
    }
    assert not any("DICTIONARY" in e for e in encodings["x"])
    assert not any("DICTIONARY" in e for e in encodings["_mlcycle_row"])
    assert any("DICTIONARY" in e for e in encodings["c"])


def test_new_tables_keep_their_commit_log(ws: Workspace) -> None:
    from deltalake import DeltaTable

    ws.data.register("kept", pa.table({"n": [1, 2]}))
    ws.data.register("kept", pa.table({"n": [3]}), mode="append")
    uri = ws.artifacts.table_uri("datasets/kept")
    table = DeltaTable(uri, storage_options=ws.artifacts.storage_options() or None)
    # delta-rs deletes commit files older than 30 days at checkpoints unless this is off,
    # which would make old versions unreadable: history is never deleted.
    assert table.metadata().configuration == {"delta.enableExpiredLogCleanup": "false"}
    assert ws.data.load("kept/1")["n"].tolist() == [1, 2]


def test_integer_columns_that_would_outgrow_the_dictionary_are_written_plain(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(5)
    rows = 300_000  # one file, more rows than a 1 MiB dictionary page holds int64 values
    table = pa.table(
        {
            "ids": rng.permutation(rows).astype(np.int64),  # every value distinct
            "wide": rng.integers(0, 10**12, rows),  # random over a huge range
            "codes": rng.integers(0, 1_000, rows),  # repeats: the dictionary pays
            "narrow": rng.permutation(rows).astype(np.int32),  # 4-byte values: left as they were
            "gappy": pa.array([None if k % 3 else k for k in range(rows)], pa.int64()),
        }
    )
    [action] = write_data_files(str(tmp_path), table)
    written = pq.ParquetFile(tmp_path / action.path)
    meta = written.metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(5)}
    assert not any("DICTIONARY" in e for e in encodings["ids"])
    assert not any("DICTIONARY" in e for e in encodings["wide"])
    assert any("DICTIONARY" in e for e in encodings["codes"])
    assert any("DICTIONARY" in e for e in encodings["narrow"])
    assert any("DICTIONARY" in e for e in encodings["gappy"])  # 2 in 3 sampled rows are null
    assert written.read().equals(table)
