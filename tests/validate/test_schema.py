"""Schema files: readable YAML that round-trips; hand edits gone wrong point at their line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.errors import SchemaFileError, ValidationFailed
from mlcycle.validate import ColumnSchema, Schema, load_schema, parse_schema

GOOD = """\
# a comment the loader ignores
version: 1
dataset: bike
min_rows: 10
key: [dteday, hr]
columns:
  dteday:
    type: date32[day]
  hr:
    type: int64
    min: 0
    max: 23
  temp:
    type: double
    required: false
    max_missing_fraction: 0.05
    min: -0.1
    max: 1.1
    allow_nan: true
  weather:
    type: string
    domain: [clear, mist, yes]
"""


def test_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "bike.yaml"
    path.write_text(GOOD, encoding="utf-8")
    schema = load_schema(path)
    assert schema.names == ["dteday", "hr", "temp", "weather"]
    assert (schema.key, schema.min_rows, schema.dataset) == (["dteday", "hr"], 10, "bike")
    assert schema.column("hr") == ColumnSchema(name="hr", type="int64", min=0.0, max=23.0)
    temp = schema.column("temp")
    assert (temp.required, temp.max_missing_fraction, temp.allow_nan) == (False, 0.05, True)
    assert schema.column("weather").domain == ["clear", "mist", "yes"]  # yes stays text


def test_save_writes_commented_yaml_that_loads_back(tmp_path: Path) -> None:
    schema = parse_schema(GOOD)
    path = schema.save(tmp_path / "schemas" / "bike.yaml")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# mlcycle schema for bike.")
    assert "  hr:\n    type: int64\n    required: true\n    min: 0\n    max: 23\n" in text
    assert load_schema(path) == schema
    with pytest.raises(KeyError, match="columns: dteday, hr"):
        schema.column("nope")


column_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1)
bounds = st.none() | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    names = draw(st.lists(column_names, min_size=1, max_size=5, unique=True))
    columns = []
    for name in names:
        low, high = sorted([draw(bounds) or 0.0, draw(bounds) or 0.0])
        required = draw(st.booleans())
        columns.append(
            ColumnSchema(
                name=name,
                type=draw(st.sampled_from(["int64", "double", "string", "bool", "float"])),
                required=required,
                max_missing_fraction=0.0 if required else draw(st.floats(0, 1)),
                min=low,
                max=high,
                domain=draw(st.none() | st.lists(column_names, max_size=4)),
                allow_nan=draw(st.booleans()),
                allow_inf=draw(st.booleans()),
            )
        )
    key = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    return Schema(columns=columns, key=key, min_rows=draw(st.integers(0, 100)))


@settings(max_examples=100, deadline=None)
@given(schemas())
def test_yaml_round_trips(schema: Schema) -> None:
    loaded = parse_schema(schema.to_yaml())
    expected_columns = [
        c
        if c.family in {"floating", "decimal"}
        else ColumnSchema(**{**c.__dict__, "allow_nan": False, "allow_inf": False})
        for c in schema.columns
    ]
    assert loaded == Schema(columns=expected_columns, key=schema.key, min_rows=schema.min_rows)
    assert Schema.from_dict(schema.to_dict()) == loaded


BROKEN = [
    # (what, the edit, the line the error must name, words in the message)
    ("syntax error", "    min: [0, 1\n", 12, "flow sequence that starts on line 11"),
    ("unknown field", "    mn: 0\n", 11, "unknown field 'mn' in column 'hr'"),
    ("wrong type", "    min: zero\n", 11, "min of column 'hr' must be a number"),
    ("bad boolean", "    required: maybe\n", 11, "must be true or false"),
    ("min above max", "    min: 30\n", 11, "min 30 greater than max 23"),
    ("not a fraction", "    max_missing_fraction: 2\n", 11, "between 0 and 1"),
]


@pytest.mark.parametrize(("what", "edit", "line", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_hand_edits_gone_wrong_name_file_and_line(
    tmp_path: Path, what: str, edit: str, line: int, words: str
) -> None:
    lines = GOOD.splitlines(keepends=True)
    lines[10] = edit  # replaces `    min: 0` of column hr (line 11)
    path = tmp_path / "bike.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(SchemaFileError) as caught:
        load_schema(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert words in str(caught.value)
    assert caught.value.line == line
    assert isinstance(caught.value, ValidationFailed)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("columns:\n  x:\n    type: int128\n", 3, "unknown type 'int128'"),
        ("columns:\n  x:\n    required: true\n", 3, "has no 'type'"),
        ("key: [y]\ncolumns:\n  x:\n    type: int64\n", 1, "key column 'y'"),
        ("version: 2\ncolumns: {}\n", 1, "unsupported schema version"),
        ("colums:\n  x: {type: int64}\n", 1, "unknown field 'colums' in the schema"),
        ("- a\n- b\n", 1, "must be a mapping"),
        ("dataset: bike\n", 1, "no 'columns'"),
        ("min_rows: -1\ncolumns: {}\n", 1, "min_rows must be a whole number"),
        ("columns:\n  x:\n    type: [int64]\n", 3, "must be a single value"),
        ("columns:\n  x:\n    type: string\n    domain: clear\n", 4, "must be a list"),
        ("columns:\n  x:\n    type: string\n    domain: [[a]]\n", 4, "single value"),
        ("columns:\n  x: {type: int64}\n  x: {type: int64}\n", 3, "names 'x' twice"),
        (
            "columns:\n  x:\n    type: int64\n    required: true\n    max_missing_fraction: 0.5\n",
            5,
            "set required: false",
        ),
    ],
)
def test_other_mistakes_point_at_their_line(text: str, line: int, words: str) -> None:
    with pytest.raises(SchemaFileError, match=words) as caught:
        parse_schema(text, source="s.yaml")
    assert str(caught.value).startswith(f"s.yaml:{line}: ")


def test_missing_empty_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(SchemaFileError, match="does not exist"):
        load_schema(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(SchemaFileError, match="empty"):
        load_schema(tmp_path / "empty.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"columns:\n  caf\xe9: {type: int64}\n")
    with pytest.raises(SchemaFileError, match="not UTF-8"):
        load_schema(tmp_path / "latin.yaml")


def test_every_arrow_type_of_an_inferred_schema_loads_back() -> None:
    import pyarrow as pa

    from mlcycle.validate import infer_schema

    table = pa.table(
        {
            "i8": pa.array([1], pa.int8()),
            "u64": pa.array([1], pa.uint64()),
            "f16": pa.array([1.5], pa.float16()),
            "f32": pa.array([1.5], pa.float32()),
            "dec": pa.array([1], pa.decimal128(10, 2)),
            "s": pa.array(["a"], pa.large_string()),
            "sv": pa.array(["a"], pa.string_view()),
            "dict": pa.array(["a"]).dictionary_encode(),
            "bin": pa.array([b"a"], pa.binary(1)),
            "d64": pa.array([0], pa.date64()),
            "ts": pa.array([0], pa.timestamp("ns", tz="Europe/Paris")),
            "t": pa.array([0], pa.time64("us")),
            "dur": pa.array([0], pa.duration("s")),
            "nul": pa.array([None], pa.null()),
            "l": pa.array([[1]], pa.large_list(pa.int64())),
            "st": pa.array([{"a": 1}]),
            "m": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
        }
    )
    schema = infer_schema(table)
    assert [c.type for c in schema.columns] == [str(t) for t in table.schema.types]
    assert parse_schema(schema.to_yaml()) == schema
