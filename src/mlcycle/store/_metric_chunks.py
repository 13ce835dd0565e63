"""Metric history in chunks: the points one write logged for one run and key, packed in one value.

A chunk's ``data`` starts with a format byte; format 1 follows it with ``n``
little-endian int64 steps, ``n`` float64 timestamps and ``n`` float64 values,
in the order the points were logged. NaN and the infinities are stored as
float64 holds them. Packing goes through one cached ``struct.Struct`` per
chunk size, which measured faster than ``array`` or numpy for the small
chunks most writes make (ADR 0006).

>>> steps, times, values = unpack_points(pack_points([3, 1], [2.0, 1.5], [0.5, float("inf")]))
>>> (list(steps), list(times), list(values))
([3, 1], [2.0, 1.5], [0.5, inf])
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from mlcycle.errors import ValidationFailed

__all__ = ["FORMAT", "INT64", "pack_points", "unpack_points"]

FORMAT = 1
"""The format byte this version writes (and the only one it reads so far)."""
INT64 = (-(2**63), 2**63 - 1)
"""The steps a chunk can hold."""
_POINT_BYTES = 24  # int64 step, float64 timestamp, float64 value


_LAYOUTS: dict[int, struct.Struct] = {}
"""The layouts of the sizes most writes make, looked up without a call."""


@functools.lru_cache(maxsize=1024)
def _layout(count: int) -> struct.Struct:
    layout = struct.Struct(f"<B{count}q{count}d{count}d")
    if count <= 64:
        _LAYOUTS[count] = layout
    return layout


def pack_points(
    steps: Sequence[int], timestamps: Sequence[float], values: Sequence[float]
) -> bytes:
    """One chunk's ``data``: the format byte, then the three arrays, little-endian.

    A step outside int64 is ``ValidationFailed``.
    """
    try:
        layout = _LAYOUTS.get(len(steps)) or _layout(len(steps))
        return layout.pack(FORMAT, *steps, *timestamps, *values)
    except struct.error as exc:
        low, high = INT64
        wrong = [step for step in steps if not low <= step <= high]
        if wrong:
            raise ValidationFailed(
                f"step {wrong[0]} is outside the 64-bit range a step is stored in; "
                f"use steps from {low} to {high}"
            ) from exc
        raise


def unpack_points(data: bytes) -> tuple[Sequence[int], Sequence[float], Sequence[float]]:
    """The steps, timestamps and values of one chunk, in the order they were logged."""
    if not data or data[0] != FORMAT:
        found = data[0] if data else "nothing"
        raise ValidationFailed(
            f"a metric history chunk has format {found}, which this mlcycle cannot read; "
            "upgrade mlcycle to the version that wrote it"
        )
    count, rest = divmod(len(data) - 1, _POINT_BYTES)
    if rest:
        raise ValidationFailed(
            f"a metric history chunk of format {FORMAT} has {len(data)} bytes, "
            f"not 1 + {_POINT_BYTES} per point; the database is damaged"
        )
    fields = _layout(count).unpack(data)
    return fields[1 : count + 1], fields[count + 1 : 2 * count + 1], fields[2 * count + 1 :]
