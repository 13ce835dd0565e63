"""Judging trials on labelled rows: paired shadows, canary shares with their tests, and policies."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.agent import TrainingPolicy, judge, parse_policies, parse_policy, parse_rate
from mlcycle.errors import ValidationFailed


def _policy(**changes: Any) -> TrainingPolicy:
    base: dict[str, Any] = {
        "deployment": "d",
        "pipeline": "p.py:t",
        "model": "m",
        "on_alerts": ("a",),
        "min_labelled": 20,
    }
    return TrainingPolicy(**(base | changes))


def _rows(
    ids: list[str],
    versions: list[int],
    shadows: list[bool],
    outputs: list[Any],
    labels: list[Any],
) -> pa.Table:
    return pa.table(
        {
            "request_id": ids,
            "row_index": pa.array([0] * len(ids), pa.int32()),
            "model_version": pa.array(versions, pa.int32()),
            "shadow": shadows,
            "output": outputs,
            "label": labels,
        }
    )


def _classes(rng: np.random.Generator, n: int, right: float) -> tuple[list[str], list[str]]:
    truth = rng.choice(["<=50K", ">50K"], size=n)
    flip = rng.random(n) > right
    said = np.where(flip, np.where(truth == ">50K", "<=50K", ">50K"), truth)
    return said.tolist(), truth.tolist()


def test_a_canary_classifier_is_judged_by_a_two_proportion_z_test() -> None:
    rng = np.random.default_rng(0)
    said_c, truth_c = _classes(rng, 300, right=0.95)
    said_p, truth_p = _classes(rng, 900, right=0.80)
    rows = _rows(
        [f"c{i}" for i in range(300)] + [f"p{i}" for i in range(900)],
        [2] * 300 + [1] * 900,
        [False] * 1200,
        said_c + said_p,
        truth_c + truth_p,
    )
    policy = _policy(trial="canary", metric="accuracy", margin=0.05, min_labelled=100)
    verdict = judge(rows, policy, candidate=2, production=1)
    assert verdict.decided
    assert verdict.promote
    assert verdict.test == "two-proportion z-test"
    assert verdict.p_value is not None
    assert verdict.p_value < 1e-6
    assert verdict.candidate is not None
    assert verdict.candidate > 0.9
    worse = judge(rows, policy, candidate=1, production=2)
    assert not worse.promote
    assert "not below alpha 0.05" in worse.why


def test_a_canary_that_is_better_by_luck_only_is_not_promoted() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=60)
    noise = rng.normal(scale=1.0, size=60)
    rows = _rows(
        [f"r{i}" for i in range(60)],
        [2] * 30 + [1] * 30,
        [False] * 60,
        (truth + noise * np.r_[np.full(30, 0.9), np.ones(30)]).tolist(),
        truth.tolist(),
    )
    policy = _policy(trial="canary", metric="mae", margin=0.0, min_labelled=30)
    verdict = judge(rows, policy, candidate=2, production=1)
    assert verdict.decided
    assert verdict.test == "Welch t-test on absolute errors"
    assert verdict.p_value is not None
    assert verdict.p_value >= 0.05
    assert not verdict.promote


def test_a_canary_waits_for_labels_on_both_shares() -> None:
    rows = _rows(["a", "b"], [2, 1], [False, False], [1.0, 2.0], [1.0, None])
    verdict = judge(rows, _policy(trial="canary", min_labelled=1), candidate=2, production=1)
    assert not verdict.decided
    assert verdict.why == (
        "waiting for labels: 0 of 1 labelled requests on each share (canary and production)"
    )


def test_a_shadow_compares_only_requests_both_models_answered() -> None:
    rows = _rows(
        ["a", "b", "c", "a", "b", "x"],
        [1, 1, 1, 2, 2, 2],
        [False, False, False, True, True, True],
        [1.0, 2.0, 3.0, 1.0, 2.0, 9.0],
        [1.0, 2.0, 3.0, 1.0, 2.0, 0.0],
    )
    verdict = judge(rows, _policy(min_labelled=2), candidate=2, production=1)
    assert verdict.decided
    assert verdict.labelled == 2
    assert (verdict.candidate, verdict.production, verdict.improvement) == (0.0, 0.0, 0.0)
    assert not verdict.promote  # equal is not better by the margin


def test_identical_losses_on_both_shares_decide_without_a_variance() -> None:
    rows = _rows(["a", "b", "c", "d"], [2, 2, 1, 1], [False] * 4, [1.0, 1.0, 2.0, 2.0], [1.0] * 4)
    policy = _policy(trial="canary", min_labelled=2, margin=0.0)
    verdict = judge(rows, policy, candidate=2, production=1)
    assert (verdict.p_value, verdict.promote) == (0.0, True)
    flat = _rows(["a", "b", "c", "d"], [2, 2, 1, 1], [False] * 4, ["x"] * 4, ["x"] * 4)
    same = judge(flat, _policy(trial="canary", metric="accuracy", min_labelled=2), candidate=2,
                 production=1)  # fmt: skip
    assert (same.p_value, same.promote) == (1.0, False)


@given(
    count=st.integers(min_value=1, max_value=50),
    unit=st.sampled_from(["s", "m", "h", "d", "w"]),
)
def test_rates_parse_to_a_count_and_a_period(count: int, unit: str) -> None:
    found, period = parse_rate(f"{count} per 2{unit}")
    assert found == count
    assert period > timedelta(0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0 per 6h", "allows no retrain"),
        ("1 per soon", "'soon' is not a duration"),
        (3, "is not a rate"),
    ],
)
def test_bad_rates_are_refused(text: object, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        parse_rate(text)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"canary_share": 1.5}, "canary_share = 1.5 must be a number above 0 up to 1"),
        ({"margin": -0.1}, "margin = -0.1 must be a number from 0 up to 1"),
        ({"alpha": True}, "alpha = True must be a number"),
        ({"watch": "soon"}, "watch = 'soon' is not a duration"),
        ({"params": [1]}, "params = [1] must be a table"),
        ({"on_alerts": []}, "names no alert rule"),
        ({"on_alerts": [1]}, "must be a list of alert rule names"),
        ({"model": ""}, "model = '' must be non-empty text"),
    ],
)
def test_each_bad_key_is_named(table: dict[str, Any], problem: str) -> None:
    full = {"pipeline": "p.py:t", "model": "m", "on_alerts": ["a"]} | table
    with pytest.raises(ValidationFailed) as caught:
        parse_policy("d", full, rules={"a"})
    assert problem in str(caught.value)
    assert str(caught.value).startswith("[training.d]")


def test_a_bad_deployment_name_is_named() -> None:
    with pytest.raises(ValidationFailed, match=r"^\[training.a b\]"):
        parse_policy("a b", {}, rules=())


def test_a_single_alert_name_is_taken_as_a_list() -> None:
    policy = parse_policy(
        "d", {"pipeline": "p.py:t", "model": "m", "on_alerts": "a", "params": {"k": 1}}, rules={"a"}
    )
    assert (policy.on_alerts, policy.params, policy.rate) == (("a",), {"k": 1}, "1 per 6h")
    assert policy.lower_is_better


def test_the_policy_in_the_docs_parses() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "continuous-training.md"
    [block] = re.findall(r"```toml\n(.*?)```", page.read_text(), re.DOTALL)
    config = tomllib.loads(block)
    [policy] = parse_policies(config["training"], rules=config["alerts"]["rules"]).values()
    assert (policy.deployment, policy.trial, policy.max_retrains, policy.per) == (
        "bike-demand",
        "shadow",
        1,
        timedelta(hours=6),
    )
    assert policy.rollback_on == ("bike-decay",)


@given(
    truth=st.lists(
        st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=3, max_size=30
    ),
    offset=st.floats(min_value=0.5, max_value=10),
)
def test_a_shadow_is_promoted_only_when_it_is_better(truth: list[float], offset: float) -> None:
    count = len(truth)
    ids = [f"r{i}" for i in range(count)]
    worse = [t + offset for t in truth]
    better = [t + offset / 4 for t in truth]
    rows = _rows(
        ids * 3,
        [1] * count + [2] * count + [3] * count,
        [False] * count + [True] * (2 * count),
        worse + better + worse,
        truth * 3,
    )
    policy = _policy(min_labelled=count, margin=0.5)
    won = judge(rows, policy, candidate=2, production=1)
    assert won.promote
    assert won.improvement == pytest.approx(0.75)
    same = judge(rows, policy, candidate=3, production=1)
    assert not same.promote
    assert same.improvement == 0.0
