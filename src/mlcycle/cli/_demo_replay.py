"""Later traffic, a simulated day at a time: requests, late labels, new data, then the loop.

For each replayed day the simulated clock is set to the day's noon and the
day's rows go to the real server in one request (a few for a day of more than
``REQUEST_ROWS``). The labels of the day ``LABEL_DELAY_DAYS`` earlier arrive
then, through the server's ``:feedback`` route, and those labelled rows are
appended to the dataset as a new version, so a retrain has recent data. Then
``after_day`` runs what follows the traffic (monitors, alerts, the training
loop) up to the end of the last labelled day. After the last day the clock
moves on until every replayed day is labelled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    import pyarrow as pa

    from mlcycle import Workspace
    from mlcycle.cli._demo_data import DemoData
    from mlcycle.cli._demo_serving import Answer, DemoServer
    from mlcycle.clock import SimulatedClock

__all__ = ["LABEL_DELAY_DAYS", "Day", "replay"]

LABEL_DELAY_DAYS = 1
"""Labels of a day's predictions arrive this many days later (at noon)."""


@dataclass
class Day:
    """What one replayed day gave: traffic, how well production did, and what followed."""

    day: pd.Timestamp
    rows: int
    requests: int
    versions: tuple[int, ...]
    metric: float
    """The served predictions against the true values: rmse, or accuracy for classes."""
    latency_ms: float
    labelled: int = 0
    """Labels sent this day (for the day ``LABEL_DELAY_DAYS`` earlier)."""
    notes: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    day: Day
    rows: pd.DataFrame
    answers: list[Answer]


def replay(
    workspace: Workspace,
    server: DemoServer,
    data: DemoData,
    *,
    after_day: Callable[[pd.Timestamp], list[str]],
    shown: Callable[[Day], None],
) -> list[Day]:
    """Replay ``data``'s days against ``server``; ``after_day(until)`` runs up to ``until``.

    ``shown`` hears of each day once its traffic, labels and ``after_day`` are done.
    """
    import pandas as pd

    clock = cast("SimulatedClock", workspace.clock)
    schema = _schema(data.frame)
    pending: deque[_Pending] = deque()
    days: list[Day] = []
    for midnight in data.days:
        clock.set((midnight + pd.Timedelta(hours=12)).to_pydatetime())
        rows = data.day(midnight)
        answers = server.predict(_records(rows, server.inputs))
        day = _day(midnight, rows, answers, data)
        pending.append(_Pending(day, rows, answers))
        days.append(day)
        while pending and pending[0].day.day <= midnight - timedelta(days=LABEL_DELAY_DAYS):
            _label(workspace, server, data, pending.popleft(), day, schema)
        day.notes += after_day(_labelled_until(pending, midnight))
        shown(day)
    if pending:
        last = data.days[-1]
        clock.set((last + pd.Timedelta(days=LABEL_DELAY_DAYS, hours=12)).to_pydatetime())
        while pending:
            _label(workspace, server, data, pending.popleft(), days[-1], schema)
        days[-1].notes += after_day(last + pd.Timedelta(days=1))
    return days


def _labelled_until(pending: deque[_Pending], midnight: pd.Timestamp) -> pd.Timestamp:
    """The end of the last day whose labels are all in: monitors score up to there."""
    import pandas as pd

    return pending[0].day.day if pending else midnight + pd.Timedelta(days=1)


def _records(rows: pd.DataFrame, inputs: list[str]) -> list[dict[str, Any]]:  # Any: JSON values
    """The rows as JSON objects of the model's inputs; missing values as null."""
    frame = rows[inputs].astype(object)
    return cast("list[dict[str, Any]]", frame.where(frame.notna(), None).to_dict("records"))


def _day(midnight: pd.Timestamp, rows: pd.DataFrame, answers: list[Answer], data: DemoData) -> Day:
    import numpy as np

    predicted = [p for answer in answers for p in answer.predictions]
    truth = rows[data.spec.target]
    if data.task == "regression":
        errors = np.asarray(predicted, dtype=float) - truth.to_numpy(dtype=float)
        metric = float(np.sqrt(np.mean(errors**2)))
    else:
        metric = float(np.mean([_same(p, t) for p, t in zip(predicted, truth, strict=True)]))
    return Day(
        day=midnight,
        rows=len(rows),
        requests=len(answers),
        versions=tuple(sorted({answer.version for answer in answers})),
        metric=metric,
        latency_ms=max(answer.latency_ms for answer in answers),
    )


def _same(predicted: object, truth: object) -> bool:
    """A class prediction against its label: numbers as numbers (1 == 1.0), else as text."""
    try:
        return float(cast("float", predicted)) == float(cast("float", truth))
    except (TypeError, ValueError):
        return str(predicted) == str(truth)


def _label(  # noqa: PLR0917  (private: the replay's state, handed over whole)
    workspace: Workspace,
    server: DemoServer,
    data: DemoData,
    earlier: _Pending,
    today: Day,
    schema: pa.Schema,
) -> None:
    """Send the labels of an earlier day, and append its rows to the dataset as a new version."""
    import pyarrow as pa

    target = earlier.rows[data.spec.target].tolist()
    at = 0
    for answer in earlier.answers:  # a request's labels in one call, as its rows went
        labels = []
        for index in range(len(answer.predictions)):
            value = target[at]
            label = float(value) if data.task == "regression" else _class(value)
            labels.append({"request_id": answer.request_id, "row_index": index, "label": label})
            at += 1
        today.labelled += server.label(labels)
    rows = pa.Table.from_pandas(earlier.rows, schema=schema, preserve_index=False)
    # The new rows are what production met, out of range of the first schema as they may be:
    # the monitors report that; the dataset keeps every row so a retrain can learn from it.
    workspace.data.register(data.spec.dataset, rows, mode="append", validate=False)


def _class(value: object) -> str | float:
    """A class label as the feedback log keeps it: text as text, numbers as numbers."""
    return value if isinstance(value, str) else float(cast("float", value))


def _schema(frame: pd.DataFrame) -> pa.Schema:
    """The registered data's columns, so a day whose column is all missing keeps its type."""
    import pyarrow as pa

    return pa.Schema.from_pandas(frame, preserve_index=False)
