"""The alert rule language: what parses, how conditions judge a window, and errors that point."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import QuerySyntaxError, ValidationFailed
from mlcycle.monitor import parse_condition, parse_duration, parse_rule, rules_from_settings
from mlcycle.settings import AlertSettings


def test_the_rules_of_the_issue_parse() -> None:
    drift = parse_rule("drift-high", "drift_share > 0.3 for 2 windows", severity="critical")
    assert (drift.windows, drift.metrics, drift.severity) == (2, ("drift_share",), "critical")
    assert drift.expression == "drift_share > 0.3 for 2 windows"
    f1 = parse_rule("f1-low", "f1 < 0.8")
    assert (f1.windows, f1.test({"f1": 0.7}), f1.test({"f1": 0.85})) == (1, True, False)
    age = parse_rule("stale", "model_age_days > 30", cooldown="1d", deployments=("bike",))
    assert age.test({"model_age_days": 31}) is True
    assert age.cooldown == timedelta(days=1)
    assert (age.applies_to("bike"), age.applies_to("taxi")) == (True, False)
    assert parse_rule("any", "x > 1").applies_to("taxi")


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("a > 1 and b < 2", {"a": 2, "b": 1}, True),
        ("a > 1 and b < 2", {"a": 2, "b": 3}, False),
        ("a > 1 and b < 2", {"a": 0}, False),  # false and unknown is false
        ("a > 1 and b < 2", {"a": 2}, None),  # true and unknown is unknown
        ("a > 1 or b < 2", {"a": 2}, True),  # true or unknown is true
        ("a > 1 or b < 2", {"a": 0}, None),
        ("not a > 1", {"a": 0}, True),
        ("not a > 1", {}, None),
        ("a > 1", {"a": math.nan}, None),  # NaN is no value
        ("a > 1", {"a": None}, None),
        ("a >= 1 and a <= 1 and a == 1 and a = 1 and not a != 1", {"a": 1}, True),
        ("(a > 1 or b > 1) and c < 0", {"b": 5, "c": -1}, True),
        ("x > -inf", {"x": -1e308}, True),
        ("x < +Infinity", {"x": math.inf}, False),
        ("`slice sex=Male f1` < 0.8", {"slice sex=Male f1": 0.5}, True),
        ("val/rmse > 1e2", {"val/rmse": 101}, True),
        ("A > 1 AND B > 1", {"A": 2, "B": 2}, True),  # keywords in any case
        ("android > 1", {"android": 2}, True),  # a metric may start like a keyword
    ],
)
def test_conditions_follow_three_valued_logic(
    text: str, values: dict[str, float | None], expected: bool | None
) -> None:
    assert parse_rule("r", text).test(values) is expected


def test_and_or_chains_are_flattened_and_metrics_listed_once() -> None:
    rule = parse_rule("r", "a > 1 and b > 1 and (c > 1 and a < 5)")
    assert rule.metrics == ("a", "b", "c")
    condition, windows = parse_condition("a > 1 or b > 1 or c > 1 for 3 window")
    assert windows == 3
    assert len(condition.operands) == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("drift_share >> 0.3", "unexpected '>'; expected a number", 14),
        ("drift_share > ", "ends too early; expected a number", 14),
        ("drift_share ? 0.3", "unexpected character '?'; expected a comparison", 13),
        ("f1 < abc", "unexpected 'abc'; expected a number", 6),
        ("f1 < 0.8 windows", "unexpected 'windows'; expected 'and', 'or', 'for N windows'", 10),
        ("f1 < 0.8 for 2", "ends too early; expected 'windows'", 15),
        ("f1 < 0.8 for 0 windows", "whole number of windows from 1 to 1000", 14),
        ("f1 < 0.8 for 1.5 windows", "whole number of windows", 14),
        ("and > 1", "expected a metric name such as drift_share, 'not' or '('", 1),
        ("(f1 < 0.8", "ends too early; expected 'and', 'or' or ')'", 10),
        ("`f1 < 0.8", "unterminated `quoted metric`", 1),
        ("   ", "the rule is empty", 1),
    ],
)
def test_a_rule_that_does_not_parse_points_at_the_problem(
    text: str, message: str, column: int
) -> None:
    with pytest.raises(QuerySyntaxError, match=r"alert rule 'drift-high': ") as caught:
        parse_rule("drift-high", text)
    assert message in str(caught.value)
    assert caught.value.column == column
    lines = str(caught.value).splitlines()
    assert lines[-1] == "  " + " " * (column - 1) + "^"  # the caret under the column
    assert lines[-2] == "  " + text


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"severity": "fatal"}, "severity 'fatal'; use one of info, warning, critical"),
        ({"cooldown": "soon"}, "'soon' of alert rule 'r' is not a duration"),
        ({"cooldown": "-1h"}, "is not a duration"),
        ({"deployments": ("bad name",)}, "deployment name 'bad name'"),
    ],
)
def test_bad_rule_options_are_refused(options: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        parse_rule("r", "x > 1", **options)  # type: ignore[arg-type]


def test_a_bad_rule_name_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="alert rule name 'drift high'"):
        parse_rule("drift high", "x > 1")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("15", 15)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(seconds) == timedelta(seconds=seconds)


def test_rules_from_settings_check_the_notifiers_they_name() -> None:
    config = AlertSettings.model_validate(
        {
            "rules": {"drift-high": {"when": "drift_share > 0.3", "notify": ["slack"]}},
            "notifiers": {"slack": {"kind": "webhook", "url": "http://127.0.0.1:9/x"}},
        }
    )
    assert list(rules_from_settings(config)) == ["drift-high"]
    unknown = config.model_copy(update={"notifiers": {}})
    with pytest.raises(ValidationFailed) as caught:
        rules_from_settings(unknown)
    message = str(caught.value)
    assert "alert rule 'drift-high' notifies 'slack', which is not a notifier" in message
    assert "(declared: none declared)" in message
    assert "add [alerts.notifiers.slack]" in message
    assert "webhook, file, email" in message


@given(
    # A keyword (or, not, ...) is a metric name only in backquotes, which the writer adds.
    metric=st.from_regex(r"[a-z_][a-z0-9_.]{0,12}", fullmatch=True).filter(
        lambda name: name not in {"and", "or", "not", "for", "window", "windows", "inf", "infinity"}
    ),
    op=st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    windows=st.integers(min_value=1, max_value=1000),
)
def test_a_written_condition_parses_back_the_same(
    metric: str, op: str, value: float, windows: int
) -> None:
    condition, _ = parse_condition(f"{metric} {op} {value!r}")
    again, count = parse_condition(f"{condition} for {windows} windows")
    assert (again, count) == (condition, windows)


@given(x=st.floats(allow_nan=False), threshold=st.floats(allow_nan=False, allow_infinity=False))
def test_not_inverts_a_known_comparison(x: float, threshold: float) -> None:
    rule = parse_rule("r", f"x > {threshold!r}")
    negated = parse_rule("r", f"not x > {threshold!r}")
    assert rule.test({"x": x}) is (x > threshold)
    assert negated.test({"x": x}) is (not x > threshold)
