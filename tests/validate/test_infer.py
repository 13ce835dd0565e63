"""Schema inference from profiles: the TFDV-style rules, checked on Bike Sharing and edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mlcycle.data import profile_table
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import ValidationFailed
from mlcycle.validate import ColumnSchema, infer_schema, load_schema


def test_bike_schema_types_bounds_and_requirements(tmp_path: Path) -> None:
    table = pacsv.read_csv(BIKE_SHARING_HOURLY)
    profile = profile_table(table)
    schema = infer_schema(profile, slack=0.1, key=["dteday", "hr"], dataset="bike")
    assert schema.names == table.schema.names
    assert schema.key == ["dteday", "hr"]
    frame = pd.read_csv(BIKE_SHARING_HOURLY)
    temp = schema.column("temp")
    span = frame["temp"].max() - frame["temp"].min()
    assert temp.type == "double"
    assert temp.required
    assert temp.min == 0.0  # never negative, so the slack stops at zero
    assert temp.max == pytest.approx(frame["temp"].max() + 0.1 * span)
    assert (temp.allow_nan, temp.allow_inf, temp.domain) == (False, False, None)
    hours = schema.column("hr")
    assert (hours.type, hours.min, hours.max) == ("int64", 0.0, 26.0)  # 23 + 2.3, rounded up
    assert schema.column("dteday").type == "date32[day]"
    path = schema.save(tmp_path / "schemas" / "bike.yaml")
    assert load_schema(path) == schema


def test_missing_fractions_domains_nan_and_slack() -> None:
    table = pa.table(
        {
            "x": [1.0, None, math.nan, -4.0, math.inf, None, 2.0, 3.0, 5.0, 6.0],
            "c": ["a", "b", None, "a", "c", "a", "b", "a", "a", "a"],
            "many": [f"v{i}" for i in range(10)],
            "b": [True, False] * 5,
        }
    )
    schema = infer_schema(table, slack=0.5, max_categories=5)
    x = schema.column("x")
    assert (x.required, x.max_missing_fraction) == (False, 0.3)  # 2/10 * 1.5
    assert (x.min, x.max) == (-4.0 - 5.0, 6.0 + 5.0)
    assert (x.allow_nan, x.allow_inf) == (True, True)
    c = schema.column("c")
    assert (c.domain, c.max_missing_fraction) == (["a", "b", "c"], 0.15)
    assert schema.column("many").domain is None  # 10 categories > max_categories
    assert schema.column("b") == ColumnSchema(name="b", type="bool")
    tight = infer_schema(table, slack=0.0)
    assert (tight.column("x").min, tight.column("x").max) == (-4.0, 6.0)


def test_constant_and_all_null_columns() -> None:
    table = pa.table({"k": [5, 5, 5], "z": [0.0, 0.0, 0.0], "n": pa.array([None] * 3, pa.int64())})
    schema = infer_schema(table, slack=0.1)
    assert (schema.column("k").min, schema.column("k").max) == (4.0, 6.0)
    assert (schema.column("z").min, schema.column("z").max) == (0.0, 0.1)
    n = schema.column("n")
    assert (n.required, n.max_missing_fraction, n.min, n.max) == (False, 1.0, None, None)


def test_bad_arguments_are_named() -> None:
    table = pa.table({"x": [1]})
    with pytest.raises(ValidationFailed, match=r"key column\(s\) 'y' are not in the data"):
        infer_schema(table, key=["y"])
    with pytest.raises(ValidationFailed, match="slack must be"):
        infer_schema(table, slack=-1)
    with pytest.raises(ValidationFailed, match="no rows"):
        infer_schema(table.slice(0, 0))
