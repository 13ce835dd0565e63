"""``observe_many`` and ``Answers`` give the same exposition as one Prometheus update per value."""

from __future__ import annotations

import asyncio
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary, generate_latest

from mlcycle.serve._metrics import Answers, add_observed, bucket_bounds, observe_many, tally

_VALUES = st.lists(
    st.one_of(
        st.floats(min_value=-10, max_value=100, allow_nan=False),
        st.sampled_from([0.0, 0.001, 0.5, 1.0, 5.0, math.inf, -math.inf]),
    ),
    max_size=80,
)


def _pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(), CollectorRegistry()


def _histograms() -> tuple[CollectorRegistry, CollectorRegistry, Any, Any]:  # Any: children
    """Two registries, and the same lag histogram's child in each."""
    one, many = _pair()
    buckets = (0.001, 0.01, 0.5, 1.0, 5.0)
    by_one = Histogram("lag", "lag", ["lane"], buckets=buckets, registry=one).labels("a")
    by_many = Histogram("lag", "lag", ["lane"], buckets=buckets, registry=many).labels("a")
    return one, many, by_one, by_many


@given(values=_VALUES)
@settings(max_examples=200, deadline=None)
def test_a_histogram_gets_the_same_buckets_count_and_sum(values: list[float]) -> None:
    one, many, by_one, by_many = _histograms()
    for value in values:
        by_one.observe(value)
    observe_many(by_many, np.array(values, dtype=np.float64))
    assert _samples(many) == pytest.approx(_samples(one), nan_ok=True)


@given(values=_VALUES)
@settings(max_examples=100, deadline=None)
def test_a_summary_gets_the_same_count_and_sum(values: list[float]) -> None:
    one, many = _pair()
    by_one = Summary("value", "value", ["lane"], registry=one).labels("a")
    by_many = Summary("value", "value", ["lane"], registry=many).labels("a")
    for value in values:
        by_one.observe(value)
    observe_many(by_many, np.array(values, dtype=np.float64))
    assert _samples(many) == pytest.approx(_samples(one), nan_ok=True)


def test_a_nan_lands_in_no_bucket_as_with_observe() -> None:
    one, many = _pair()
    by_one = Histogram("h", "h", buckets=(1.0,), registry=one)
    by_many = Histogram("h", "h", buckets=(1.0,), registry=many)
    for value in (0.5, math.nan, 2.0):
        by_one.observe(value)
    observe_many(by_many, np.array([0.5, math.nan, 2.0]))
    assert _samples(many) == pytest.approx(_samples(one), nan_ok=True)


def test_the_same_in_multiprocess_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Across workers the values live in files; the bulk path writes them the same."""
    from prometheus_client import multiprocess, values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.get_value_class())
    registry = CollectorRegistry()
    histogram = Histogram("lag", "lag", buckets=(0.1, 1.0), registry=registry)
    observe_many(histogram, np.array([0.05, 0.5, 0.7, 3.0]))
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=str(tmp_path))  # type: ignore[no-untyped-call]
    text = generate_latest(combined).decode()
    assert 'lag_bucket{le="0.1"} 1.0' in text
    assert 'lag_bucket{le="1.0"} 3.0' in text
    assert 'lag_bucket{le="+Inf"} 4.0' in text
    assert "lag_sum 4.25" in text


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@given(values=_VALUES)
@settings(max_examples=100, deadline=None)
def test_a_tally_made_elsewhere_adds_what_each_observe_would(values: list[float]) -> None:
    """A shadow's process adds its values up with the bounds it was given; its worker adds that."""
    one, many, by_one, by_many = _histograms()
    sum_one = Summary("value", "value", ["lane"], registry=one).labels("a")
    sum_many = Summary("value", "value", ["lane"], registry=many).labels("a")
    for value in values:
        by_one.observe(value)
        sum_one.observe(value)
    bounds = pickle.loads(pickle.dumps(bucket_bounds(by_many)))  # as the process gets them
    array = np.array(values, dtype=np.float64)
    add_observed(by_many, pickle.loads(pickle.dumps(tally(array, bounds))))
    add_observed(sum_many, tally(array, bucket_bounds(sum_many)))
    assert _samples(many) == pytest.approx(_samples(one), nan_ok=True)


@given(rounds=st.lists(st.lists(st.floats(min_value=0, max_value=20), max_size=40), max_size=4))
@settings(max_examples=50, deadline=None)
def test_answers_written_once_a_round_count_what_each_update_would(
    rounds: list[list[float]],
) -> None:
    """Requests answered in one loop round are written in the next: each round, the same values."""
    one, many, by_one, by_many = _histograms()
    counted_one = Counter("requests", "requests", ["lane"], registry=one).labels("a")
    counted_many = Counter("requests", "requests", ["lane"], registry=many).labels("a")
    answers = Answers(counted_many, by_many)

    async def serve() -> None:
        for latencies in rounds:
            for seconds in latencies:
                counted_one.inc()
                by_one.observe(seconds)
                answers.answered(seconds)
            await asyncio.sleep(0)  # the round ends; its write runs
            assert _samples(many) == pytest.approx(_samples(one))

    asyncio.run(serve())
