"""Training policies: the ``[training.<deployment>]`` tables, checked so an error names the key.

A policy says which alert rules start a retrain of a deployment's model, the
pipeline that retrains it, how the candidate is tried on live traffic (a
shadow or a canary), what it must win by, how often retrains may start, and
which alerts roll a promotion back while it is being watched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from mlcycle.errors import MlcycleError, ValidationFailed
from mlcycle.store import check_deployment_name

__all__ = ["METRICS", "TrainingPolicy", "parse_policies", "parse_policy", "parse_rate"]

METRICS: dict[str, bool] = {"rmse": True, "mae": True, "accuracy": False}
"""The metrics a trial compares, and whether lower is better."""

Trial = Literal["shadow", "canary"]
LaunchKind = Literal["in-process", "process"]
_KEYS = frozenset(
    {
        "pipeline",
        "model",
        "on_alerts",
        "trial",
        "canary_share",
        "metric",
        "margin",
        "min_labelled",
        "max_retrains",
        "max_alert_age",
        "rollback_on",
        "watch",
        "alpha",
        "params",
        "launch",
    }
)
_RATE = re.compile(r"\s*(\d+)\s+per\s+(\S+)\s*", re.IGNORECASE)
_EXAMPLE = """[training.bike-demand]
pipeline = "pipelines.py:training"
model = "bike-demand"
on_alerts = ["bike-drift"]"""


@dataclass(frozen=True, slots=True)
class TrainingPolicy:
    """How one deployment retrains: see ``docs/continuous-training.md`` for every key."""

    deployment: str
    pipeline: str
    model: str
    on_alerts: tuple[str, ...]
    trial: Trial = "shadow"
    canary_share: float = 0.1
    metric: str = "rmse"
    margin: float = 0.02
    min_labelled: int = 200
    max_retrains: int = 1
    per: timedelta = timedelta(hours=6)
    rate: str = "1 per 6h"
    max_alert_age: timedelta = timedelta(hours=6)
    """An alert older than this when the loop reads it starts no retrain (default: ``per``)."""
    rollback_on: tuple[str, ...] = ()
    watch: timedelta = timedelta(days=3)
    alpha: float = 0.05
    params: dict[str, Any] = field(default_factory=dict)  # Any: pipeline parameter values
    launch: LaunchKind = "in-process"

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller ``metric`` is a better model (errors) or a larger one (accuracy)."""
        return METRICS[self.metric]


def parse_rate(text: object, *, where: str = "max_retrains") -> tuple[int, timedelta]:
    """``"1 per 6h"`` as (1, 6 hours).

    >>> parse_rate("2 per 1d")
    (2, datetime.timedelta(days=1))
    """
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationFailed(
            f"{where} = {text!r} is not a rate; write COUNT per DURATION, such as '1 per 6h'"
        )
    from mlcycle.monitor import parse_duration  # noqa: PLC0415  (monitor loads NumPy)

    count = int(match[1])
    if count < 1:
        raise ValidationFailed(f"{where} = {text!r} allows no retrain; the count must be >= 1")
    try:
        period = parse_duration(match[2])
    except ValidationFailed:
        raise ValidationFailed(
            f"{where} = {text!r}: {match[2]!r} is not a duration; use 90s, 30m, 6h, 1d or 1w"
        ) from None
    return count, period


def parse_policies(
    tables: Mapping[str, Any],  # Any: TOML values
    *,
    rules: Collection[str],
    check_pipeline: Callable[[str], object] | None = None,
) -> dict[str, TrainingPolicy]:
    """Every ``[training.NAME]`` table as a policy, by deployment.

    ``rules`` are the alert rules ``[alerts.rules]`` defines; ``check_pipeline``
    loads a pipeline target and raises when it names none.
    """
    return {
        name: parse_policy(name, table, rules=rules, check_pipeline=check_pipeline)
        for name, table in sorted(tables.items())
    }


def parse_policy(
    deployment: str,
    table: object,
    *,
    rules: Collection[str],
    check_pipeline: Callable[[str], object] | None = None,
) -> TrainingPolicy:
    """The policy ``[training.<deployment>]`` declares; ``ValidationFailed`` names the bad key.

    >>> table = {"pipeline": "pipelines.py:training", "model": "bike", "on_alerts": ["drift"]}
    >>> policy = parse_policy("bike", table, rules={"drift"})
    >>> policy.trial, policy.metric, policy.max_retrains, policy.per
    ('shadow', 'rmse', 1, datetime.timedelta(seconds=21600))
    >>> parse_policy("bike", {**table, "trial": "live"}, rules={"drift"})
    Traceback (most recent call last):
    ...
    mlcycle.errors.ValidationFailed: [training.bike] trial = 'live' is not one of shadow, canary
    """
    where = f"[training.{deployment}]"
    try:
        check_deployment_name(deployment)
    except ValidationFailed as exc:
        raise ValidationFailed(f"{where}: {exc}") from None
    if not isinstance(table, Mapping):
        raise ValidationFailed(f"{where} must be a table of keys, such as\n{_EXAMPLE}")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ValidationFailed(
            f"{where} has unknown key(s) {', '.join(unknown)}; "
            f"the keys are {', '.join(sorted(_KEYS))}"
        )
    for key in ("pipeline", "model", "on_alerts"):
        if key not in table:
            raise ValidationFailed(f"{where} needs '{key}', such as\n{_EXAMPLE}")
    reader = _Reader(where, table)
    rate = table.get("max_retrains", "1 per 6h")
    count, per = parse_rate(rate, where=f"{where} max_retrains")
    policy = TrainingPolicy(
        deployment=deployment,
        pipeline=reader.text("pipeline"),
        model=reader.text("model"),
        on_alerts=reader.names("on_alerts", rules),
        trial=reader.choice("trial", ("shadow", "canary"), "shadow"),  # type: ignore[arg-type]
        canary_share=reader.number("canary_share", 0.1, low=0.0, high=1.0),
        metric=reader.choice("metric", tuple(METRICS), "rmse"),
        margin=reader.number("margin", 0.02, low=0.0, high=1.0, closed=True),
        min_labelled=int(reader.number("min_labelled", 200, low=0.0, whole=True)),
        max_retrains=count,
        per=per,
        rate=" ".join(str(rate).split()),
        max_alert_age=reader.duration("max_alert_age", per),
        rollback_on=reader.names("rollback_on", rules, default=()),
        watch=reader.duration("watch", "3d"),
        alpha=reader.number("alpha", 0.05, low=0.0, high=1.0),
        params=reader.params(),
        launch=reader.choice("launch", ("in-process", "process"), "in-process"),  # type: ignore[arg-type]
    )
    if policy.max_alert_age <= timedelta(0):
        raise reader.fail("max_alert_age", "lets no alert start a retrain; use a duration like 6h")
    if check_pipeline is not None:
        try:
            check_pipeline(policy.pipeline)
        except MlcycleError as exc:
            raise ValidationFailed(f"{where} pipeline = {policy.pipeline!r}: {exc}") from None
    return policy


class _Reader:
    """Reads one key of a policy table, raising an error that names the table and the key."""

    def __init__(self, where: str, table: Mapping[str, Any]) -> None:  # Any: TOML values
        self.where = where
        self.table = table

    def fail(self, key: str, problem: str) -> ValidationFailed:
        return ValidationFailed(f"{self.where} {key} = {self.table.get(key)!r} {problem}")

    def text(self, key: str) -> str:
        value = self.table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be non-empty text")
        return value.strip()

    def names(
        self, key: str, rules: Collection[str], default: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        value = self.table.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of alert rule names, such as ['bike-drift']")
        if key == "on_alerts" and not value:
            raise self.fail(key, "names no alert rule; list the rules that start a retrain")
        defined = ", ".join(sorted(rules)) or "none"
        for name in value:
            if name not in rules:
                raise self.fail(
                    key,
                    f"names alert rule '{name}', which [alerts.rules] does not define "
                    f"(defined: {defined}); add [alerts.rules.{name}] or fix the name",
                )
        return tuple(value)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.table.get(key, default)
        if value not in options:
            raise self.fail(key, f"is not one of {', '.join(options)}")
        return str(value)

    def number(
        self,
        key: str,
        default: float,
        *,
        low: float,
        high: float | None = None,
        closed: bool = False,
        whole: bool = False,
    ) -> float:
        value = self.table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(key, "must be a number")
        if whole and (value != int(value) or value < 1):
            raise self.fail(key, "must be a whole number of at least 1")
        above = value >= low if closed else value > low
        if not whole and (not above or (high is not None and value > high)):
            span = f"{'from' if closed else 'above'} {low:g}" + (
                f" up to {high:g}" if high is not None else ""
            )
            raise self.fail(key, f"must be a number {span}")
        return float(value)

    def duration(self, key: str, default: str | timedelta) -> timedelta:
        from mlcycle.monitor import parse_duration  # noqa: PLC0415  (monitor loads NumPy)

        if key not in self.table and isinstance(default, timedelta):
            return default
        value = self.table.get(key, default)
        try:
            return parse_duration(value)
        except ValidationFailed:
            raise self.fail(key, "is not a duration; use 90s, 30m, 6h, 3d or 1w") from None

    def params(self) -> dict[str, Any]:  # Any: TOML values
        value = self.table.get("params", {})
        if not isinstance(value, Mapping):
            raise self.fail("params", "must be a table, such as { train_from = 'recent' }")
        return {str(k): v for k, v in value.items()}
