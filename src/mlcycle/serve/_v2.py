"""The Open Inference Protocol (v2) tensor encoding: request inputs to rows, outputs to tensors.

Tabular rows arrive either as one named 1-D input per column (as MLServer's
pandas codec sends them) or, when every model input is a number, as one
2-D tensor of shape ``[rows, inputs]``. Tensor data is JSON (flat or nested
lists), or raw little-endian bytes after the JSON header under the binary
tensor extension (``Inference-Header-Content-Length``, ``binary_data_size``)
that Triton's clients use. Outputs are JSON unless the request asks for
binary (``binary_data_output`` or an output's ``binary_data``).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from mlcycle.errors import ValidationFailed
from mlcycle.serve._errors import MalformedRequest
from mlcycle.serve._rows import Rows, Schema

__all__ = ["DATATYPES", "datatype_of", "decode_inputs", "encode_outputs"]

DATATYPES: dict[str, Any] = {  # Any: NumPy dtypes and ``object`` for BYTES
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
_JSON_KINDS = {"BOOL": frozenset({bool}), "BYTES": frozenset({str})}
_NUMERIC_DATATYPES = frozenset(DATATYPES) - {"BOOL", "BYTES"}
_NUMBERS = frozenset({int, float})
_PLAIN_ROWS = 64
"""Most rows ``plain_numbers`` takes: past this, the general path's NumPy checks are cheaper."""
_SIGNATURE_DATATYPES = {
    "float64": "FP64",
    "int64": "INT64",
    "bool": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
    "datetime": "BYTES",
}


def datatype_of(logical: str) -> str:
    """The v2 datatype of a signature type (``float64`` is ``FP64``)."""
    return _SIGNATURE_DATATYPES.get(logical, "BYTES")


def decode_inputs(payload: Any, tail: bytes, schema: Schema) -> Rows:  # Any: parsed JSON
    """The rows of an inference request; ``tail`` holds the binary tensor data, if any."""
    if type(payload) is not dict:
        raise MalformedRequest('an inference request is a JSON object with "inputs"')
    inputs = payload.get("inputs")
    if type(inputs) is not list or not inputs or not all(type(i) is dict for i in inputs):
        raise MalformedRequest('"inputs" must be a non-empty list of tensor objects')
    plain = None if tail else plain_numbers(inputs, schema)
    return plain if plain is not None else _decode_tensors(inputs, tail, schema)


def plain_numbers(inputs: list[dict[str, Any]], schema: Schema) -> Rows | None:  # Any: JSON
    """The rows of the everyday request, or ``None`` when it is anything else.

    Everyday: a numeric model, and one 1-D tensor of a few finite JSON
    numbers per input (whole numbers in integer columns), no binary data.
    Such a request is checked and turned into a matrix in one pass over its
    values, a third of the general decoding's cost. Anything else, including
    every request with a mistake, returns ``None`` and takes the general path,
    which names the problem; so both paths accept and refuse the same requests.
    """
    if not schema.numeric or len(inputs) != len(schema.positions):
        return None
    try:
        return _plain_rows(inputs, schema)
    except _NotPlain:
        return None


class _NotPlain(Exception):
    """Raised inside ``_plain_rows`` for a request that is not the everyday one."""


def _plain_rows(inputs: list[dict[str, Any]], schema: Schema) -> Rows:  # Any: JSON
    """``plain_numbers``'s pass, raising ``_NotPlain`` at the first thing out of the ordinary."""
    positions, integers = schema.positions, schema.integer_flags
    columns: list[Any] = [None] * len(inputs)  # Any: each input's JSON numbers
    count = -1
    for tensor in inputs:
        name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
        if (
            type(name) is not str
            or type(shape) is not list
            or len(shape) != 1
            or type(data) is not list
            or shape[0] != len(data)
            or type(shape[0]) is not int
            or (count >= 0 and len(data) != count)
            or tensor.get("datatype") not in _NUMERIC_DATATYPES
            or "parameters" in tensor
        ):
            raise _NotPlain
        position = positions.get(name, -1)
        if position < 0 or columns[position] is not None:
            raise _NotPlain
        integer = integers[position]
        for value in data:
            kind = type(value)
            if kind is float:
                if value - value != 0.0 or (integer and not value.is_integer()):
                    raise _NotPlain  # NaN, an infinity or a fraction: the general path says which
            elif kind is not int:
                raise _NotPlain
        columns[position] = data
        count = len(data)
    if not 0 < count <= _PLAIN_ROWS:
        raise _NotPlain
    if count == 1:
        row = [column[0] for column in columns]
        return Rows(1, schema.names, matrix=np.array([row], dtype=np.float64))
    matrix = np.ascontiguousarray(np.array(columns, dtype=np.float64).T)
    return Rows(count, schema.names, matrix=matrix)


def _decode_tensors(inputs: list[dict[str, Any]], tail: bytes, schema: Schema) -> Rows:  # Any: JSON
    """Every datatype, shape and binary tensor, with errors that name the problem and the fix."""
    offset = 0
    tensors: dict[str, np.ndarray | list[Any]] = {}
    shapes: dict[str, list[int]] = {}
    datatypes: dict[str, str] = {}
    for tensor in inputs:
        name, shape, values, used = _tensor(tensor, tail, offset)
        offset += used
        if name in tensors:
            raise ValidationFailed(f"input '{name}' is given twice")
        tensors[name], shapes[name], datatypes[name] = values, shape, tensor["datatype"]
    if offset != len(tail):
        raise MalformedRequest(
            f"the body has {len(tail) - offset} bytes of binary data no input claims "
            "(check each input's binary_data_size)"
        )
    if len(tensors) == 1:
        name, values = next(iter(tensors.items()))
        shape = shapes[name]
        if len(shape) == 2 and not (name in schema.names and shape[1] == 1):
            return schema.from_table(_as_numbers(name, datatypes[name], values).reshape(shape))
    counts = {name: _rows_of(name, shape) for name, shape in shapes.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{name}': {count}" for name, count in counts.items())
        raise ValidationFailed(f"the inputs have different numbers of rows ({listed})")
    return schema.from_columns(tensors, next(iter(counts.values())))


def _tensor(
    tensor: dict[str, Any], tail: bytes, offset: int
) -> tuple[str, list[int], np.ndarray | list[Any], int]:  # Any: parsed JSON
    """One input's name, shape, flat values and the binary bytes it used.

    Written for the common request, a dozen 1-D inputs of a few values each:
    every check is a plain comparison, so a tensor costs about a microsecond.
    """
    name = tensor.get("name")
    shape = tensor.get("shape")
    datatype = tensor.get("datatype")
    if type(name) is not str:
        raise MalformedRequest('every input needs a "name" string')
    if type(shape) is not list or not _is_shape(shape):
        raise MalformedRequest(f"input '{name}': \"shape\" must be a list of sizes, such as [3]")
    if datatype not in DATATYPES:
        raise ValidationFailed(
            f"input '{name}': unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        )
    size = shape[0] if len(shape) == 1 else math.prod(shape)
    parameters = tensor.get("parameters")
    binary = parameters.get("binary_data_size") if type(parameters) is dict else None
    if binary is not None:
        if type(binary) is not int or binary < 0 or offset + binary > len(tail):
            raise MalformedRequest(
                f"input '{name}': binary_data_size {binary!r} does not fit the "
                f"{len(tail) - offset} binary bytes left in the body"
            )
        values = _from_bytes(name, datatype, tail[offset : offset + binary], size)
        return name, shape, values, binary
    data = tensor.get("data")
    if type(data) is not list:
        raise MalformedRequest(f"input '{name}': \"data\" must be a list of values")
    flat = data if not data or type(data[0]) is not list else _flatten(data)
    if len(flat) != size:
        raise ValidationFailed(
            f"input '{name}': shape {shape} holds {size} values, but data has {len(flat)}"
        )
    allowed = _JSON_KINDS.get(datatype, _NUMBERS)
    if size == 1:
        fits = type(flat[0]) in allowed or flat[0] is None
    else:
        kinds = set(map(type, flat))
        kinds.discard(type(None))
        fits = kinds <= allowed
    if not fits:
        index = next(i for i, v in enumerate(flat) if v is not None and type(v) not in allowed)
        wanted = {"BYTES": "a string", "BOOL": "true or false"}.get(datatype, "a number")
        raise ValidationFailed(
            f"input '{name}' ({datatype}): value {index} is {flat[index]!r}, not {wanted}"
        )
    return name, shape, flat, 0


def _is_shape(shape: list[Any]) -> bool:  # Any: parsed JSON
    """Whether ``shape`` lists sizes (non-negative integers; ``true`` is not one)."""
    if len(shape) == 1:
        size = shape[0]
        return type(size) is int and size >= 0
    return all(type(n) is int and n >= 0 for n in shape)


def _from_bytes(name: str, datatype: str, raw: bytes, size: int) -> np.ndarray | list[Any]:
    if datatype == "BYTES":
        items: list[Any] = []
        position = 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise MalformedRequest(f"input '{name}': truncated BYTES element")
            (length,) = struct.unpack_from("<I", raw, position)
            items.append(raw[position + 4 : position + 4 + length].decode("utf-8", "replace"))
            position += 4 + length
        if len(items) != size:
            raise ValidationFailed(f"input '{name}': {len(items)} strings for {size} values")
        return items
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(raw) != size * dtype.itemsize:
        raise ValidationFailed(
            f"input '{name}': {len(raw)} binary bytes, but shape and {datatype} need "
            f"{size * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype)


def _flatten(data: list[Any]) -> list[Any]:  # Any: JSON values
    if not data or type(data[0]) is not list:
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if type(item) is list else [item])
    return flat


def _as_numbers(
    name: str, datatype: str, values: np.ndarray | list[Any]
) -> np.ndarray:  # Any: JSON values
    """A single 2-D tensor's values as numbers (``_tensor`` checked they fit its datatype)."""
    if datatype not in _NUMERIC_DATATYPES:
        raise ValidationFailed(
            f"input '{name}': a single 2-D tensor must hold numbers, not {datatype}; send "
            "one 1-D input per column for strings or booleans"
        )
    if isinstance(values, np.ndarray):
        return values
    return np.array(values, dtype=np.float64)


def _rows_of(name: str, shape: list[int]) -> int:
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise ValidationFailed(
        f"input '{name}' has shape {shape}; a column is 1-D ([rows]), or send the whole "
        "table as one 2-D tensor [rows, inputs] when every input is a number"
    )


def encode_outputs(
    outputs: np.ndarray, *, name: str, binary: bool
) -> tuple[list[dict[str, Any]], bytes]:  # Any: JSON values
    """The response's output tensors, and their binary data when ``binary``."""
    shape = list(outputs.shape)
    kind = outputs.dtype.kind
    if kind == "f":
        datatype, values = ("FP32" if outputs.dtype.itemsize == 4 else "FP64"), outputs
    elif kind in "iu":
        datatype, values = "INT64", outputs.astype(np.int64, copy=False)
    elif kind == "b":
        datatype, values = "BOOL", outputs
    else:
        datatype, values = "BYTES", outputs.astype(str)
    tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
    if binary and datatype != "BYTES":
        raw = np.ascontiguousarray(values).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return [tensor], raw
    # Strings always travel as JSON (orjson serialises numeric arrays only, as lists of numbers).
    tensor["data"] = values.ravel().tolist() if datatype == "BYTES" else values.ravel()
    return [tensor], b""
