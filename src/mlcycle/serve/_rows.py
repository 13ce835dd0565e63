"""Request rows checked against a model's signature, without pandas.

Every protocol decodes its body into ``Rows``: one NumPy array per input
column, and, when every input is a number, the same values as one float64
matrix (what an ONNX tree ensemble takes), built in one call. Checks name the
row, the column and the problem: a missing or unknown column, a value of the
wrong type, a missing value or NaN where the signature forbids it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcycle.errors import ValidationFailed
from mlcycle.serve._errors import MalformedRequest

if TYPE_CHECKING:
    from mlcycle.registry import ColumnSpec, Signature

__all__ = ["NUMERIC_TYPES", "MatrixColumns", "Rows", "Schema", "concat_rows"]

NUMERIC_TYPES = frozenset({"int64", "float64"})
_NUMBERS = frozenset({int, float})
_SMALL = 16
"""Tables of up to this many rows are checked value by value, larger ones with NumPy."""
_WORDS = {"float64": "a number", "int64": "an integer", "bool": "true or false"}


class Rows:
    """Checked rows: ``columns`` by name, and ``matrix`` (rows x inputs) when all are numbers.

    With a matrix, the columns are views of it, made only when asked for.
    """

    __slots__ = ("_columns", "count", "matrix", "names")

    def __init__(
        self,
        count: int,
        names: Sequence[str],
        *,
        matrix: np.ndarray | None = None,
        columns: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.count = count
        self.names = names
        self.matrix = matrix
        self._columns = columns

    @property
    def columns(self) -> Mapping[str, np.ndarray]:
        """Each input column's values, by name (views of the matrix, made when read)."""
        if self._columns is None:
            assert self.matrix is not None, "rows hold a matrix or columns"
            self._columns = MatrixColumns(self.matrix, self.names)
        return self._columns

    def slice(self, start: int, stop: int) -> Rows:
        """Rows ``start`` to ``stop`` (views, not copies)."""
        stop = min(stop, self.count)
        if self.matrix is not None:
            return Rows(stop - start, self.names, matrix=self.matrix[start:stop])
        columns = {name: values[start:stop] for name, values in self.columns.items()}
        return Rows(stop - start, self.names, columns=columns)


class MatrixColumns(Mapping[str, np.ndarray]):
    """The columns of a rows x features matrix by name, each made (as a view) when read.

    ``matrix`` is the matrix itself, for readers that take all columns at once.
    """

    __slots__ = ("_names", "_positions", "matrix")

    def __init__(self, matrix: np.ndarray, names: Sequence[str]) -> None:
        self.matrix = matrix
        self._names = names
        self._positions: dict[str, int] | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        if self._positions is None:
            self._positions = {column: i for i, column in enumerate(self._names)}
        return self.matrix[:, self._positions[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class Schema:
    """A signature's inputs, ready for checking requests quickly."""

    inputs: tuple[ColumnSpec, ...]
    max_rows: int
    names: tuple[str, ...] = field(init=False)
    numeric: bool = field(init=False)
    integer_columns: list[int] = field(init=False)
    positions: dict[str, int] = field(init=False)
    """Each input's position in the signature, by name."""
    integer_flags: tuple[bool, ...] = field(init=False)
    """Whether each input, in signature order, is an integer column."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(spec.name for spec in self.inputs))
        integers = [i for i, spec in enumerate(self.inputs) if spec.type == "int64"]
        object.__setattr__(self, "integer_columns", integers)
        object.__setattr__(self, "positions", {name: i for i, name in enumerate(self.names)})
        flags = tuple(spec.type == "int64" for spec in self.inputs)
        object.__setattr__(self, "integer_flags", flags)
        numeric = bool(self.inputs) and all(s.type in NUMERIC_TYPES for s in self.inputs)
        object.__setattr__(self, "numeric", numeric)

    @classmethod
    def of(cls, signature: Signature, *, max_rows: int) -> Schema:
        """The schema of a model's signature."""
        return cls(inputs=signature.inputs, max_rows=max_rows)

    def check_count(self, count: int) -> None:
        """Refuse no rows, or more than ``max_rows``."""
        if count == 0:
            raise ValidationFailed("the request has no rows; send at least one")
        if count > self.max_rows:
            raise ValidationFailed(
                f"the request has {count:,} rows, over the limit of {self.max_rows:,} "
                "(serve.max_rows); split it into smaller requests"
            )

    def from_records(self, records: object) -> Rows:
        """Rows from a list of ``{column: value}`` objects (the v1 ``instances``)."""
        if not isinstance(records, list) or not all(type(r) is dict for r in records):
            raise MalformedRequest('"instances" must be a list of {"column": value} objects')
        self.check_count(len(records))
        expected = set(self.names)
        for index, record in enumerate(records):
            if record.keys() != expected:
                self._wrong_keys(index, record)
        if self.numeric:
            table = [[record[name] for name in self.names] for record in records]
            return self.from_table(table)
        columns = {
            spec.name: check_column(spec, [record[spec.name] for record in records])
            for spec in self.inputs
        }
        return Rows(len(records), self.names, columns=columns)

    def from_columns(self, columns: Mapping[str, np.ndarray | list[Any]], count: int) -> Rows:
        """Rows from one array or list per column (the v2 tensors)."""
        self.check_count(count)
        unknown = sorted(set(columns) - set(self.names))
        if unknown:
            raise ValidationFailed(
                f"unknown input {_listing(unknown)}; the model takes {_listing(self.names)}"
            )
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise ValidationFailed(f"missing input {_listing(missing)}: send every model input")
        if self.numeric and count <= _SMALL and all(type(v) is list for v in columns.values()):
            # A few rows of JSON numbers: checked value by value as one table, like v1's records,
            # which costs a fraction of a dozen NumPy checks per column.
            return self.from_table(
                [list(row) for row in zip(*map(columns.get, self.names), strict=True)]
            )
        checked = {spec.name: check_column(spec, columns[spec.name]) for spec in self.inputs}
        if not self.numeric:
            return Rows(count, self.names, columns=checked)
        matrix = np.empty((count, len(self.names)), dtype=np.float64)
        for index, name in enumerate(self.names):
            matrix[:, index] = checked[name]
        return Rows(count, self.names, matrix=matrix)

    def from_table(self, values: Any) -> Rows:  # Any: JSON lists or an array
        """Rows from one numeric table (rows x inputs), each row in signature order."""
        if not self.numeric:
            kinds = ", ".join(
                f"{s.name} ({s.type})" for s in self.inputs if s.type not in NUMERIC_TYPES
            )
            raise ValidationFailed(
                f"a single 2-D tensor needs every input to be a number, and {kinds} is not; "
                "send one named 1-D input per column"
            )
        small = type(values) is list and len(values) <= _SMALL
        if small:  # a few rows: checking values in Python beats a dozen NumPy calls
            self._check_small(values)
        try:
            matrix = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise self._first_bad_value(values) from None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.names):
            raise ValidationFailed(
                f"a 2-D tensor of shape [rows, {len(self.names)}] was expected (the inputs "
                f"{_listing(self.names)}), not shape {list(matrix.shape)}"
            )
        self.check_count(matrix.shape[0])
        if not small:
            if type(values) is list and _has_foreign_types(values):
                raise self._first_bad_value(values)
            self._check_numbers(matrix)
        return Rows(matrix.shape[0], self.names, matrix=matrix)

    def _check_small(self, table: list[Any]) -> None:  # Any: JSON values
        """``_check_numbers`` and the type checks, value by value, for a few rows."""
        width = len(self.inputs)
        for row, values in enumerate(table):
            if type(values) is not list or len(values) != width:
                raise self._first_bad_value(table)
            for spec, value in zip(self.inputs, values, strict=True):
                kind = type(value)
                if kind is int:
                    continue
                if kind is float:
                    if value - value == 0.0:  # finite
                        if spec.type == "int64" and not value.is_integer():
                            raise ValidationFailed(
                                f"row {row}, column '{spec.name}': expected an integer, "
                                f"got {value!r}"
                            )
                        continue
                    if spec.nullable and value != value:  # noqa: PLR0124  (NaN)
                        continue
                if value is None and spec.nullable:
                    continue
                if value is None or kind is float:
                    raise ValidationFailed(
                        f"row {row}, column '{spec.name}': a missing value, NaN or infinity, "
                        "and the column does not allow missing values"
                    )
                raise _wrong_value(row, spec, value)

    def _check_numbers(self, matrix: np.ndarray) -> None:
        """NaN only in nullable columns; whole numbers in integer columns (vectorised)."""
        if not np.isfinite(matrix).all():
            finite = np.isfinite(matrix)
            for index, spec in enumerate(self.inputs):
                bad = ~finite[:, index]
                if bad.any() and not (spec.nullable and np.isnan(matrix[bad, index]).all()):
                    row = int(np.argmax(bad))
                    raise ValidationFailed(
                        f"row {row}, column '{spec.name}': a missing value, NaN or infinity, "
                        "and the column does not allow missing values"
                    )
        integers = self.integer_columns
        if not integers:
            return
        whole = matrix[:, integers]
        fractional = np.isfinite(whole) & (whole != np.floor(whole))
        if fractional.any():
            row, column = (int(n) for n in np.argwhere(fractional)[0])
            raise ValidationFailed(
                f"row {row}, column '{self.names[integers[column]]}': expected an integer, "
                f"got {float(whole[row, column])!r}"
            )

    def _first_bad_value(self, table: Any) -> ValidationFailed:  # Any: JSON values
        """The error naming the first value of ``table`` that is not a number."""
        if isinstance(table, list):
            for row, values in enumerate(table):
                if not isinstance(values, list) or len(values) != len(self.names):
                    return ValidationFailed(
                        f"row {row}: expected a list of {len(self.names)} numbers "
                        f"({_listing(self.names)})"
                    )
                for spec, value in zip(self.inputs, values, strict=True):
                    if type(value) not in _NUMBERS and not (value is None and spec.nullable):
                        return _wrong_value(row, spec, value)
        return ValidationFailed(
            f"the tensor's values are not all numbers; the inputs are {_listing(self.names)}"
        )

    def _wrong_keys(self, index: int, record: dict[str, Any]) -> None:  # Any: JSON values
        missing = [name for name in self.names if name not in record]
        if missing:
            raise ValidationFailed(
                f"row {index}: missing column {_listing(missing)}; the model takes "
                f"{_listing(self.names)}"
            )
        unknown = sorted(set(record) - set(self.names))
        raise ValidationFailed(
            f"row {index}: unknown column {_listing(unknown)}; the model takes "
            f"{_listing(self.names)}"
        )


def check_column(spec: ColumnSpec, values: np.ndarray | Sequence[Any]) -> np.ndarray:  # Any: JSON
    """One column's values as an array of its type; ``ValidationFailed`` names the first bad row."""
    if isinstance(values, np.ndarray):
        return _check_array(spec, values)
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    if nulls and not spec.nullable:
        row = next(i for i, value in enumerate(values) if value is None)
        raise ValidationFailed(
            f"row {row}, column '{spec.name}': a missing value (null), and the column does "
            "not allow missing values"
        )
    kinds.discard(type(None))
    allowed = _ALLOWED.get(spec.type, frozenset({str}))
    if not kinds <= allowed:
        row = next(
            i for i, value in enumerate(values) if value is not None and type(value) not in allowed
        )
        raise _wrong_value(row, spec, values[row])
    if spec.type in NUMERIC_TYPES:
        return _check_array(spec, np.array(values, dtype=np.float64))
    if spec.type == "bool":
        return np.array(values, dtype=object if nulls else np.bool_)
    if spec.type == "datetime":
        try:
            return np.array(values, dtype="datetime64[ns]")
        except ValueError as exc:
            raise ValidationFailed(
                f"column '{spec.name}': expected ISO 8601 date-times such as "
                f"'2012-09-01T14:00:00': {exc}"
            ) from None
    return np.array(values, dtype=object)


_ALLOWED = {
    "float64": _NUMBERS,
    "int64": _NUMBERS,
    "bool": frozenset({bool}),
    "string": frozenset({str}),
    "category": frozenset({str}),
    "datetime": frozenset({str}),
}


def _check_array(spec: ColumnSpec, values: np.ndarray) -> np.ndarray:
    """A decoded tensor checked: numbers for numeric columns, no NaN unless nullable."""
    if spec.type in NUMERIC_TYPES:
        if values.dtype.kind not in "iuf":
            raise ValidationFailed(
                f"column '{spec.name}': expected {_WORDS[spec.type]} ({spec.type}), "
                f"got a tensor of {values.dtype}"
            )
        column = values.astype(np.float64, copy=False)
        bad = ~np.isfinite(column)
        if bad.any() and not (spec.nullable and np.isnan(column[bad]).all()):
            row = int(np.argmax(bad))
            raise ValidationFailed(
                f"row {row}, column '{spec.name}': a missing value, NaN or infinity, "
                "and the column does not allow missing values"
            )
        if spec.type == "int64":
            fractional = ~bad & (column != np.floor(column))
            if fractional.any():
                row = int(np.argmax(fractional))
                raise ValidationFailed(
                    f"row {row}, column '{spec.name}': expected an integer, "
                    f"got {float(column[row])!r}"
                )
        return column
    if spec.type == "bool" and values.dtype.kind != "b":
        raise ValidationFailed(f"column '{spec.name}': expected true or false, got {values.dtype}")
    if spec.type != "bool" and values.dtype.kind != "O":
        raise ValidationFailed(
            f"column '{spec.name}': expected {_WORDS.get(spec.type, 'a string')} ({spec.type}), "
            f"got a tensor of {values.dtype}; send it as BYTES"
        )
    return values


def concat_rows(parts: Sequence[Rows], names: Sequence[str]) -> Rows:
    """One ``Rows`` holding the rows of ``parts`` in order."""
    if len(parts) == 1:
        return parts[0]
    count = sum(part.count for part in parts)
    matrices = [part.matrix for part in parts if part.matrix is not None]
    if len(matrices) == len(parts):
        return Rows(count, names, matrix=np.concatenate(matrices))
    columns = {name: np.concatenate([part.columns[name] for part in parts]) for name in names}
    return Rows(count, names, columns=columns)


def _has_foreign_types(table: list[Any]) -> bool:  # Any: JSON values
    """Whether a row-major table holds anything but numbers and nulls (a string, a bool)."""
    kinds: set[type] = set()
    for row in table:
        kinds.update(map(type, row))
    return not kinds <= {int, float, type(None)}


def _wrong_value(row: int, spec: ColumnSpec, value: object) -> ValidationFailed:
    expected = _WORDS.get(spec.type, "a string")
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return ValidationFailed(
        f"row {row}, column '{spec.name}': expected {expected} ({spec.type}), "
        f"got {_json_kind(value)} {shown}"
    )


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, str):
        return "the string"
    if isinstance(value, int | float):
        return "the number"
    if isinstance(value, list):
        return "the list"
    if isinstance(value, dict):
        return "the object"
    return "the value"


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)
