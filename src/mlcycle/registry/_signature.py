"""What a model takes and gives: its input columns with their types, and its output.

A signature is inferred from an input example at registration and stored as
JSON on the version; serving validates requests against it and the gates
compare a candidate's with production's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ColumnSpec", "Signature", "example_frame", "infer_signature"]


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One named column: its logical type and whether it may hold missing values.

    ``type`` is one of ``bool``, ``int64``, ``float64``, ``string``,
    ``datetime`` or ``category``; ``shape`` is set for tensor outputs only.
    """

    name: str
    type: str
    nullable: bool = False
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The column as JSON-able values."""
        data: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.shape is not None:
            data["shape"] = list(self.shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnSpec:  # Any: JSON values
        """Read a column written by ``to_dict``."""
        shape = data.get("shape")
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            nullable=bool(data.get("nullable", False)),
            shape=None if shape is None else tuple(int(n) for n in shape),
        )


@dataclass(frozen=True, slots=True)
class Signature:
    """A model's inputs (in the order the model wants them) and outputs."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...]

    @property
    def input_names(self) -> list[str]:
        """The input column names, in order."""
        return [column.name for column in self.inputs]

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The signature as JSON-able values, as ``ModelVersion.signature`` stores it."""
        return {
            "inputs": [column.to_dict() for column in self.inputs],
            "outputs": [column.to_dict() for column in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:  # Any: JSON values
        """Read a signature written by ``to_dict``."""
        return cls(
            inputs=tuple(ColumnSpec.from_dict(column) for column in data.get("inputs", ())),
            outputs=tuple(ColumnSpec.from_dict(column) for column in data.get("outputs", ())),
        )


def example_frame(example: object) -> pd.DataFrame:
    """An input example as a DataFrame: a frame as is, an array's columns named ``0``, ``1``, ...

    ``ValidationFailed`` names what was given when it is neither.
    """
    import numpy as np  # noqa: PLC0415  (heavy; loaded by whoever has an example)
    import pandas as pd  # noqa: PLC0415

    from mlcycle.errors import ValidationFailed  # noqa: PLC0415  (light)

    if isinstance(example, pd.DataFrame):
        return example
    if isinstance(example, pd.Series):
        return example.to_frame()
    if isinstance(example, np.ndarray):
        array = example.reshape(-1, 1) if example.ndim == 1 else example
        if array.ndim != 2:
            raise ValidationFailed(
                f"an input example array must have 1 or 2 dimensions, not {example.ndim}"
            )
        return pd.DataFrame(array, columns=[str(i) for i in range(array.shape[1])])
    raise ValidationFailed(
        f"an input example must be a pandas DataFrame or a NumPy array, not a "
        f"{type(example).__module__}.{type(example).__qualname__}"
    )


def infer_signature(example: object, output: object = None) -> Signature:
    """The signature of a model taking ``example`` (a DataFrame or array) and giving ``output``.

    ``output`` is what the model predicted on the example (``None``: unknown).

    >>> import pandas as pd
    >>> sig = infer_signature(pd.DataFrame({"temp": [0.2, None], "hr": [1, 2]}), [3.5, 4.0])
    >>> [(c.name, c.type, c.nullable) for c in sig.inputs]
    [('temp', 'float64', True), ('hr', 'int64', False)]
    >>> sig.outputs[0].to_dict()
    {'name': 'prediction', 'type': 'float64', 'nullable': False}
    """
    import numpy as np  # noqa: PLC0415  (heavy; loaded by whoever has an example)

    frame = example_frame(example)
    inputs = tuple(
        ColumnSpec(
            name=str(name),
            type=_logical_type(frame[name].dtype),
            nullable=bool(frame[name].isna().any()),
        )
        for name in frame.columns
    )
    if output is None:
        return Signature(inputs=inputs, outputs=())
    return Signature(inputs=inputs, outputs=(_output_spec(np.asarray(output)),))


def _output_spec(values: np.ndarray) -> ColumnSpec:
    import pandas as pd  # noqa: PLC0415  (heavy; already loaded with the example)

    flat = values.reshape(len(values), -1) if values.ndim > 1 else values
    nullable = bool(pd.isna(flat).any()) if flat.dtype.kind in "fOmM" else False
    shape = tuple(int(n) for n in values.shape[1:]) or None
    return ColumnSpec(
        name="prediction", type=_logical_type(values.dtype), nullable=nullable, shape=shape
    )


def _logical_type(dtype: Any) -> str:  # Any: a NumPy or pandas dtype
    import pandas as pd  # noqa: PLC0415  (heavy; already loaded with the example)
    from pandas.api import types  # noqa: PLC0415

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if types.is_bool_dtype(dtype):
        return "bool"
    if types.is_integer_dtype(dtype):
        return "int64"
    if types.is_float_dtype(dtype):
        return "float64"
    if types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"
