"""A run records its train/test split; read back, the split finds test rows trained on."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.track import SPLIT_TAG, Split
from mlcycle.workspace import Workspace


@pytest.fixture(scope="module")
def bike() -> pd.DataFrame:
    frame = pd.read_csv(BIKE_SHARING_HOURLY)
    frame["dteday"] = pd.to_datetime(frame["dteday"])
    return frame


def test_time_split_round_trips_and_counts_overlap(
    workspace: Workspace, bike: pd.DataFrame
) -> None:
    train = bike[bike["dteday"] < "2012-09-01"]
    test = bike[bike["dteday"] >= "2012-09-01"]
    with workspace.start_run("bike-demand") as run:
        logged = run.log_split("bike/1", train, test, time_column="dteday")
    assert logged.train_until == "2012-08-31T00:00:00"
    assert logged.test_from == "2012-09-01T00:00:00"
    stored = workspace.get_run(run.id)
    assert SPLIT_TAG in stored.tags
    assert not stored.artifacts()  # a time cut-off needs no artifact: the tag holds it
    split = Split.from_run(stored, artifacts=workspace.artifacts)
    assert split.dataset == "data:/bike/1"
    assert split.kind == "time"
    assert (split.train_rows, split.test_rows) == (len(train), len(test))
    assert split.overlap(test) == 0
    leaky = pd.concat([test, train.tail(48)])
    assert split.overlap(leaky) == 48
    assert split.test_mask(leaky).sum() == len(test)
    assert split.train_mask(train).all()


def test_key_split_stores_digests_not_keys(workspace: Workspace, bike: pd.DataFrame) -> None:
    shuffled = bike.sample(frac=1.0, random_state=7)
    train, test = shuffled.iloc[:15_000], shuffled.iloc[15_000:]
    with workspace.start_run("bike-demand") as run:
        run.log_split("data:/bike/1", train, test, key=["dteday", "hr"])
    stored = workspace.get_run(run.id)
    split = Split.from_run(stored, artifacts=workspace.artifacts)
    assert split.key == ("dteday", "hr")
    assert split.train_keys is not None
    assert len(split.train_keys) == len(train)
    assert split.overlap(test) == 0
    assert split.overlap(pd.concat([test, train.iloc[:10]])) == 10
    names = {artifact.name: artifact for artifact in stored.artifacts()}
    assert names["mlcycle/split-train-keys.u64"].size == 8 * len(train)


def test_logging_an_overlapping_split_is_refused(workspace: Workspace, bike: pd.DataFrame) -> None:
    train, test = bike.iloc[:10_000], bike.iloc[9_990:]
    with workspace.start_run("bike-demand") as run:
        with pytest.raises(ValidationFailed, match="10 of the 7389 test rows are also training"):
            run.log_split("bike/1", train, test, key=("dteday", "hr"))
        with pytest.raises(ValidationFailed, match="must come after train_until"):
            run.log_split("bike/1", train, test, time_column="dteday")
        with pytest.raises(ValidationFailed, match="train rows have dteday after train_until"):
            run.log_split("bike/1", train, time_column="dteday", train_until="2011-06-30")
        with pytest.raises(ValidationFailed, match=r"time_column=\.\.\. .* or key="):
            run.log_split("bike/1", train, test)


def test_a_run_without_a_split_says_how_to_record_one(workspace: Workspace) -> None:
    with workspace.start_run("bike-demand") as run:
        pass
    with pytest.raises(NotFound, match=r"recorded no split; call run.log_split"):
        Split.from_run(workspace.get_run(run.id), artifacts=workspace.artifacts)


def test_numeric_time_and_unloaded_keys() -> None:
    frame = pd.DataFrame({"t": [1, 2, 3, 4, 5], "id": ["a", "b", "c", "d", "e"]})
    split = Split(dataset="data:/x/1", time_column="t", train_until=3, test_from=4)
    split = Split.from_dict(split.to_dict() | {"time_kind": "number"})
    assert split.overlap(frame) == 3
    assert split.test_mask(frame).tolist() == [False, False, False, True, True]
    with pytest.raises(ValidationFailed, match="has no column 'when'"):
        Split(dataset="d", time_column="when", train_until=1).overlap(frame)
    keyed = Split(dataset="data:/x/1", key=("id",))
    with pytest.raises(ValidationFailed, match="digests were not loaded"):
        keyed.overlap(frame)
    with pytest.raises(ValidationFailed, match="not a recorded split"):
        Split.from_dict({"time_column": "t"})


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 1_000), min_size=1, max_size=60, unique=True),
    st.integers(0, 59),
)
def test_split_to_dict_round_trips(ids: list[int], cut: int) -> None:
    from mlcycle.track._split import key_digests

    frame = pd.DataFrame({"id": ids})
    train = frame.iloc[: min(cut, len(ids))]
    keys = key_digests(train, ["id"])
    split = Split(dataset="data:/x/1", key=("id",), train_keys=keys, train_rows=len(train))
    again = Split.from_dict(split.to_dict(), train_keys=keys)
    assert again.to_dict() == split.to_dict()
    assert again.overlap(frame) == len(train)
