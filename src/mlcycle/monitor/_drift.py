"""``drift(reference, current)``: test every column of a window against a reference.

The arguments are checked before any column is read, so a typo in a column
or test name fails at once with the names there are. Columns are then tested
on two threads (the sorting and searching kernels release the GIL).

Decisions the documentation repeats:

- An empty window (no rows) is an error: there is nothing to test.
- A column whose window values are all missing (null, NaN or infinite) is
  reported as drifted, with no statistic and a note: a feature that stopped
  arriving is a change a monitor must show. A column without values in the
  reference cannot be tested and is reported as not drifted, with a note.
- A column the window lacks is an error naming it (choose ``columns=`` to
  test fewer); so is a column whose type differs (numbers against text).
- Categories the reference never saw count as categories with no expected
  share: chi-squared is then infinite (p-value 0), as in SciPy.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from mlcycle.errors import ValidationFailed
from mlcycle.monitor import _stats
from mlcycle.monitor._frames import (
    FrameLike,
    Numbers,
    as_table,
    category_counts,
    column_type,
    finite_values,
)
from mlcycle.monitor._reference import ColumnReference, ReferenceStats
from mlcycle.monitor._report import ColumnDrift, DriftReport, TestName

__all__ = ["DEFAULT_THRESHOLDS", "TESTS", "drift"]

TESTS: tuple[TestName, ...] = get_args(TestName)
DEFAULT_THRESHOLDS: Mapping[TestName, float] = {
    "ks": 0.05,
    "chi2": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
P_VALUE_TESTS = frozenset({"ks", "chi2"})
NUMBERS_ONLY = frozenset({"ks", "wasserstein"})
SEPARATE_VALUES = 20  # Evidently bins numbers only above this many distinct reference values
_THREADS = 2
_SHOWN = 5

Counts = tuple[npt.NDArray[Any], npt.NDArray[np.int64]]  # Any: labels or numbers


@dataclass(frozen=True)
class _Plan:
    """How one column is tested: decided and checked before any data is read."""

    reference: ColumnReference
    test: TestName
    threshold: float
    as_categories: bool


def drift(
    reference: ReferenceStats | FrameLike | str,
    current: FrameLike,
    *,
    columns: Sequence[str] | None = None,
    numeric_test: TestName = "ks",
    categorical_test: TestName = "chi2",
    tests: Mapping[str, TestName] | None = None,
    threshold: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    categorical: Sequence[str] = (),
    drift_share: float = 0.5,
) -> DriftReport:
    """Test each column of ``current`` against ``reference``; see the module docstring.

    ``reference`` is a frame, a prepared :class:`ReferenceStats` (reused for
    every window), or a dataset reference such as ``"bike/3"`` (its cached
    reference in the working directory's workspace). ``numeric_test`` and
    ``categorical_test`` choose the tests; ``tests`` overrides them per
    column, ``threshold`` sets every column's threshold and ``thresholds``
    single ones (the defaults are Evidently's: 0.05 for p-values, 0.1 for
    distances). ``categorical`` names numeric columns to test by value, as
    categories. The dataset drifted when at least ``drift_share`` of the
    columns did.

    >>> import pandas as pd
    >>> ref = pd.DataFrame({"x": [float(i % 50) for i in range(500)], "c": ["a", "b"] * 250})
    >>> now = pd.DataFrame({"x": [float(i % 50) + 25 for i in range(500)], "c": ["a"] * 500})
    >>> report = drift(ref, now)
    >>> report.drifted_columns, report.drifted
    (['x', 'c'], True)
    """
    stats = _reference(reference, columns)
    window = as_table(current, side="current")
    if window.num_rows == 0:
        raise ValidationFailed(
            "the current data has no rows, so there is nothing to test for drift; "
            "give a window with at least one row"
        )
    names = list(columns) if columns is not None else stats.names
    plans = _plans(
        stats,
        window,
        names,
        numeric_test=numeric_test,
        categorical_test=categorical_test,
        tests=tests or {},
        threshold=threshold,
        thresholds=thresholds or {},
        categorical=set(categorical),
    )
    _check_share(drift_share)
    tasks = [(plan, window.column(name)) for name, plan in plans.items()]
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        results = list(pool.map(lambda task: _score(*task), tasks))
    return DriftReport(
        columns={result.column: result for result in results},
        drift_share=drift_share,
        reference_rows=stats.rows,
        current_rows=window.num_rows,
        reference=stats.source,
    )


def _reference(reference: object, columns: Sequence[str] | None) -> ReferenceStats:
    if isinstance(reference, ReferenceStats):
        return reference
    if isinstance(reference, str):
        sdk = importlib.import_module("mlcycle.monitor._sdk")
        found: ReferenceStats = sdk.reference(reference)
        return found
    return ReferenceStats.from_frame(reference, columns=columns)


def _plans(
    stats: ReferenceStats,
    window: pa.Table,
    names: list[str],
    *,
    numeric_test: TestName,
    categorical_test: TestName,
    tests: Mapping[str, TestName],
    threshold: float | None,
    thresholds: Mapping[str, float],
    categorical: set[str],
) -> dict[str, _Plan]:
    if not names:
        raise ValidationFailed("no columns to test: give columns=[...] or a reference with columns")
    for option, chosen in (("tests", tests), ("thresholds", thresholds)):
        _check_named(option, chosen, names)
    _check_named("categorical", dict.fromkeys(categorical), names)
    for given in (numeric_test, categorical_test, *tests.values()):
        _check_test(given)
    missing = [name for name in names if name not in window.column_names]
    if missing:
        raise ValidationFailed(
            f"the current data has no column(s) {missing} (it has {window.column_names}); "
            "add them, or test fewer with columns=[...]"
        )
    plans: dict[str, _Plan] = {}
    for name in names:
        column = stats.column(name)
        _check_types(column, window.schema.field(name).type)
        as_categories = column.kind == "categorical" or name in categorical
        test = tests.get(name, categorical_test if as_categories else numeric_test)
        if test in NUMBERS_ONLY and column.kind == "categorical":
            raise ValidationFailed(
                f"column {name!r} holds categories, and the {test!r} test needs numbers; "
                "choose chi2, jensenshannon or psi for it"
            )
        limit = thresholds.get(name, threshold if threshold is not None else None)
        limit = DEFAULT_THRESHOLDS[test] if limit is None else _check_threshold(name, test, limit)
        plans[name] = _Plan(column, test, limit, as_categories or test == "chi2")
    return plans


def _check_named(option: str, chosen: Mapping[str, object], names: list[str]) -> None:
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise ValidationFailed(
            f"{option}= names column(s) {unknown} that are not tested; the columns are {names}"
        )


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValidationFailed(f"unknown drift test {test!r}; choose one of {', '.join(TESTS)}")


def _check_threshold(name: str, test: TestName, limit: float) -> float:
    bad = not isinstance(limit, int | float) or not math.isfinite(limit) or limit < 0
    if not bad and test in P_VALUE_TESTS and not 0 < limit < 1:
        bad = True
    if bad:
        kind = "a p-value between 0 and 1" if test in P_VALUE_TESTS else "a distance >= 0"
        raise ValidationFailed(
            f"threshold {limit!r} for column {name!r} ({test}) is not {kind}; "
            f"the default is {DEFAULT_THRESHOLDS[test]}"
        )
    return float(limit)


def _check_share(share: float) -> None:
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise ValidationFailed(
            f"drift_share={share!r} must be a share in (0, 1], such as 0.5 (the default)"
        )


def _check_types(column: ColumnReference, data_type: pa.DataType) -> None:
    found = column_type(data_type)
    if found != column.kind and not pa.types.is_null(data_type):  # null: every value missing
        raise ValidationFailed(
            f"column {column.name!r} is {column.kind} in the reference ({column.type}) but "
            f"{found} in the current data ({data_type}); cast it to the reference's type"
        )


def _score(plan: _Plan, column: pa.ChunkedArray) -> ColumnDrift:
    reference = plan.reference
    if reference.kind == "numeric":
        values, missing = finite_values(column)
        count = int(values.size)
    else:
        labels, counts, missing = category_counts(column)
        count = int(counts.sum())
    base = ColumnDrift(
        column=reference.name,
        kind="categorical" if plan.as_categories else "numeric",
        test=plan.test,
        statistic=None,
        p_value=None,
        threshold=plan.threshold,
        drifted=False,
        reference_count=reference.count,
        current_count=count,
        current_missing=missing,
        sampled=reference.sampled,
    )
    if count == 0:
        note = f"no values in the current data: all {missing:,} are missing"
        return _with(base, drifted=reference.count > 0, note=note)
    if reference.count == 0:
        return _with(base, note="no values in the reference: nothing to compare with")
    if reference.kind == "numeric":
        return _numeric(plan, base, values)
    return _by_category(plan, base, (labels, counts))


def _numeric(plan: _Plan, base: ColumnDrift, values: Numbers) -> ColumnDrift:
    reference = plan.reference
    assert reference.values is not None  # a numeric reference has values
    if plan.test == "ks":
        statistic, p_value = _stats.ks(reference.values, values)
        return _with(base, statistic=statistic, p_value=p_value, drifted=p_value <= plan.threshold)
    if plan.test == "wasserstein":
        statistic = _stats.wasserstein(reference.values, values, std=reference.std or 0.0)
        return _with(base, statistic=statistic, drifted=statistic >= plan.threshold)
    if not plan.as_categories and reference.distinct[0].size > SEPARATE_VALUES:
        shares = _stats.histogram_shares(reference.values, values)
        return _distance(plan, base, *shares)
    uniques, counts = np.unique(values, return_counts=True)
    return _by_category(plan, base, (uniques, counts.astype(np.int64)))


def _by_category(plan: _Plan, base: ColumnDrift, current: Counts) -> ColumnDrift:
    ref_counts, window_counts, unseen = _stats.align_counts(plan.reference.distinct, current)
    note = _unseen_note(unseen) if unseen else None
    if plan.test == "chi2":
        statistic, p_value = _stats.chi2(ref_counts, window_counts)
        drifted = p_value < plan.threshold
        return _with(base, statistic=statistic, p_value=p_value, drifted=drifted, note=note)
    shares = ref_counts / ref_counts.sum(), window_counts / window_counts.sum()
    return _with(_distance(plan, base, *shares), note=note)


def _distance(
    plan: _Plan,
    base: ColumnDrift,
    reference: npt.NDArray[np.float64],
    current: npt.NDArray[np.float64],
) -> ColumnDrift:
    measure: Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], float] = (
        _stats.psi if plan.test == "psi" else _stats.jensenshannon
    )
    statistic = measure(reference, current)
    return _with(base, statistic=statistic, drifted=statistic >= plan.threshold)


def _unseen_note(unseen: list[Any]) -> str:  # Any: labels or numbers
    shown = ", ".join(repr(value) for value in unseen[:_SHOWN])
    more = f" and {len(unseen) - _SHOWN:,} more" if len(unseen) > _SHOWN else ""
    return f"{len(unseen):,} value(s) the reference never saw: {shown}{more}"


def _with(base: ColumnDrift, **changes: Any) -> ColumnDrift:  # Any: ColumnDrift fields
    return replace(base, **changes)
