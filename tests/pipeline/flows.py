"""Pipelines the tests run, kept in a file so workers and resumes can load them by path.

Steps count their executions in files under ``marks`` (a folder given as a
parameter), so a test can tell which steps ran, in which process.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from sklearn.linear_model import Ridge

import mlcycle as mc
from mlcycle import pipeline, step
from mlcycle.data import DatasetRef, ref

log = logging.getLogger("tests.flows")
RENDEZVOUS_S = 60.0


def count(marks: str, name: str) -> int:
    """Add one to the counter ``name`` in ``marks``; returns the new count."""
    path = Path(marks) / f"{name}.count"
    number = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(number))
    return number


def counted(marks: str, name: str) -> int:
    """How many times ``name`` ran."""
    path = Path(marks) / f"{name}.count"
    return int(path.read_text()) if path.exists() else 0


@step
def make(rows: int, marks: str) -> pd.DataFrame:
    count(marks, "make")
    print(f"making {rows} rows")
    log.warning("made %d rows", rows)
    return pd.DataFrame({"x": np.arange(rows, dtype=float), "y": np.arange(rows) * 2.0})


@step
def scale(df: pd.DataFrame, factor: float, marks: str) -> pd.DataFrame:
    count(marks, "scale")
    return df * factor


@step
def total(df: pd.DataFrame, marks: str) -> dict[str, float]:
    count(marks, "total")
    return {"x": float(df.x.sum()), "y": float(df.y.sum())}


@pipeline
def simple(marks: str, rows: int = 5, factor: float = 2.0) -> None:
    total(scale(make(rows, marks), factor, marks), marks)


@step
def gate(summary: dict[str, float], marks: str) -> dict[str, float]:
    count(marks, "gate")
    if not (Path(marks) / "allow").exists():
        raise RuntimeError("the gate is closed")
    return summary


@pipeline
def gated(marks: str, rows: int = 5) -> None:
    gate(total(make(rows, marks), marks), marks)


@step(retries=2, retry_delay=0.01)
def flaky(df: pd.DataFrame, marks: str) -> int:
    if count(marks, "flaky") < 3:
        raise ConnectionError("the service hiccuped")
    return len(df)


@pipeline
def retrying(marks: str) -> None:
    flaky(make(3, marks), marks)


@step
def slow(df: pd.DataFrame, marks: str) -> int:
    count(marks, "slow")
    (Path(marks) / "slow.started").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not (Path(marks) / "fast").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(df)


@pipeline
def sleepy(marks: str, rows: int = 5) -> None:
    slow(make(rows, marks), marks)


@step
def branch(df: pd.DataFrame, name: str, marks: str, rendezvous: bool) -> dict[str, int]:
    count(marks, f"branch-{name}")
    (Path(marks) / f"{name}.started").touch()
    if rendezvous:  # both branches must be running at once for either to finish
        deadline = time.monotonic() + RENDEZVOUS_S
        while len(list(Path(marks).glob("*.started"))) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the other branch never started")
            time.sleep(0.02)
    return {"pid": os.getpid(), "rows": len(df)}


@step
def join(left: dict[str, int], right: dict[str, int]) -> dict[str, object]:
    return {"pids": sorted({left["pid"], right["pid"]}), "rows": left["rows"] + right["rows"]}


@pipeline
def diamond(marks: str, rows: int = 4, rendezvous: bool = False) -> None:
    df = make(rows, marks)
    join(branch(df, "a", marks, rendezvous), branch(df, "b", marks, rendezvous))


@step
def read(data: DatasetRef) -> pd.DataFrame:
    frame: pd.DataFrame = mc.data.load(data)
    return frame


@step
def count_rows(df: pd.DataFrame) -> int:
    return len(df)


BIKE = ref("bike@latest")


@pipeline
def from_data(data: DatasetRef = BIKE) -> None:
    count_rows(read(data))


@step
def fit(df: pd.DataFrame) -> Ridge:
    return Ridge(alpha=1.0).fit(df[["x"]], df["y"])


@step
def predict(model: Ridge, df: pd.DataFrame) -> np.ndarray:
    predictions: np.ndarray = model.predict(df[["x"]])
    return predictions


@pipeline
def modeling(marks: str, rows: int = 20) -> None:
    df = make(rows, marks)
    predict(fit(df), df)


class Box:
    """An object no safe serializer handles."""

    def __init__(self, value: int) -> None:
        self.value = value


@step(pickle=True)
def boxed(value: int) -> Box:
    return Box(value)


@step
def unbox(box: Box, plus: int) -> int:
    return box.value + plus


@pipeline
def pickled(value: int = 7, plus: int = 0) -> None:
    unbox(boxed(value), plus)


@step
def unboxable(value: int) -> Box:
    return Box(value)


@pipeline
def unserializable(value: int = 7) -> None:
    unboxable(value)


@step
def as_arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


@step
def as_polars(df: pd.DataFrame) -> pl.DataFrame:
    return pl.from_pandas(df)


@step
def as_numpy(df: pd.DataFrame) -> np.ndarray:
    return df.to_numpy()


@step
def as_json(df: pd.DataFrame) -> dict[str, object]:
    return {"rows": len(df), "columns": list(df.columns), "first": df.iloc[0].to_dict()}


@step
def describe(
    df: pd.DataFrame,
    table: pa.Table,
    frame: pl.DataFrame,
    *,
    array: np.ndarray,
    summary: dict[str, object],
    model: Ridge,
) -> dict[str, object]:
    """What arrived from each serializer, by type and value, as one JSON-able record."""
    return {
        "pandas": [type(df).__name__, float(df.y.sum())],
        "arrow": [type(table).__name__, table.num_rows, table.column_names],
        "polars": [type(frame).__name__, float(frame["y"].sum())],
        "numpy": [type(array).__name__, list(array.shape), str(array.dtype)],
        "json": summary,
        "model": [type(model).__name__, round(float(model.predict(df[["x"]])[1]), 6)],
    }


@pipeline
def kinds(marks: str, rows: int = 4) -> None:
    df = make(rows, marks)
    describe(
        df, as_arrow(df), as_polars(df), array=as_numpy(df), summary=as_json(df), model=fit(df)
    )


@step
def chatty(size: int) -> int:
    print("x" * size)
    return size


@pipeline
def noisy(size: int) -> None:
    chatty(size)


@step(cache=False)
def now(marks: str) -> int:
    return count(marks, "now")


@pipeline
def uncached(marks: str) -> None:
    now(marks)
