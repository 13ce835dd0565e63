"""What a model takes and gives: its input columns with their types, and its output.

A signature is inferred from an input example at registration and stored as
JSON on the version; serving validates requests against it and the gates
compare a candidate's with production's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ColumnSpec", "Signature"]


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
