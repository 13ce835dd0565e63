"""What a drift check found: one result per column and the dataset-level decision."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ColumnDrift", "DriftReport", "TestName"]

TestName = Literal["ks", "wasserstein", "chi2", "jensenshannon", "psi"]


@dataclass(frozen=True)
class ColumnDrift:
    """The drift test of one column.

    ``statistic`` is the test's statistic (the KS distance D, the normed
    Wasserstein distance, chi-squared, the Jensen-Shannon distance or PSI);
    ``p_value`` is set for the tests that have one (``ks``, ``chi2``). A
    column drifted when its p-value is below ``threshold`` (``ks`` at or
    below, as Evidently decides) or its distance is at or above it.
    ``reference_count`` and ``current_count`` are the values each side
    contributed; ``current_missing`` the window's nulls, NaN and infinities,
    which no test sees. ``note`` explains a column that could not be tested
    the usual way (all values missing, categories the reference never saw).
    """

    column: str
    kind: Literal["numeric", "categorical"]
    test: TestName
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    reference_count: int
    current_count: int
    current_missing: int
    sampled: bool = False
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """Plain JSON-ready values (an infinite statistic becomes ``"inf"``)."""
        data = asdict(self)
        if self.statistic is not None and math.isinf(self.statistic):
            data["statistic"] = "inf"
        return data


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift results and the share of drifted columns.

    The dataset drifted when ``drifted_share >= drift_share`` (Evidently's rule).
    """

    columns: dict[str, ColumnDrift]
    drift_share: float
    reference_rows: int
    current_rows: int
    reference: str = "frame"

    @property
    def drifted_columns(self) -> list[str]:
        """The names of the columns that drifted, in report order."""
        return [name for name, column in self.columns.items() if column.drifted]

    @property
    def drifted_share(self) -> float:
        """The share of tested columns that drifted."""
        return len(self.drifted_columns) / len(self.columns)

    @property
    def drifted(self) -> bool:
        """Whether the dataset drifted: ``drifted_share >= drift_share``."""
        return self.drifted_share >= self.drift_share

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """Plain JSON-ready values, the summary first."""
        return {
            "reference": self.reference,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drift_share": self.drift_share,
            "drifted_share": self.drifted_share,
            "drifted": self.drifted,
            "drifted_columns": self.drifted_columns,
            "columns": [column.to_dict() for column in self.columns.values()],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    def to_frame(self) -> pd.DataFrame:
        """One row per column: the test, its statistic, p-value, threshold and decision."""
        import pandas as pd  # noqa: PLC0415  (pandas loads on first use)

        rows = [asdict(column) for column in self.columns.values()]
        frame = pd.DataFrame(rows, columns=list(ColumnDrift.__dataclass_fields__))
        return frame.set_index("column")

    def to_html(self, *, title: str = "Drift report") -> str:
        """A self-contained HTML page with a chart per column (inline SVG, nothing fetched)."""
        from mlcycle.monitor._html import render_drift_html  # noqa: PLC0415  (rarely needed)

        return render_drift_html(self, title=title)

    def __str__(self) -> str:
        verdict = "drifted" if self.drifted else "no dataset drift"
        return (
            f"{verdict}: {len(self.drifted_columns)} of {len(self.columns)} columns drifted "
            f"({self.drifted_share:.0%}; threshold {self.drift_share:.0%})"
        )
