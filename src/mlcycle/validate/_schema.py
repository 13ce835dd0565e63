"""The schema a dataset must satisfy, and its reviewable YAML file.

A schema lives in the project (``schemas/bike.yaml``) so it is reviewed and
versioned with the code. People edit it by hand, so loading checks every field
and names the file and line of the first mistake, using the positions PyYAML's
``compose`` keeps on each node.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlcycle.errors import SchemaFileError, ValidationFailed

__all__ = ["FORMAT_VERSION", "ColumnSchema", "Schema", "load_schema", "type_family"]

FORMAT_VERSION = 1

_UNIT = r"\[(s|ms|us|ns)(, tz=[^\]]+)?\]"
_FAMILIES: Sequence[tuple[re.Pattern[str], str]] = tuple(
    (re.compile(pattern), family)
    for pattern, family in (
        (r"u?int(8|16|32|64)", "integer"),
        (r"halffloat|float|double", "floating"),
        (r"decimal(32|64|128|256)\(\d+, -?\d+\)", "decimal"),
        (r"bool", "boolean"),
        (r"(large_)?string|string_view|utf8|large_utf8", "string"),
        (r"dictionary<values=(large_)?string, .*>", "string"),
        (r"(large_)?binary|binary_view|fixed_size_binary\[\d+\]", "binary"),
        (r"date32\[day\]|date64\[ms\]", "date"),
        ("timestamp" + _UNIT, "timestamp"),
        (r"time(32|64)\[(s|ms|us|ns)\]", "time"),
        (r"duration\[(s|ms|us|ns)\]", "duration"),
        (r"null", "null"),
        (r"(large_|fixed_size_)?list<.*>", "list"),
        (r"struct<.*>|map<.*>", "struct"),
        (r"dictionary<.*>", "dictionary"),
    )
)


def type_family(type_name: str) -> str | None:
    """The family of an Arrow type string (``int32`` -> ``integer``), or None if unknown."""
    for pattern, family in _FAMILIES:
        if pattern.fullmatch(type_name):
            return family
    return None


@dataclass(frozen=True)
class ColumnSchema:
    """What one column may hold.

    ``required`` means no nulls at all; otherwise at most ``max_missing_fraction``
    of the rows may be null. ``min``/``max`` bound the finite numeric values,
    ``domain`` lists the allowed categories of a string column.
    """

    name: str
    type: str
    required: bool = True
    max_missing_fraction: float = 0.0
    min: float | None = None
    max: float | None = None
    domain: list[str] | None = None
    allow_nan: bool = False
    allow_inf: bool = False

    @property
    def family(self) -> str:
        """The type family data of this column must belong to."""
        return type_family(self.type) or self.type

    def to_dict(self) -> dict[str, Any]:
        """Fields that say something (defaults left out), in a fixed order."""
        data: dict[str, Any] = {"type": self.type, "required": self.required}
        if not self.required:
            data["max_missing_fraction"] = self.max_missing_fraction
        for key in ("min", "max"):
            bound = getattr(self, key)
            if bound is not None:
                data[key] = int(bound) if bound.is_integer() and abs(bound) < 2**53 else bound
        if self.domain is not None:
            data["domain"] = list(self.domain)
        if self.family in {"floating", "decimal"}:
            data["allow_nan"] = self.allow_nan
            data["allow_inf"] = self.allow_inf
        return data


@dataclass(frozen=True)
class Schema:
    """Columns in order, an optional unique key and the minimum row count."""

    columns: list[ColumnSchema]
    key: list[str] = field(default_factory=list)
    min_rows: int = 1
    dataset: str | None = None

    def column(self, name: str) -> ColumnSchema:
        """The rule for column ``name``; raises ``KeyError`` naming the known columns."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"no column {name!r} in the schema (columns: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        """Column names in schema order."""
        return [column.name for column in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """The YAML document as plain values."""
        data: dict[str, Any] = {"version": FORMAT_VERSION}
        if self.dataset is not None:
            data["dataset"] = self.dataset
        data["min_rows"] = self.min_rows
        data["key"] = list(self.key)
        data["columns"] = {column.name: column.to_dict() for column in self.columns}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        """Build a schema from :meth:`to_dict` output, checking it as a file would be."""
        return parse_schema(yaml.safe_dump(dict(data), sort_keys=False), source="<dict>")

    def to_yaml(self) -> str:
        """Readable YAML with a commented header explaining each field."""
        data = self.to_dict()
        body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        if yaml.safe_load(body) != data:  # PyYAML writes some line breaks (U+0085) raw
            body = yaml.safe_dump(data, sort_keys=False, width=100)
        return _HEADER.format(name=self.dataset or "a dataset") + body

    def save(self, path: Path | str) -> Path:
        """Write :meth:`to_yaml` to ``path`` (folders created); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_yaml(), encoding="utf-8")
        return target


_HEADER = """\
# mlcycle schema for {name}.
# Review it and keep it with the code; `mlcycle data validate` and mc.validate.check use it.
# Per column:
#   type                  Arrow type; data of the same family passes (int32 ~ int64,
#                         string ~ large_string; integers pass where floats are expected)
#   required              true: no missing (null) values at all
#   max_missing_fraction  when not required: the largest fraction of null rows allowed
#   min, max              bounds for the finite numeric values
#   domain                the allowed values of a categorical column
#   allow_nan, allow_inf  whether NaN / infinite floats are allowed
# key: columns whose values together must be unique; min_rows: the fewest rows allowed.
"""


def load_schema(path: Path | str) -> Schema:
    """Read a schema file; mistakes raise :class:`SchemaFileError` naming the file and line."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SchemaFileError(f"schema file {source} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise SchemaFileError(f"{source}: not UTF-8 text ({exc.reason})") from exc
    return parse_schema(text, source=str(source))


def parse_schema(text: str, *, source: str = "<string>") -> Schema:
    """Parse schema YAML; ``source`` names the file in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or "invalid YAML"
        context = exc.context_mark
        if exc.context and context is not None and context.line + 1 != line:
            problem += f" ({exc.context} that starts on line {context.line + 1})"
        raise SchemaFileError(
            f"{source}:{line}: invalid YAML: {problem}", source=source, line=line
        ) from exc
    except yaml.YAMLError as exc:
        raise SchemaFileError(f"{source}: invalid YAML: {exc}", source=source) from exc
    if node is None:
        raise SchemaFileError(f"{source}: the file is empty; expected a schema", source=source)
    return _parse(node, source)


_TOP_FIELDS = ("version", "dataset", "min_rows", "key", "columns")
_COLUMN_FIELDS = (
    "type",
    "required",
    "max_missing_fraction",
    "min",
    "max",
    "domain",
    "allow_nan",
    "allow_inf",
)


class _Reader:
    """Checks YAML nodes one by one, raising errors that carry the node's line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, message: str) -> SchemaFileError:
        line = node.start_mark.line + 1
        return SchemaFileError(f"{self.source}:{line}: {message}", source=self.source, line=line)

    def mapping(
        self, node: yaml.Node, what: str, known: Sequence[str] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of names to values")
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.fail(key_node, f"{what} has a key that is not a name")
            if known is not None and key not in known:
                raise self.fail(
                    key_node, f"unknown field {key!r} in {what} (known: {', '.join(known)})"
                )
            if key in entries:
                raise self.fail(key_node, f"{what} names {key!r} twice")
            entries[key] = (key_node, value_node)
        return entries

    def scalar(self, node: yaml.Node, what: str) -> Any:  # Any: a YAML scalar of any type
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a list or mapping")
        return yaml.safe_load(yaml.serialize(node))

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, what)
        if not isinstance(value, bool):
            raise self.fail(node, f"{what} must be true or false, not {value!r}")
        return value

    def number(self, node: yaml.Node, what: str) -> float | None:
        value = self.scalar(node, what)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.fail(node, f"{what} must be a number, not {value!r}")
        return float(value)

    def text(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str) or not value:
            raise self.fail(node, f"{what} must be a non-empty string, not {value!r}")
        return value

    def strings(self, node: yaml.Node, what: str) -> list[str]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        values = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                raise self.fail(item, f"an entry of {what} must be a single value")
            values.append(str(item.value))  # the text as written: `yes` stays "yes"
        return values


def _parse(root: yaml.Node, source: str) -> Schema:
    reader = _Reader(source)
    top = reader.mapping(root, "the schema", _TOP_FIELDS)
    if "columns" not in top:
        raise reader.fail(root, "the schema has no 'columns' mapping")
    if "version" in top:
        version_node = top["version"][1]
        if reader.scalar(version_node, "version") != FORMAT_VERSION:
            raise reader.fail(version_node, f"unsupported schema version; use {FORMAT_VERSION}")
    columns_node = top["columns"][1]
    columns = [
        _parse_column(reader, name, node)
        for name, (_, node) in reader.mapping(columns_node, "columns", None).items()
    ]
    key: list[str] = []
    if "key" in top:
        key_node = top["key"][1]
        key = reader.strings(key_node, "key")
        names = {column.name for column in columns}
        for unknown in (k for k in key if k not in names):
            raise reader.fail(key_node, f"key column {unknown!r} is not among the columns")
    min_rows = 1
    if "min_rows" in top:
        rows_node = top["min_rows"][1]
        rows = reader.scalar(rows_node, "min_rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise reader.fail(rows_node, f"min_rows must be a whole number >= 0, not {rows!r}")
        min_rows = rows
    dataset = None
    if "dataset" in top:
        dataset = reader.text(top["dataset"][1], "dataset")
    return Schema(columns=columns, key=key, min_rows=min_rows, dataset=dataset)


def _parse_column(reader: _Reader, name: str, node: yaml.Node) -> ColumnSchema:
    where = f"column {name!r}"
    fields = reader.mapping(node, where, _COLUMN_FIELDS)
    if "type" not in fields:
        raise reader.fail(node, f"{where} has no 'type' (an Arrow type such as double or string)")
    type_node = fields["type"][1]
    type_name = reader.text(type_node, f"the type of {where}")
    if type_family(type_name) is None:
        raise reader.fail(
            type_node, f"{where} has unknown type {type_name!r} (Arrow names: int64, double, ...)"
        )
    values: dict[str, Any] = {"name": name, "type": type_name}
    for key in ("required", "allow_nan", "allow_inf"):
        if key in fields:
            values[key] = reader.boolean(fields[key][1], f"{key} of {where}")
    for key in ("min", "max"):
        if key in fields:
            values[key] = reader.number(fields[key][1], f"{key} of {where}")
    if "max_missing_fraction" in fields:
        fraction_node = fields["max_missing_fraction"][1]
        fraction = reader.number(fraction_node, f"max_missing_fraction of {where}")
        if fraction is None or not 0.0 <= fraction <= 1.0:
            raise reader.fail(
                fraction_node, f"max_missing_fraction of {where} must be between 0 and 1"
            )
        values["max_missing_fraction"] = fraction
        if values.setdefault("required", False) and fraction > 0:
            raise reader.fail(
                fraction_node,
                f"{where} is required (no nulls) but allows a missing fraction; "
                "set required: false or remove max_missing_fraction",
            )
    if "domain" in fields:
        values["domain"] = reader.strings(fields["domain"][1], f"domain of {where}")
    low, high = values.get("min"), values.get("max")
    if low is not None and high is not None and low > high:
        raise reader.fail(fields["min"][0], f"{where} has min {low:g} greater than max {high:g}")
    return ColumnSchema(**values)


def ensure_schema(schema: Schema | Path | str) -> Schema:
    """A schema object, loading it first when given a path."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, str | Path):
        return load_schema(schema)
    raise ValidationFailed(f"expected a Schema or a schema file path, not {type(schema).__name__}")
