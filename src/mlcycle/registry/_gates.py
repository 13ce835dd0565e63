"""What a gate evaluation found: one result per gate, the metrics, slices and importances.

An ``Evaluation`` is stored as JSON on ``ModelVersion.evaluation`` and on the
alias move it decided, so it round-trips through ``to_dict``/``from_dict``
and says in words what failed (``summary``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlcycle.errors import GateFailed, ValidationFailed

__all__ = ["Evaluation", "GateResult", "SliceMetrics", "gate_failed", "gate_passed", "gate_skipped"]


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict: ``measured`` against ``limit``, and why in ``detail``.

    A ``skipped`` gate (turned off, or nothing to compare with) counts as passed.
    """

    name: str
    passed: bool
    detail: str
    measured: float | None = None
    limit: float | None = None
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The result as JSON-able values (non-finite numbers become ``None``)."""
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "measured": _finite(self.measured),
            "limit": _finite(self.limit),
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:  # Any: JSON values
        """Read a result written by ``to_dict``."""
        return cls(
            name=str(data["name"]),
            passed=bool(data["passed"]),
            detail=str(data.get("detail", "")),
            measured=_number(data.get("measured")),
            limit=_number(data.get("limit")),
            skipped=bool(data.get("skipped", False)),
        )


def gate_passed(
    name: str, detail: str, measured: float | None = None, limit: float | None = None
) -> GateResult:
    """A gate that passed."""
    return GateResult(name, passed=True, detail=detail, measured=measured, limit=limit)


def gate_failed(
    name: str, detail: str, measured: float | None = None, limit: float | None = None
) -> GateResult:
    """A gate that failed."""
    return GateResult(name, passed=False, detail=detail, measured=measured, limit=limit)


def gate_skipped(name: str, detail: str, measured: float | None = None) -> GateResult:
    """A gate turned off or with nothing to judge (counts as passed)."""
    return GateResult(name, passed=True, detail=detail, measured=measured, skipped=True)


@dataclass(frozen=True, slots=True)
class SliceMetrics:
    """The metrics on the test rows where ``column`` equals ``value``.

    ``judged`` is false when the slice has fewer rows than the gate's ``min_rows``.
    """

    column: str
    value: str
    rows: int
    metrics: dict[str, float]
    judged: bool

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The slice as JSON-able values."""
        return {
            "column": self.column,
            "value": self.value,
            "rows": self.rows,
            "metrics": {key: _finite(value) for key, value in self.metrics.items()},
            "judged": self.judged,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceMetrics:  # Any: JSON values
        """Read a slice written by ``to_dict``."""
        return cls(
            column=str(data["column"]),
            value=str(data["value"]),
            rows=int(data["rows"]),
            metrics=_numbers(data.get("metrics", {})),
            judged=bool(data.get("judged", True)),
        )


@dataclass(frozen=True)
class Evaluation:
    """The gates' verdict on one model and test set, with what was measured on the way.

    ``metrics`` holds the candidate's test metrics plus ``latency_p99_ms``;
    ``compared`` holds the production and baseline metrics by name;
    ``importance`` maps ``permutation`` (mean drop of the primary metric's
    score when a feature is shuffled), ``permutation_std`` and, where SHAP
    ran, ``shap`` (mean absolute SHAP value) to ``{feature: value}``.
    """

    task: str
    target: str
    primary_metric: str
    rows: int
    results: tuple[GateResult, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    slices: tuple[SliceMetrics, ...] = ()
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    compared: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every gate passed (skipped gates count as passed)."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[GateResult]:
        """The gates that failed, in the order they ran."""
        return [result for result in self.results if not result.passed]

    def result(self, name: str) -> GateResult:
        """The result of gate ``name``; ``KeyError`` lists the gates that ran."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no gate {name!r}; the gates were: {[r.name for r in self.results]}")

    def summary(self) -> str:
        """A few lines for people: the verdict, then each failed and skipped gate.

        >>> ok = GateResult("finite_predictions", True, "no NaN or infinite predictions")
        >>> bad = GateResult("threshold.rmse.max", False, "rmse 71.3 > 60", 71.3, 60.0)
        >>> print(Evaluation("regression", "cnt", "rmse", 10, (ok, bad)).summary())
        1 of 2 gates failed on 10 test rows:
          FAILED threshold.rmse.max: rmse 71.3 > 60
        """
        failed = self.failures
        skipped = [result for result in self.results if result.skipped]
        if failed:
            head = f"{len(failed)} of {len(self.results)} gates failed on {self.rows:,} test rows:"
        else:
            head = f"all {len(self.results)} gates passed on {self.rows:,} test rows"
            head += f" ({len(skipped)} skipped)" if skipped else ""
        lines = [head]
        lines += [f"  FAILED {result.name}: {result.detail}" for result in failed]
        lines += [f"  skipped {result.name}: {result.detail}" for result in skipped]
        return "\n".join(lines)

    def refusal(self, what: str) -> GateFailed:
        """The ``GateFailed`` to raise when ``what`` (``promotion of bike/3``) is refused."""
        return GateFailed(
            f"{what} refused: {self.summary()}\nFix the model or the data, or force it "
            "with a recorded reason",
            results=self.to_dict(),
        )

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The evaluation as JSON-able values, as ``ModelVersion.evaluation`` stores it."""
        return {
            "passed": self.passed,
            "task": self.task,
            "target": self.target,
            "primary_metric": self.primary_metric,
            "rows": self.rows,
            "results": [result.to_dict() for result in self.results],
            "metrics": {key: _finite(value) for key, value in self.metrics.items()},
            "slices": [item.to_dict() for item in self.slices],
            "importance": {
                kind: {key: _finite(value) for key, value in values.items()}
                for kind, values in self.importance.items()
            },
            "compared": {
                who: {key: _finite(value) for key, value in values.items()}
                for who, values in self.compared.items()
            },
            "notes": list(self.notes),
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:  # Any: JSON values
        """Read an evaluation written by ``to_dict``."""
        try:
            return cls(
                task=str(data["task"]),
                target=str(data["target"]),
                primary_metric=str(data["primary_metric"]),
                rows=int(data["rows"]),
                results=tuple(GateResult.from_dict(item) for item in data["results"]),
                metrics=_numbers(data.get("metrics", {})),
                slices=tuple(SliceMetrics.from_dict(item) for item in data.get("slices", ())),
                importance={k: _numbers(v) for k, v in data.get("importance", {}).items()},
                compared={k: _numbers(v) for k, v in data.get("compared", {}).items()},
                notes=tuple(str(note) for note in data.get("notes", ())),
                duration_s=float(data.get("duration_s", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed(f"not a stored gate evaluation: {exc!r}") from exc


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: they are stored as ``None``."""
    return None if value is None or not math.isfinite(value) else float(value)


def _number(value: Any) -> float | None:  # Any: a JSON value
    return None if value is None else float(value)


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:  # Any: JSON values
    """Numbers back from JSON; a stored ``None`` (NaN or infinite) becomes NaN."""
    return {str(key): math.nan if value is None else float(value) for key, value in values.items()}
