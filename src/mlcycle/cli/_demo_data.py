"""The demo's data: any CSV with a target, checked, its task chosen, and cut into days.

``mlcycle demo`` plays production on a table: the early part is what the
team trains on, the rest arrives later, a simulated day at a time. This
module reads the CSV (the bundled Bike Sharing hours by default), checks the
command line's columns against it, chooses classification or regression from
the target (``TASK_RULE``), puts each row on a timeline and cuts that timeline
into the training period and the days to replay. Everything here happens
before anything is written, so bad input stops the demo with nothing stored.

The timeline: with ``--time COL``, each row's parsed time (UTC when it has no
zone); the bundled data adds its hour column ``hr`` to the date ``dteday``.
Without ``--time``, row order is time: the replayed rows are spread evenly
over ``days`` simulated days from ``SYNTHETIC_START``, and the earlier rows
over the days before at the same rate. The column ``TIME`` carries it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlcycle.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BIKE",
    "MIN_ROWS",
    "PART",
    "SYNTHETIC_START",
    "TASK_RULE",
    "TIME",
    "DemoData",
    "DemoSpec",
    "Task",
    "prepare",
    "spec_from_options",
]

Task = Literal["regression", "classification"]
TIME = "demo_time"
"""The column the demo adds to the registered data: each row's time on the timeline."""
PART = "demo_part"
"""The column the demo's pipeline adds while it trains: ``train`` or ``test``."""
SYNTHETIC_START = datetime(2024, 1, 1, tzinfo=UTC)
"""Day 0 of the replay when row order is time (no ``--time``)."""
TRAIN_SHARE = 0.3
"""Without a fixed start, the first 30 % of the rows are the training period."""
MAX_CLASSES = 10
TASK_RULE = (
    "a target that is not numeric, or whose values are whole numbers with at most "
    f"{MAX_CLASSES} distinct values, is classification; any other numeric target is regression"
)
MIN_ROWS = 200
MIN_TRAIN_ROWS = 60
"""The training period needs this many rows (30 % of ``MIN_ROWS``, when row order is time)."""
DEFAULT_DAYS = 60
_NAME = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class DemoSpec:
    """What the command line asked for: the file, its target, time and dropped columns."""

    path: Path
    target: str
    time: str | None = None
    drop: tuple[str, ...] = ()
    days: int = DEFAULT_DAYS
    dataset: str = ""
    model: str = ""
    hour: str | None = None
    """A column of hours added to the ``time`` column's dates (the bundled data's ``hr``)."""
    start: str | None = None
    """The first replayed day; the rows before it are the training period."""
    key: tuple[str, ...] = ()
    """Columns that identify a row, for the dataset and its schema."""
    drift_features: tuple[str, ...] = ()
    """The inputs the drift monitor tests (none: every input of the model)."""

    @property
    def bundled(self) -> bool:
        """Whether this is the bundled Bike Sharing data."""
        return self.dataset == BIKE.dataset and self.path == BIKE.path


def _bike() -> DemoSpec:
    from mlcycle.datasets import BIKE_SHARING_HOURLY

    return DemoSpec(
        path=BIKE_SHARING_HOURLY,
        target="cnt",
        time="dteday",
        # casual + registered == cnt: a model given them reads the answer off its inputs;
        # instant only numbers the rows.
        drop=("casual", "registered", "instant"),
        days=90,
        dataset="bike",
        model="bike-demand",
        hour="hr",
        start="2011-04-01",
        key=("dteday", "hr"),
        # The weather: a daily window of calendar inputs (one weekday, every hour) always
        # differs from months of them, which is no drift.
        drift_features=("temp", "atemp", "hum", "windspeed"),
    )


BIKE = _bike()
"""The bundled Bike Sharing hours: train on January to March 2011, replay from April."""


def spec_from_options(
    data: Path | None,
    *,
    target: str | None,
    time: str | None,
    drop: tuple[str, ...],
    days: int | None,
) -> DemoSpec:
    """The spec the options give: the bundled data without ``--data``; names from the file."""
    if data is None:
        if target is not None or time is not None or drop:
            raise ValidationFailed(
                "--target, --time and --drop describe a file: give it with --data FILE "
                "(without --data the demo uses the bundled Bike Sharing data)"
            )
        return BIKE if days is None else _replace_days(BIKE, days)
    if target is None:
        raise ValidationFailed(
            f"--data {data} needs --target COL: the column the models learn to predict"
        )
    dataset = _name(data.stem)
    return DemoSpec(
        path=data,
        target=target,
        time=time,
        drop=tuple(dict.fromkeys(drop)),
        days=DEFAULT_DAYS if days is None else days,
        dataset=dataset,
        model=_name(f"{dataset}-{target}"),
    )


def _replace_days(spec: DemoSpec, days: int) -> DemoSpec:
    from dataclasses import replace

    return replace(spec, days=days)


def _name(text: str) -> str:
    name = _NAME.sub("-", text).strip("-").lower()[:100]
    return name or "data"


@dataclass(frozen=True)
class DemoData:
    """The checked table on its timeline, cut into the training period and the replayed days."""

    spec: DemoSpec
    task: Task
    frame: pd.DataFrame
    """Every row used, in time order, with ``TIME``."""
    start: pd.Timestamp
    """Midnight of the first replayed day."""
    days: list[pd.Timestamp]
    """Midnight of each replayed day, in order (days without rows are skipped)."""
    features: list[str]
    classes: list[str]

    @property
    def initial(self) -> pd.DataFrame:
        """The training period: every row before ``start``."""
        return self.frame[self.frame[TIME] < self.start].reset_index(drop=True)

    def day(self, midnight: pd.Timestamp) -> pd.DataFrame:
        """The rows of the day starting at ``midnight``."""
        import pandas as pd

        at = self.frame[TIME]
        rows = self.frame[(at >= midnight) & (at < midnight + pd.Timedelta(days=1))]
        return rows.reset_index(drop=True)


def prepare(spec: DemoSpec) -> DemoData:
    """Read and check ``spec``'s file; ``ValidationFailed`` or ``NotFound`` naming the fix."""
    frame = _read(spec.path)
    _check_columns(spec, frame)
    before = len(frame)
    frame = frame[frame[spec.target].notna()].reset_index(drop=True)
    if len(frame) < MIN_ROWS:
        raise ValidationFailed(
            f"{spec.path} has {len(frame)} rows with a value of '{spec.target}'"
            f"{f' (of {before})' if before != len(frame) else ''}; the demo needs at least "
            f"{MIN_ROWS}: a training period and days of later traffic. Give a larger file"
        )
    task = detect_task(frame[spec.target], column=spec.target)
    frame[TIME] = _timeline(spec, frame)
    frame = frame.sort_values(TIME, kind="stable").reset_index(drop=True)
    start, days = _cut(spec, frame)
    frame = frame[frame[TIME] < days[-1] + _one_day()].reset_index(drop=True)
    excluded = {spec.target, TIME, *spec.drop, *([spec.time] if spec.time else [])}
    features = [column for column in frame.columns if column not in excluded]
    if not features:
        raise ValidationFailed(
            f"no feature is left in {spec.path} once '{spec.target}', the time column and "
            "--drop are set aside; drop fewer columns"
        )
    initial = frame[frame[TIME] < start]
    if len(initial) < MIN_TRAIN_ROWS:
        raise ValidationFailed(
            f"only {len(initial)} rows of {spec.path} come before the first replayed day "
            f"{start.date()}; the models need at least {MIN_TRAIN_ROWS} to train on. Give a "
            "larger file, or a --time column with more history"
        )
    classes = _classes(spec, task, initial)
    return DemoData(
        spec=spec, task=task, frame=frame, start=start, days=days, features=features,
        classes=classes,
    )  # fmt: skip


def detect_task(target: pd.Series[Any], *, column: str) -> Task:  # Any: a CSV column
    """Classification or regression from the target's values, as ``TASK_RULE`` says."""
    import pandas as pd

    values = target.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        task: Task = "classification"
    else:
        numbers = values.astype(float)
        whole = bool((numbers == numbers.round()).all())
        task = "classification" if whole and numbers.nunique() <= MAX_CLASSES else "regression"
    if values.nunique() < 2:
        only = values.iloc[0] if len(values) else None
        raise ValidationFailed(
            f"the target '{column}' has one value only ({only!r}): there is nothing to learn. "
            "Choose a target column whose values vary"
        )
    return task


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise NotFound(f"no file at {path}; give the path of a CSV file with --data FILE")
    try:
        frame = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            f"{path} does not read as a CSV file ({exc}); give a comma-separated file with a "
            "header line"
        ) from None
    return frame


def _check_columns(spec: DemoSpec, frame: pd.DataFrame) -> None:
    columns = list(frame.columns)
    shown = ", ".join(map(str, columns[:30])) + (" ..." if len(columns) > 30 else "")
    if spec.target not in columns:
        raise ValidationFailed(
            f"--target '{spec.target}' is not a column of {spec.path}; its columns are: {shown}"
        )
    if spec.time is not None and spec.time not in columns:
        raise ValidationFailed(
            f"--time '{spec.time}' is not a column of {spec.path}; its columns are: {shown}. "
            "Leave --time out to use row order as time"
        )
    unknown = [column for column in spec.drop if column not in columns]
    if unknown:
        raise ValidationFailed(
            f"--drop {', '.join(unknown)}: not a column of {spec.path}; its columns are: {shown}"
        )
    if spec.target in spec.drop or spec.target == spec.time:
        raise ValidationFailed(
            f"'{spec.target}' is the target: it cannot also be dropped or be the time column"
        )
    taken = [name for name in (TIME, PART) if name in columns]
    if taken:
        raise ValidationFailed(
            f"{spec.path} has a column '{taken[0]}', a name the demo gives a column of its "
            "own; rename that column"
        )


def _timeline(spec: DemoSpec, frame: pd.DataFrame) -> pd.Series[pd.Timestamp]:
    import pandas as pd

    if spec.time is None:
        return _synthetic(spec, len(frame))
    raw = frame[spec.time]
    try:
        parsed = pd.to_datetime(raw, utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
        bad = raw[parsed.isna()].head(3).tolist()
        raise ValidationFailed(
            f"--time '{spec.time}' does not parse as dates or times ({exc}); values such as "
            f"{bad!r}. Give a column of dates (2011-01-31, 2011-01-31 08:00), or leave --time "
            "out to use row order as time"
        ) from None
    missing = int(parsed.isna().sum())
    if missing:
        raise ValidationFailed(
            f"--time '{spec.time}' has {missing} empty value(s); every row needs a time. Fill "
            "them, or leave --time out to use row order as time"
        )
    if spec.hour is not None:
        parsed = parsed + pd.to_timedelta(frame[spec.hour], unit="h")
    return parsed


def _synthetic(spec: DemoSpec, rows: int) -> pd.Series[pd.Timestamp]:
    """Row order as time: the replayed rows spread over ``spec.days`` days, earlier ones before."""
    import numpy as np
    import pandas as pd

    first = round(rows * TRAIN_SHARE)
    per_day = max(1, math.ceil((rows - first) / spec.days))
    offset = (np.arange(rows) - first) / per_day  # in days; the replay starts at 0
    start = pd.Timestamp(SYNTHETIC_START)
    return pd.Series(start + pd.to_timedelta(offset, unit="D")).dt.floor("s")


def _cut(spec: DemoSpec, frame: pd.DataFrame) -> tuple[pd.Timestamp, list[pd.Timestamp]]:
    """The first replayed day and the replayed days: ``spec.start``, else after 30 % of the rows."""
    import pandas as pd

    midnights = frame[TIME].dt.floor("D")
    if spec.start is not None:
        start = pd.Timestamp(spec.start, tz="UTC")
    elif spec.time is None:
        start = pd.Timestamp(SYNTHETIC_START)
    else:
        start = midnights.iloc[round(len(frame) * TRAIN_SHARE)]
        if start == midnights.iloc[0]:  # everything on one day: no training period before it
            start = start + _one_day()
    later = midnights[midnights >= start].drop_duplicates().tolist()
    if len(later) < 2:
        raise ValidationFailed(
            f"{spec.path} has {len(later)} day(s) of rows from {start.date()} on; the demo "
            "replays later traffic day by day and needs at least 2. Give a --time column that "
            "spans more days, or leave --time out to use row order as time"
        )
    return start, later[: spec.days]


def _one_day() -> pd.Timedelta:
    import pandas as pd

    return pd.Timedelta(days=1)


def _classes(spec: DemoSpec, task: Task, initial: pd.DataFrame) -> list[str]:
    if task == "regression":
        return []
    classes = sorted(map(str, initial[spec.target].dropna().unique()))
    if len(classes) < 2:
        raise ValidationFailed(
            f"the training period of {spec.path} (before the replayed days) holds one class "
            f"of '{spec.target}' only ({classes[0]!r}); a classifier needs two. Give more "
            "rows, or rows in another order"
        )
    return classes
