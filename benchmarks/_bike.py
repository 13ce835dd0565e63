"""The Bike Sharing workload the registry and serving benchmarks measure.

It is the model ``mlcycle demo`` trained before the demo became the whole
loop on any table: gradient boosting (300 trees) and a one-hot ridge on every
hour before 2012-09-01, tested on September to December 2012, with the
columns that leak the target left out. Kept here, fixed, so the figures in
``docs/benchmarks.md`` stay comparable from run to run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

EXPERIMENT = "bike-demand"
MODEL = "bike-demand"
DATASET = "bike"
SPLIT_DATE = "2012-09-01"
TARGET = "cnt"
LEAKY = ["casual", "registered", "instant"]
CATEGORICAL = ["season", "mnth", "hr", "weekday", "weathersit"]
NUMERIC = ["yr", "holiday", "workingday", "temp", "atemp", "hum", "windspeed"]
GBM_ITERATIONS = 300
SEED = 42


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on every hour before ``SPLIT_DATE``, test on the hours from it on."""
    frame = frame.drop(columns=LEAKY)  # casual + registered == cnt: they leak the target
    frame["dteday"] = pd.to_datetime(frame["dteday"])
    before = frame["dteday"] < pd.Timestamp(SPLIT_DATE)
    return frame[before].reset_index(drop=True), frame[~before].reset_index(drop=True)


def model(kind: str) -> Any:  # Any: an sklearn estimator
    """The benchmark's ``gbm`` or ``ridge``, unfitted."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    if kind == "ridge":
        encode = ColumnTransformer(
            [("onehot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
            remainder="passthrough",
        )
        return make_pipeline(encode, Ridge(alpha=1.0))
    return HistGradientBoostingRegressor(
        max_iter=GBM_ITERATIONS,
        learning_rate=0.1,
        max_leaf_nodes=31,
        early_stopping=False,
        random_state=SEED,
    )
