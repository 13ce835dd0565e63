"""What the request path hands the prediction log: one batch per predict call, columnar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from mlcycle.serve._deployments import LogSchema
    from mlcycle.serve._rows import Rows

__all__ = ["PredictionBatch", "PredictionSink", "logged_inputs"]


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
    converts many batches at once (numeric inputs given as ``MatrixColumns``
    in one call for all columns). ``shadow`` marks the copies a shadow
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
    latency_ms: Sequence[float] | np.ndarray
    inputs: Mapping[str, Sequence[Any] | np.ndarray]  # Any: a column's JSON-able values
    outputs: Sequence[Any] | np.ndarray  # Any: a prediction per row
    error: str | None = None

    def __len__(self) -> int:
        return len(self.request_ids)


class PredictionSink(Protocol):
    """Where served predictions go: durably, and never on the request path.

    ``append`` must return at once (it queues); ``flush`` returns when what
    was appended is durable (and readable); ``close`` writes out what is
    queued and returns when it is durable.
    """

    def append(self, batch: PredictionBatch) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def logged_schema(self, deployment: str) -> LogSchema:
        """What kind of output and of each feature its rows of ``deployment`` hold.

        A server refuses a model predicting another kind, or taking a
        feature as another kind (a sink that can keep any says
        ``LogSchema()``).
        """
        ...


def logged_inputs(rows: Rows) -> Mapping[str, np.ndarray]:
    """The rows' columns as ``PredictionBatch.inputs`` takes them: the batch's own arrays.

    The log's writer turns the arrays of many batches into Arrow columns at
    once, so nothing here costs Python work per value; date-times are given
    in microseconds.
    """
    if rows.matrix is not None:
        return rows.columns
    return {
        name: column.astype("datetime64[us]") if column.dtype.kind == "M" else column
        for name, column in rows.columns.items()
    }
