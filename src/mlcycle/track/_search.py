"""Runs as users read them: a DataFrame for many, a record with its history for one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from mlcycle.ids import RunId
from mlcycle.store import ArtifactRecord, MetricPoint, Run

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BASE_COLUMNS", "RunView", "runs_frame"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
BASE_COLUMNS = (
    "run_id",
    "experiment",
    "name",
    "status",
    "start_time",
    "end_time",
    "actor",
    "parent_id",
)


class _RunSource(Protocol):
    def metric_history(self, run_id: RunId, key: str) -> list[MetricPoint]: ...

    def list_artifacts(self, run_id: RunId) -> list[ArtifactRecord]: ...


@dataclass(frozen=True, slots=True)
class RunView(Run):
    """A run record that can also fetch its metric history and artifacts."""

    source: _RunSource | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, run: Run, *, source: _RunSource) -> RunView:
        """Wrap ``run`` so its history is read through ``source``."""
        values = {item.name: getattr(run, item.name) for item in fields(Run)}
        return cls(**values, source=source)

    def metric_history(self, key: str) -> list[MetricPoint]:
        """Every value logged for ``key``, by step then time (buffered values included)."""
        assert self.source is not None, "RunView.of sets the source"
        return self.source.metric_history(self.id, key)

    def artifacts(self) -> list[ArtifactRecord]:
        """The run's artifacts, by name."""
        assert self.source is not None, "RunView.of sets the source"
        return self.source.list_artifacts(self.id)


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: the base columns, then ``params.<k>``, ``metrics.<k>``, ``tags.<k>``."""
    import pandas as pd  # noqa: PLC0415  (pandas is imported only by those who search)

    columns: dict[str, object] = {
        "run_id": [run.id for run in runs],
        "experiment": [run.experiment_name for run in runs],
        "name": [run.name for run in runs],
        "status": [str(run.status) for run in runs],
        "start_time": _times(pd, [run.start_time for run in runs]),
        "end_time": _times(pd, [run.end_time for run in runs]),
        "actor": [run.actor for run in runs],
        "parent_id": [run.parent_id for run in runs],
    }
    for group in ("params", "metrics", "tags"):
        values = [getattr(run, group) for run in runs]
        keys = sorted({key for mapping in values for key in mapping})
        for key in keys:
            columns[f"{group}.{key}"] = [mapping.get(key) for mapping in values]
    return pd.DataFrame(columns)


def _times(pd: Any, times: list[datetime | None]) -> object:  # Any: the pandas module
    """Times as a UTC datetime column, to the microsecond (NaT where there is none)."""
    micros = [None if when is None else (when - _EPOCH) // _MICROSECOND for when in times]
    return pd.to_datetime(micros, unit="us", utc=True)
