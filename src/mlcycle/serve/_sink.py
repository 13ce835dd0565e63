"""What the request path hands the prediction log: one batch per predict call, columnar."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["MatrixColumns", "PredictionBatch", "PredictionSink"]


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """The rows one variant predicted in one call, as columns.

    Every sequence has one entry per row. A request of several rows repeats
    its ``request_ids`` entry; ``row_indexes`` numbers the rows within their
    request from 0. ``times`` are Unix epoch seconds at which each request
    arrived; ``latency_ms`` is each request's time in the server until its
    answer (for a shadow, until its copy was predicted). ``inputs`` maps
    each feature column to its values; ``outputs`` are the predictions
    (numbers, labels, or lists for multi-output models). Values are NumPy
    arrays or lists: a server hands over its batch's own arrays, and the log
    converts many batches at once. ``shadow`` marks the copies a shadow
    variant predicted, which nobody received.

    ``error`` marks a request that failed (``"422: ..."``): one row with no
    inputs and no output, so monitoring can tell an error rate; ``model`` is
    empty and ``model_version`` 0 when it failed before reaching a variant.
    """

    deployment: str
    model: str
    model_version: int
    variant: str
    shadow: bool
    request_ids: Sequence[str]
    row_indexes: Sequence[int]
    times: Sequence[float]
    latency_ms: Sequence[float]
    inputs: Mapping[str, Sequence[Any] | np.ndarray]  # Any: a column's JSON-able values
    outputs: Sequence[Any] | np.ndarray  # Any: a prediction per row
    error: str | None = None
    matrix: np.ndarray | None = None
    """The inputs as one float64 matrix (rows x features, in ``inputs``' order), when they
    are all numbers: the log then converts them in one call, not one per column."""

    def __len__(self) -> int:
        return len(self.request_ids)


class MatrixColumns(Mapping[str, np.ndarray]):
    """The columns of a rows x features matrix by name, each made (as a view) when read."""

    __slots__ = ("_matrix", "_names", "_positions")

    def __init__(self, matrix: np.ndarray, names: Sequence[str]) -> None:
        self._matrix = matrix
        self._names = names
        self._positions: dict[str, int] | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        if self._positions is None:
            self._positions = {column: i for i, column in enumerate(self._names)}
        return self._matrix[:, self._positions[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class PredictionSink(Protocol):
    """Where served predictions go: durably, and never on the request path.

    ``append`` must return at once (it queues); ``flush`` returns when what
    was appended is durable (and readable); ``close`` writes out what is
    queued and returns when it is durable.
    """

    def append(self, batch: PredictionBatch) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
