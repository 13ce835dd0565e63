"""The training of ``mlcycle demo`` as an mlcycle pipeline, so a second demo reuses its cache.

The DAG: ``load`` reads the dataset version the run pinned (the parameter
``data``, ``bike@latest`` by default, resolved when the run starts),
``split`` drops the leaky columns and marks the train and test hours,
``baseline``, ``ridge`` and ``gbm`` train one model each (independent, so
the ``process`` executor runs them in parallel), and ``gates`` judges the
new versions and promotes the best one that passes::

    load -> split -> baseline, ridge, gbm -> gates

Each training step records its run (params, metrics, the learning curve,
the split) and registers its model as a version of ``bike-demand``, inside
the step: registration is part of what the cache keys. A second run on the
same data with the same code is served from the cache end to end, so it
neither trains nor registers duplicate versions nor moves ``production``;
a new dataset version (or changed code) misses, trains, registers the new
versions and gates them. ``gates`` is cached too: its inputs are the
version numbers the training steps registered, so it runs exactly when
there are new versions to judge.

Run it without the demo with
``mlcycle pipelines run mlcycle.cli._demo_pipeline:bike_demand`` once the
dataset ``bike`` is registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import mlcycle as mc
from mlcycle.cli._demo_names import DATASET, EXPERIMENT, MODEL, SPLIT_DATE, TIME_COLUMN
from mlcycle.data import DatasetRef
from mlcycle.errors import ValidationFailed
from mlcycle.pipeline import active_host, pipeline, step

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle import ActiveRun
    from mlcycle.pipeline import PipelineHost
    from mlcycle.store import LineageGraph

__all__ = [
    "CATEGORICAL",
    "DATASET",
    "EXPERIMENT",
    "MODEL",
    "MODELS",
    "NUMERIC",
    "SPLIT_DATE",
    "TARGET",
    "bike_demand",
]

LEAKY = ["casual", "registered", "instant"]
SEED = 42
TARGET = "cnt"
CATEGORICAL = ["season", "mnth", "hr", "weekday", "weathersit"]
NUMERIC = ["yr", "holiday", "workingday", "temp", "atemp", "hum", "windspeed"]
GBM_ITERATIONS = 300
HISTORY_EVERY = 10
MODELS = ("baseline", "ridge", "gbm")
PART = "part"
"""The column ``split`` adds: ``train`` or ``test``."""


def _host() -> PipelineHost:
    """The workspace the step runs on (the working directory's when called outside a pipeline)."""
    host = active_host()
    return host if host is not None else cast("PipelineHost", mc.current_workspace())


def _active_run() -> ActiveRun:
    run = mc.active_run()
    if run is None:
        raise ValidationFailed(
            "the demo's steps log to a run: run them as the bike_demand pipeline"
        )
    return run


@step
def load(data: DatasetRef) -> pd.DataFrame:
    """Every row of the pinned dataset version (recorded as the step run's input)."""
    frame: pd.DataFrame = _host().data.load(data)
    return frame


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on every hour before ``SPLIT_DATE``, test on the hours from it on."""
    import pandas as pd

    frame = frame.drop(columns=LEAKY)  # casual + registered == cnt: they leak the target
    frame["dteday"] = pd.to_datetime(frame["dteday"])
    before = frame["dteday"] < pd.Timestamp(SPLIT_DATE)
    return frame[before].reset_index(drop=True), frame[~before].reset_index(drop=True)


@step
def split(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without the leaky columns, each marked ``train`` or ``test`` in ``part``."""
    import pandas as pd

    train, test = _split(frame)
    return pd.concat([train.assign(**{PART: "train"}), test.assign(**{PART: "test"})])


def _parts(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    is_test = frame[PART] == "test"
    rows = frame.drop(columns=[PART])
    return rows[~is_test].reset_index(drop=True), rows[is_test].reset_index(drop=True)


def _model(kind: str) -> tuple[Any, dict[str, Any]]:  # Any: an sklearn estimator, its params
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    if kind == "baseline":
        return DummyRegressor(strategy="mean"), {"model": "mean", "strategy": "mean"}
    if kind == "ridge":
        encode = ColumnTransformer(
            [("onehot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
            remainder="passthrough",
        )
        return make_pipeline(encode, Ridge(alpha=1.0)), {
            "model": "ridge",
            "alpha": 1.0,
            "one_hot": ",".join(CATEGORICAL),
        }
    params = {"max_iter": GBM_ITERATIONS, "learning_rate": 0.1, "max_leaf_nodes": 31}
    gbm = HistGradientBoostingRegressor(**params, early_stopping=False, random_state=SEED)
    return gbm, {"model": "gbm", **params, "random_state": SEED}


def _train(frame: pd.DataFrame, *, kind: str, data: str) -> dict[str, Any]:  # Any: JSON
    """Fit model ``kind`` on the train hours, score it on the test hours, register it."""
    host, run = _host(), _active_run()
    features = CATEGORICAL + NUMERIC
    model, params = _model(kind)
    train, test = _parts(frame)
    # The rows came through `split`, so name the version this run trained on for its lineage
    # (the registry copies a run's input datasets onto the versions it registers).
    graph = cast("LineageGraph", host.metadata)
    graph.add_edge(
        f"data:/{data}", f"run:{run.id}", kind="input", actor=host.actor, time=host.clock.now()
    )
    run.set_tags({"demo": "true", "dataset": "uci-bike-sharing-hourly", "stage": "data"})
    run.log_params(
        {
            **params,
            "target": TARGET,
            "features": len(features),
            "split": f"train < {SPLIT_DATE} <= test",
            "dataset": data,
            "train_rows": len(train),
            "test_rows": len(test),
        }
    )
    # Recorded so the registry's gates can check that the test rows were never trained on.
    run.log_split(data, train, test, time_column=TIME_COLUMN, test_from=SPLIT_DATE)
    mc.seed_everything(SEED)
    model.fit(train[features], train[TARGET])
    if kind == "gbm":
        _log_learning_curve(run, model, features=test[features], target=test[TARGET])
    predictions = model.predict(test[features])
    metrics = _scores(test[TARGET], predictions)
    run.log_metrics(metrics)
    sample = test[["dteday", "hr", TARGET]].head(200).assign(prediction=predictions[:200])
    sample["dteday"] = sample["dteday"].dt.strftime("%Y-%m-%d")
    run.log_artifact(sample, name="predictions_sample")
    run.log_artifact({"model": kind, "params": params, "test_metrics": metrics}, name="report")
    registered = host.registry.register(
        MODEL,
        model,
        run=run,
        input_example=test[features].head(5),
        metrics=metrics,
        tags={"algo": kind, "owner": "mlcycle demo", "purpose": "hourly bike rentals"},
    )
    return {"model": kind, **metrics, "run_id": run.id, "version": registered.version}


baseline = step(name="baseline")(_train)
ridge = step(name="ridge")(_train)
gbm = step(name="gbm")(_train)


@step
def gates(
    frame: pd.DataFrame, baseline: dict[str, Any], ridge: dict[str, Any], gbm: dict[str, Any]
) -> dict[str, Any]:  # Any: JSON results
    """Evaluate each new version on the test months; promote the best one that passes.

    Returns ``{"passed": [versions], "promoted": version or None}``.
    """
    registry = _host().registry
    train, test = _parts(frame)
    results = [baseline, ridge, gbm]
    passing = [
        result
        for result in results
        if registry.evaluate(
            f"{MODEL}/{result['version']}", test, train_data=train, target=TARGET
        ).passed
    ]
    if not passing:
        return {"passed": [], "promoted": None}
    best = min(passing, key=lambda result: result["rmse"])
    registry.promote(
        MODEL,
        best["version"],
        to="production",
        reason=f"mlcycle demo: lowest test rmse ({best['rmse']:.1f}) of the versions that passed",
    )
    return {"passed": [result["version"] for result in passing], "promoted": best["version"]}


@pipeline(name=EXPERIMENT)
def bike_demand(data: DatasetRef = DatasetRef(f"{DATASET}@latest")) -> None:
    """Split the bike data by time, train three models in parallel branches, gate and promote."""
    prepared = split(load(data))
    trained = {
        "baseline": baseline(prepared, kind="baseline", data=data),
        "ridge": ridge(prepared, kind="ridge", data=data),
        "gbm": gbm(prepared, kind="gbm", data=data),
    }
    gates(prepared, **trained)


def _log_learning_curve(
    run: ActiveRun,
    model: Any,  # Any: a fitted HistGradientBoostingRegressor
    *,
    features: pd.DataFrame,
    target: pd.Series[float],
) -> None:
    """Test RMSE after every ``HISTORY_EVERY`` trees, as the history of ``rmse_by_iteration``."""
    for iteration, predictions in enumerate(model.staged_predict(features), start=1):
        if iteration % HISTORY_EVERY == 0:
            run.log_metric(
                "rmse_by_iteration", _scores(target, predictions)["rmse"], step=iteration
            )


def _scores(truth: Any, predictions: Any) -> dict[str, float]:  # Any: array-likes
    from sklearn.metrics import (
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )

    return {
        "rmse": float(mean_squared_error(truth, predictions) ** 0.5),
        "mae": float(mean_absolute_error(truth, predictions)),
        "r2": float(r2_score(truth, predictions)),
    }
