"""The live run a training loop logs into: cheap log calls, immutable params, a recorded end.

A run started inside another run in the same thread becomes its child, so
each thread keeps its own stack of active runs. Leaving a ``with`` block ends
the run: ``finished`` normally, ``failed`` (with the exception kept) when the
block raises, ``killed`` on Ctrl-C.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ImmutableValue, ValidationFailed
from mlcycle.ids import RunId
from mlcycle.store import ArtifactRecord, Run, RunEnd, RunError, RunStatus, check_key
from mlcycle.track._artifacts import store_artifact
from mlcycle.track._redact import redact_mapping, redact_text
from mlcycle.track._values import metric_step, metric_value, text_values
from mlcycle.track._writer import END, METRIC, PARAM, TAG, Item, collector_paused

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from mlcycle.store import DatasetVersion
    from mlcycle.track._split import Split, TimeValue
    from mlcycle.track._tracker import Tracker

__all__ = ["ActiveRun", "current_run"]

_local = threading.local()


def _stack() -> list[ActiveRun]:
    stack: list[ActiveRun] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def current_run() -> ActiveRun | None:
    """The innermost run this thread has started and not yet ended."""
    stack = _stack()
    return stack[-1] if stack else None


class ActiveRun:
    """A run in progress; use it as a context manager so its end is always recorded."""

    def __init__(self, record: Run, *, tracker: Tracker, stored: bool = False) -> None:
        self.record = record
        self.id: RunId = record.id
        self._tracker = tracker
        self._stored = stored
        self._put = tracker.writer.put
        self._time = tracker.clock.time
        self._params: dict[str, str] = dict(record.params)
        self._params_lock = threading.Lock()
        self._tags: dict[str, str] = dict(record.tags)
        self._metric_keys: set[str] = set()
        self._steps: dict[str, int] = {}
        self._latest: dict[str, tuple[int, float]] = {}
        self._done = False
        self._final: Run | None = None
        _stack().append(self)

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, name={self.record.name!r})"

    def tracker_is(self, tracker: Tracker) -> bool:
        """Whether this run was started by ``tracker`` (a child must share its parent's store)."""
        return self._tracker is tracker

    def log_metric(self, key: str, value: float, *, step: int | None = None) -> None:
        """Buffer one metric value; ``step`` defaults to one past the key's last step.

        The value is written by the background writer within half a second.
        """
        if self._done:
            self._refuse("log a metric")
        if type(key) is not str or key not in self._metric_keys:
            self._metric_keys.add(check_key(key, kind="metric"))
        number = value if type(value) is float else metric_value(key, value)
        if step is None:
            step = self._steps.get(key, -1) + 1
        elif type(step) is not int:
            step = metric_step(key, step)
        self._steps[key] = step
        held = self._latest.get(key)
        if held is None or step >= held[0]:
            self._latest[key] = (step, number)
        self._put((METRIC, self.id, key, number, step, self._time()))

    def log_metrics(self, values: Mapping[str, float], *, step: int | None = None) -> None:
        """Buffer several metric values at the same step."""
        if not isinstance(values, Mapping):
            raise TypeError(
                f"log_metrics takes a dict of name to number, not {type(values).__name__}"
            )
        if self._done:
            self._refuse("log a metric")
        if step is not None and type(step) is not int:
            step = metric_step(next(iter(values), "?"), step)
        with collector_paused():
            items = self._metric_items(values, step)
        self._tracker.writer.put_many(items)

    def _metric_items(self, values: Mapping[str, float], step: int | None) -> list[Item]:
        """Check and number the values of one ``log_metrics`` call; nothing is counted on error."""
        known, steps, now = self._metric_keys, self._steps, self._time()
        checked: list[tuple[str, float, int]] = []
        for key, value in values.items():
            if type(key) is not str or key not in known:
                known.add(check_key(key, kind="metric"))
            number = value if type(value) is float else metric_value(key, value)
            checked.append((key, number, steps.get(key, -1) + 1 if step is None else step))
        latest, run_id = self._latest, self.id
        items: list[Item] = []
        for key, number, at in checked:  # all valid: only now are they counted
            steps[key] = at
            held = latest.get(key)
            if held is None or at >= held[0]:
                latest[key] = (at, number)
            items.append((METRIC, run_id, key, number, at, now))
        return items

    def log_param(self, key: str, value: Any) -> None:  # Any: params are stored as text
        """Record a param; logging it again with another value raises ``ImmutableValue``."""
        self.log_params({key: value})

    def log_params(self, values: Mapping[str, Any]) -> None:  # Any: stored as text
        """Record several params at once; none is logged if one conflicts."""
        if self._done:
            self._refuse("log params")
        checked = redact_mapping(text_values(values, kind="param"))
        with self._params_lock:
            for key, value in checked.items():
                old = self._params.get(key)
                if old is not None and old != value:
                    raise ImmutableValue(
                        f"param {key!r} of run {self.id} is already {old!r}; cannot change it to "
                        f"{value!r}. Params are immutable: log the new value under another key "
                        "or start a new run"
                    )
            self._params.update(checked)
        now = self._time()
        for key, value in checked.items():
            self._put((PARAM, self.id, key, value, 0, now))

    def set_tag(self, key: str, value: Any) -> None:  # Any: tags are stored as text
        """Set a tag; tags, unlike params, may change."""
        self.set_tags({key: value})

    def set_tags(self, values: Mapping[str, Any]) -> None:  # Any: stored as text
        """Set several tags."""
        if self._done:
            self._refuse("set tags")
        now = self._time()
        checked = redact_mapping(text_values(values, kind="tag"))
        with self._params_lock:
            self._tags.update(checked)
        for key, value in checked.items():
            self._put((TAG, self.id, key, value, 0, now))

    def log_artifact(self, obj: object, name: str | None = None) -> ArtifactRecord:
        """Store a file, bytes, dict (JSON), DataFrame (Parquet) or matplotlib figure (PNG).

        Artifacts are written at once, content-addressed; ``name`` defaults to a
        file's own name and is required for every other kind of object.
        """
        if self._done:
            self._refuse("log an artifact")
        tracker = self._tracker
        tracker.settle()  # the run's start may still be buffered
        return store_artifact(
            obj,
            name,
            run_id=self.id,
            blobs=tracker.artifacts,
            index=tracker.metadata,
            clock=tracker.clock,
        )

    def log_split(
        self,
        dataset_ref: str | DatasetVersion,
        train: pd.DataFrame,
        test: pd.DataFrame | None = None,
        *,
        time_column: str | None = None,
        train_until: TimeValue | None = None,
        test_from: TimeValue | None = None,
        key: str | Sequence[str] | None = None,
    ) -> Split:
        """Record how this run split ``dataset_ref`` into ``train`` and ``test`` rows.

        Give a time cut-off (``time_column``; ``train_until`` and ``test_from``
        default to the train rows' last and the test rows' first time) or the
        ``key`` columns that identify a row, or both. The split is checked
        (train rows after the cut-off, or test rows among the train keys, raise
        ``ValidationFailed``) and stored as the tag ``mlcycle.split``; the
        registry's gates read it back with ``Split.from_run`` to show a test set
        was never trained on.
        """
        from mlcycle.track._split import record_split  # noqa: PLC0415  (numpy, when used)

        return record_split(
            self,
            dataset_ref,
            train,
            test,
            time_column=time_column,
            train_until=train_until,
            test_from=test_from,
            key=key,
        )

    def set_seed(self, seed: int) -> None:
        """Record the seed this run's randomness was set from."""
        self._tracker.settle()  # the run's start may still be buffered
        self._tracker.metadata.set_seed(self.id, seed)

    def finish(
        self, status: RunStatus = RunStatus.FINISHED, *, error: RunError | None = None
    ) -> Run:
        """End the run, once; returns the run as this process recorded it.

        The end is buffered behind everything the run logged and written within
        half a second (the writer is woken at once). A run that ends failed or
        killed waits until it is written, so the failure is stored before the
        exception travels on. What went wrong writing is raised here when it is
        already known, else at the next log call, flush, read of runs or close.
        """
        status = RunStatus(status)
        with self._params_lock:
            if self._final is not None or self._done:
                return self._final or self.record
            self._done = True
            params, tags = dict(self._params), dict(self._tags)
        stack = _stack()
        if self in stack:
            stack.remove(self)
        tracker = self._tracker
        writer = tracker.writer
        writer.unregister(self.id)
        end = RunEnd(self.id, status, tracker.clock.now(), error)
        try:
            writer.put((END, self.id, "", end, 0, 0.0), check=False)
        finally:
            tracker.forget(self)
        self._final = replace(
            self.record,
            status=status,
            end_time=end.end_time,
            error=error,
            params=params,
            tags=tags,
            metrics={key: value for key, (_step, value) in self._latest.items()},
        )
        if status is RunStatus.FINISHED:
            if not self._stored:
                writer.wake()
            writer.raise_errors()
        else:
            writer.flush()
        return self._final

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
            return
        status, error = outcome(exc)
        try:
            self.finish(status, error=error)
        except Exception as problem:  # noqa: BLE001  (the user's exception must win)
            exc.add_note(f"mlcycle could not record the end of run {self.id}: {problem}")

    def _refuse(self, action: str) -> None:
        raise ValidationFailed(
            f"run {self.id} has ended; cannot {action}. Start a new run with mc.start_run()"
        )


def outcome(exc: BaseException) -> tuple[RunStatus, RunError | None]:
    """The status and error record a run gets when ``exc`` ends it."""
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return RunStatus.FINISHED, None
    kind = type(exc)
    module = kind.__module__
    name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    error = RunError(
        type=name,
        message=redact_text(str(exc)),
        traceback=redact_text("".join(traceback.format_exception(exc))),
    )
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.KILLED, error
    return RunStatus.FAILED, error
