"""Cron expressions: errors point at the field; the newest tick at or before now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.agent import check_cron, latest_tick
from mlcycle.errors import ValidationFailed


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 25 * * *", "field 2 (hour) '25' is out of range 0-23"),
        ("61 * * * *", "field 1 (minute) '61' is out of range 0-59"),
        ("0 2 0 * *", "field 3 (day of month) '0' is out of range 1-31"),
        ("0 2 * 13 *", "field 4 (month) '13' is out of range 1-12"),
        ("0 2 * * 8", "field 5 (day of week) '8' is out of range 0-7"),
        ("x 2 * * *", "field 1 (minute) 'x' is not a number"),
        ("0 2 * JAN,FOO *", "field 4 (month) 'JAN,FOO': 'FOO' is not a number"),
        ("*/0 * * * *", "field 1 (minute) '*/0' has a step that is not a whole number"),
        ("0 5-1 * * *", "field 2 (hour) '5-1' is a range that runs backwards"),
        ("1,,2 * * * *", "field 1 (minute) '1,,2': '' is not a valid item"),
        ("0 2 * *", "has 4 field(s); it needs 5: minute hour"),
        ("0 0 2 * * *", "has 6 field(s)"),
        ("", "has 0 field(s)"),
        ("0 2 31 2 *", "never fires"),
    ],
)
def test_a_bad_expression_names_the_field(expression: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        check_cron(expression)


def test_the_error_shows_a_caret_under_the_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_cron("0 2 * 13 *")
    assert str(caught.value).splitlines()[1:] == ["  0 2 * 13 *", "        ^^"]


@pytest.mark.parametrize(
    ("expression", "tidy"),
    [("0  2 * * *", "0 2 * * *"), ("@Daily", "@daily"), ("*/15 9-17 * JAN-MAR mon-fri", None)],
)
def test_good_expressions_pass_tidied(expression: str, tidy: str | None) -> None:
    assert check_cron(expression) == (tidy or expression)


def test_latest_tick_includes_a_tick_exactly_now() -> None:
    now = datetime(2030, 1, 3, 2, 0, tzinfo=UTC)
    assert latest_tick("0 2 * * *", now=now) == now
    assert latest_tick("0 2 * * *", now=now - timedelta(seconds=1)) == now - timedelta(days=1)


def test_latest_tick_reads_the_expression_in_a_time_zone() -> None:
    now = datetime(2030, 1, 3, 12, 0, tzinfo=UTC)
    tick = latest_tick("0 2 * * *", now=now, timezone=ZoneInfo("Asia/Tokyo"))  # UTC+9
    assert tick == datetime(2030, 1, 2, 17, 0, tzinfo=UTC)


NAIVE_BOUNDS = (datetime(2000, 1, 1), datetime(2100, 1, 1))  # noqa: DTZ001  (Hypothesis wants naive)


@given(st.datetimes(min_value=NAIVE_BOUNDS[0], max_value=NAIVE_BOUNDS[1]))
def test_latest_tick_is_never_after_now_and_the_next_one_is(moment: datetime) -> None:
    now = moment.replace(tzinfo=UTC)
    tick = latest_tick("*/7 3 * * *", now=now)
    assert tick <= now
    assert tick.minute % 7 == 0
    assert tick.hour == 3
    assert now - tick < timedelta(days=2)
