"""Runs as users read them: a DataFrame for many, a record with its history for one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Protocol

from mlcycle.ids import RunId
from mlcycle.store import ArtifactRecord, MetricPoint, Run

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BASE_COLUMNS", "RunView", "runs_frame"]

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

    rows = [_row(run) for run in runs]
    extra: dict[str, set[str]] = {"params": set(), "metrics": set(), "tags": set()}
    for run in runs:
        extra["params"].update(run.params)
        extra["metrics"].update(run.metrics)
        extra["tags"].update(run.tags)
    columns = [*BASE_COLUMNS]
    for group, keys in extra.items():
        columns.extend(f"{group}.{key}" for key in sorted(keys))
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _row(run: Run) -> dict[str, object]:
    row: dict[str, object] = {
        "run_id": run.id,
        "experiment": run.experiment_name,
        "name": run.name,
        "status": str(run.status),
        "start_time": run.start_time,
        "end_time": run.end_time,
        "actor": run.actor,
        "parent_id": run.parent_id,
    }
    row.update({f"params.{key}": value for key, value in run.params.items()})
    row.update({f"metrics.{key}": value for key, value in run.metrics.items()})
    row.update({f"tags.{key}": value for key, value in run.tags.items()})
    return row
