"""Cron expressions: checked field by field, so an error points at the field that is wrong.

``croniter`` computes the ticks; its own errors name the whole expression
only, so each field is checked here first against the classic five-field
grammar (numbers, names, ranges, steps and lists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import CroniterBadDateError, CroniterError, croniter

from mlcycle.errors import ValidationFailed

__all__ = ["check_cron", "latest_tick"]

NICKNAMES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)
_ITEM = re.compile(r"(?P<range>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>[^/]*))?")
_EXAMPLE = "such as '0 2 * * *' (02:00 every day) or '*/15 * * * *'"


class _FieldError(Exception):
    """What is wrong with ``part`` of a field (the whole field, or one item of its list)."""

    def __init__(self, part: str, problem: str) -> None:
        super().__init__(problem)
        self.part = part
        self.problem = problem


def check_cron(expression: str) -> str:
    """``expression`` tidied (single spaces) if it is a valid cron expression.

    Raises ``ValidationFailed`` naming the field that is wrong, with the
    expression and a caret under that field on the next lines.

    >>> check_cron("0  2 * * MON-FRI")
    '0 2 * * MON-FRI'
    >>> try:
    ...     check_cron("0 25 * * *")
    ... except ValidationFailed as error:
    ...     print(error)
    cron expression '0 25 * * *': field 2 (hour) '25' is out of range 0-23
      0 25 * * *
        ^^
    """
    if not isinstance(expression, str):
        raise ValidationFailed(f"cron expression {expression!r} must be text, {_EXAMPLE}")
    fields = expression.split()
    tidy = " ".join(fields)
    if len(fields) == 1 and fields[0].lower() in NICKNAMES:
        return fields[0].lower()
    if len(fields) != len(_FIELDS):
        raise ValidationFailed(
            f"cron expression {expression!r} has {len(fields)} field(s); it needs 5: "
            f"minute hour day-of-month month day-of-week, {_EXAMPLE}"
        )
    for index, (text, spec) in enumerate(zip(fields, _FIELDS, strict=True)):
        try:
            _check_field(text, spec)
        except _FieldError as exc:
            start = sum(len(f) + 1 for f in fields[:index])
            pointer = " " * start + "^" * len(text)
            where = f"{text!r}" if exc.part == text else f"{text!r}: {exc.part!r}"
            raise ValidationFailed(
                f"cron expression {tidy!r}: field {index + 1} ({spec.name}) {where} {exc.problem}"
                f"\n  {tidy}\n  {pointer}"
            ) from None
    _check_fires(tidy)
    return tidy


def _check_field(text: str, spec: _Field) -> None:
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise _FieldError(item, f"is not a valid item; {_grammar(spec)}")
        bounds = match["range"]
        if bounds != "*":
            low, _, high = bounds.partition("-")
            first = _value(low, spec)
            last = _value(high, spec) if high else first
            if last < first:
                raise _FieldError(bounds, "is a range that runs backwards; list both parts a-b,c-d")
        step = match["step"]
        if step is not None and (not step.isdigit() or int(step) < 1):
            raise _FieldError(item, "has a step that is not a whole number of at least 1")


def _value(text: str, spec: _Field) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.first_name
    if not text.isdigit():
        raise _FieldError(text, f"is not a number; {_grammar(spec)}")
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise _FieldError(text, f"is out of range {spec.low}-{spec.high}")
    return number


def _grammar(spec: _Field) -> str:
    names = f", or names such as {spec.names[0].upper()}" if spec.names else ""
    return f"use *, a number {spec.low}-{spec.high}{names}, a range a-b, a step */n or a list a,b"


def _check_fires(expression: str) -> None:
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValidationFailed(
            f"cron expression {expression!r} never fires: no date has that day of month "
            "in those months"
        ) from None
    except CroniterError as exc:
        raise ValidationFailed(f"cron expression {expression!r} is not valid: {exc}") from None


def latest_tick(expression: str, *, now: datetime, timezone: tzinfo = UTC) -> datetime:
    """The newest tick of ``expression`` at or before ``now`` (in UTC), read in ``timezone``.

    >>> latest_tick("0 2 * * *", now=datetime(2030, 1, 5, 1, 0, tzinfo=UTC)).isoformat()
    '2030-01-04T02:00:00+00:00'
    """
    # croniter's get_prev skips a start that is itself a tick: start one second on.
    start = now.astimezone(timezone).replace(microsecond=0) + timedelta(seconds=1)
    tick: datetime = croniter(expression, start).get_prev(datetime)
    return tick.astimezone(UTC)
