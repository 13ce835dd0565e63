"""Awkward values reach every backend alike: long text, NUL bytes, long names and references.

SQLite stores whatever it is given; PostgreSQL refuses NUL in text and text
longer than a column's limit, and sorts by its collation. Each case here is
either stored and read back the same, or refused the same way, on every
store set-up, with nothing written when it is refused.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from tests.data.conftest import Stores, table_files

from mlcycle.errors import ValidationFailed
from mlcycle.workspace import Workspace

LONG = "x" * 100_000


def test_long_text_and_nul_bytes_in_values_and_long_names_round_trip(ws: Workspace) -> None:
    wide = "c" * 256
    table = pa.table(
        {
            "note": [LONG, "a\x00b", "plain"],
            "kéy": [1, 2, 3],
            wide: ["2030-01-01", "2030-01-02", "2030-01-03"],
        }
    )
    version = ws.data.register("notes", table, time_column=wide, key=["kéy"], description=LONG)
    assert version.columns == ["note", "kéy", wide]
    assert ws.data.load_table("notes").to_pylist() == table.to_pylist()
    dataset = ws.data.list()[0]
    assert (dataset.time_column, dataset.key, dataset.description) == (wide, ("kéy",), LONG)
    assert ws.data.get("notes/1") == version
    assert ws.data.load("notes", start="2030-01-02")["kéy"].tolist() == [2, 3]
    more = pa.table({"note": [LONG + "\x00"], "kéy": [4], wide: ["2030-01-04"]})
    assert ws.data.register("notes", more).rows == 4
    assert ws.data.diff("notes", 1, 2).rows_added == 1


def test_text_the_store_cannot_keep_is_refused_before_anything_is_written(ws: Workspace) -> None:
    table = pa.table({"c" * 257: ["2030-01-01"], "n": [1]})
    with pytest.raises(
        ValidationFailed, match=r"time column name .* 257 characters; the most is 256"
    ):
        ws.data.register("notes", table, time_column="c" * 257)
    with pytest.raises(ValidationFailed, match=r"description .* NUL character"):
        ws.data.register("notes", table, description="a\x00b")
    assert ws.data.list() == []
    assert table_files(ws) == []


def test_pii_examples_with_nul_bytes_are_recorded(ws: Workspace) -> None:
    emails = [f"user{i}\x00@example.com" if i % 2 else f"user{i}@example.com" for i in range(20)]
    version = ws.data.register("people", pa.table({"contact": emails}))
    assert [(f.column, f.kind) for f in ws.data.policy(version)] == [("contact", "email")]
    assert ws.data.policy("people/1") == ws.data.policy(version)


@pytest.mark.parametrize("actor", ["a" * 257, "ana\x00"])
def test_an_actor_the_store_cannot_keep_is_refused_before_anything_is_written(
    tmp_path: Path, stores: Stores, actor: str
) -> None:
    with Workspace.open(stores.settings(tmp_path, actor)) as ws:
        with pytest.raises(ValidationFailed, match=r"actor .* 1 to 256 characters"):
            ws.data.register("sales", pa.table({"n": [1, 2]}))
        assert ws.data.list() == []
        assert table_files(ws) == []
    with Workspace.open(stores.settings(tmp_path, "a" * 256)) as ws:
        assert ws.data.register("sales", pa.table({"n": [1, 2]})).actor == "a" * 256


def test_a_long_source_path_is_cut_to_a_reference_in_lineage(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path
    for part in range(12):  # a path of about 1,200 characters
        folder /= f"{part:02d}" + "d" * 97
    folder.mkdir(parents=True)
    path = folder / "rides .csv"
    path.write_text("a,b\n1,2\n")
    version = ws.data.register("rides", path)
    assert version.source == f"file:{path}"
    [edge] = ws.metadata.edges_into(version.ref)
    assert len(edge.source) <= 1000
    assert edge.source.startswith("file:" + str(tmp_path))
    other = folder / "rides2.csv"
    other.write_text("a,b\n1,2\n3,4\n")
    second = ws.data.register("rides", other, mode="overwrite")
    [edge2] = ws.metadata.edges_into(second.ref)
    assert edge2.source != edge.source  # cut sources stay distinct
    assert len(edge2.source) <= 1000


def test_datasets_list_in_code_point_order(ws: Workspace) -> None:
    names = ["b", "B", "a-1", "a_1", "a.1", "A", "a1", "0a"]
    for name in names:
        ws.data.register(name, pa.table({"n": [1]}))
    assert [d.name for d in ws.data.list()] == sorted(names)
