"""The demo's training as an mlcycle pipeline, for any table: the first training and retrains.

The DAG: ``load`` reads the dataset version the run pinned (``data``,
resolved when the run starts), ``split`` keeps the period to train on and
marks its last ``TEST_SHARE`` of rows (by time) as the test rows, one step per
model trains and registers it (``baseline``, ``linear``, ``gbm``: independent,
so the ``process`` executor runs them in parallel), and ``gates`` judges the
new versions and promotes the best one that passes, when ``promote`` is on::

    load -> split -> baseline, linear, gbm -> gates

``train_from="start"`` trains on every row of the version (the demo's first
training); ``"recent"`` on its last ``recent_days`` days only, which is what
the continuous-training policy asks for once production has drifted. A
retrain registers only the models in ``models`` (the policy names ``gbm``)
and leaves ``production`` alone (``promote=false``): the training loop gates
it, tries it as a shadow, and promotes it when it beats production on live
traffic.

The task (``regression`` or ``classification``) picks the estimators: a
dummy baseline, a ridge or logistic regression on one-hot categories and
scaled numbers, and histogram gradient boosting. Text columns and whole-number
columns with at most ``ONE_HOT_MAX`` values are categories.

Each training step records its run (params, metrics, the split) and
registers its model as a version of ``model``, inside the step: registration
is part of what the cache keys, so a second run on the same version with the
same code and parameters trains and registers nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import mlcycle as mc
from mlcycle.cli._demo_data import PART, TIME
from mlcycle.data import DatasetRef
from mlcycle.errors import ValidationFailed
from mlcycle.pipeline import active_host, pipeline, step

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle import ActiveRun
    from mlcycle.pipeline import PipelineHost
    from mlcycle.store import LineageGraph

__all__ = ["MODELS", "NAME", "demo_training", "scores"]

NAME = "mlcycle-demo"
"""The pipeline's name, so also the experiment its runs are recorded in."""
SEED = 42
GBM_ITERATIONS = 200
MODELS = ("baseline", "linear", "gbm")
TEST_SHARE = 0.2
ONE_HOT_MAX = 24
MAX_CATEGORIES = 32


def _host() -> PipelineHost:
    """The workspace the step runs on (the working directory's when called outside a pipeline)."""
    host = active_host()
    return host if host is not None else cast("PipelineHost", mc.current_workspace())


def _active_run() -> ActiveRun:
    run = mc.active_run()
    if run is None:
        raise ValidationFailed("the demo's steps log to a run: run them as its pipeline")
    return run


@step
def load(data: DatasetRef) -> pd.DataFrame:
    """Every row of the pinned dataset version (recorded as the step run's input)."""
    frame: pd.DataFrame = _host().data.load(data)
    return frame


@step
def split(
    frame: pd.DataFrame, *, target: str, drop: str, train_from: str, recent_days: int
) -> pd.DataFrame:
    """The rows to learn from, without dropped columns, each marked ``train`` or ``test``."""
    import pandas as pd

    if train_from not in {"start", "recent"}:
        raise ValidationFailed(f"train_from is {train_from!r}; give 'start' or 'recent'")
    frame = frame.drop(columns=[c for c in drop.split(",") if c])  # columns that leak the target
    frame = frame[frame[target].notna()]
    frame[TIME] = pd.to_datetime(frame[TIME], utc=True)
    frame = frame.sort_values(TIME, kind="stable").reset_index(drop=True)
    if train_from == "recent":
        frame = frame[frame[TIME] >= frame[TIME].max() - pd.Timedelta(days=recent_days)]
    cut = frame[TIME].iloc[int(len(frame) * (1 - TEST_SHARE))]
    part = (frame[TIME] >= cut).map({True: "test", False: "train"})
    return frame.assign(**{PART: part}).reset_index(drop=True)


def _parts(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    is_test = frame[PART] == "test"
    rows = frame.drop(columns=[PART])
    return rows[~is_test].reset_index(drop=True), rows[is_test].reset_index(drop=True)


def features_of(frame: pd.DataFrame, *, target: str, time: str) -> tuple[list[str], list[str]]:
    """The model inputs and, among them, the categories (text, or few whole numbers)."""
    import pandas as pd

    excluded = {target, TIME, PART, time}
    inputs = [c for c in frame.columns if c not in excluded]
    categorical = [
        c
        for c in inputs
        if not pd.api.types.is_numeric_dtype(frame[c])
        or (pd.api.types.is_integer_dtype(frame[c]) and frame[c].nunique() <= ONE_HOT_MAX)
    ]
    return inputs, categorical


def _text(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    import pandas as pd

    return [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]


def _model(
    kind: str, task: str, *, categorical: list[str], numeric: list[str], text: list[str]
) -> tuple[Any, dict[str, Any]]:  # Any: an sklearn estimator, its params
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    regression = task == "regression"
    if kind == "baseline":
        if regression:
            return DummyRegressor(strategy="mean"), {"algo": "mean"}
        return DummyClassifier(strategy="prior"), {"algo": "prior"}
    if kind == "linear":
        encode = ColumnTransformer(
            [
                (
                    "onehot",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore", max_categories=MAX_CATEGORIES),
                    ),
                    categorical,
                ),
                ("scale", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            ]
        )
        estimator = Ridge(alpha=1.0) if regression else LogisticRegression(max_iter=1_000)
        return make_pipeline(encode, estimator), {
            "algo": "ridge" if regression else "logistic",
            "one_hot": ",".join(categorical),
        }
    params: dict[str, Any] = {
        "max_iter": GBM_ITERATIONS,
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
    }
    boosting = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    gbm = boosting(**params, early_stopping=False, random_state=SEED)
    params = {"algo": "gbm", **params, "random_state": SEED}
    if not text:
        return gbm, params
    codes = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        max_categories=MAX_CATEGORIES,
    )
    encode = ColumnTransformer([("codes", codes, text)], remainder="passthrough")
    return make_pipeline(encode, gbm), params


def _train(
    frame: pd.DataFrame, *, kind: str, data: str, model: str, target: str, task: str, time: str
) -> dict[str, Any]:  # Any: JSON
    """Fit model ``kind`` on the train rows, score it on the test rows, register it."""
    host, run = _host(), _active_run()
    train, test = _parts(frame)
    features, categorical = features_of(train, target=target, time=time)
    numeric = [c for c in features if c not in categorical]
    estimator, params = _model(
        kind, task, categorical=categorical, numeric=numeric, text=_text(train, features)
    )
    # The rows came through `split`, so name the version this run trained on for its lineage
    # (the registry copies a run's input datasets onto the versions it registers).
    graph = cast("LineageGraph", host.metadata)
    graph.add_edge(
        f"data:/{data}", f"run:{run.id}", kind="input", actor=host.actor, time=host.clock.now()
    )
    run.set_tags({"demo": "true", "dataset": data.split("/", maxsplit=1)[0], "task": task})
    test_from = test[TIME].min()
    run.log_params(
        {
            **params,
            "target": target,
            "task": task,
            "features": len(features),
            "split": f"train < {test_from:%Y-%m-%d %H:%M} <= test",
            "dataset": data,
            "train_rows": len(train),
            "test_rows": len(test),
        }
    )
    # Recorded so the registry's gates can check that the test rows were never trained on.
    run.log_split(data, train, test, time_column=TIME, test_from=test_from.isoformat())
    mc.seed_everything(SEED)
    estimator.fit(train[features], train[target])
    metrics = scores(task, test[target], estimator, test[features])
    run.log_metrics(metrics)
    registered = host.registry.register(
        model,
        estimator,
        run=run,
        input_example=_example(train[features]),
        metrics=metrics,
        tags={"algo": params["algo"], "owner": "mlcycle demo", "task": task},
    )
    return {"model": kind, **metrics, "run_id": run.id, "version": registered.version}


def _example(train: pd.DataFrame) -> pd.DataFrame:
    """Rows to infer the signature from: text inputs, and inputs that had gaps, may be missing."""
    import pandas as pd

    example = train.head(20)
    gap = example.head(1).copy()
    for column in example.columns:
        if column in _text(train, list(train.columns)) or train[column].isna().any():
            gap[column] = None
    return pd.concat([example, gap], ignore_index=True)


baseline = step(name="baseline")(_train)
linear = step(name="linear")(_train)
gbm = step(name="gbm")(_train)
_STEPS = {"baseline": baseline, "linear": linear, "gbm": gbm}


@step
def gates(
    frame: pd.DataFrame,
    *,
    model: str,
    target: str,
    task: str,
    promote: bool,
    baseline: dict[str, Any] | None = None,
    linear: dict[str, Any] | None = None,
    gbm: dict[str, Any] | None = None,
) -> dict[str, Any]:  # Any: JSON results
    """Evaluate each new version on the test rows; promote the best that passes, if asked.

    Returns ``{"passed": [versions], "promoted": version or None}``.
    """
    registry = _host().registry
    train, test = _parts(frame)
    results = [r for r in (baseline, linear, gbm) if r is not None]
    passing = [
        r
        for r in results
        if registry.evaluate(
            f"{model}/{r['version']}", test, train_data=train, target=target
        ).passed
    ]
    if not passing or not promote:
        return {"passed": [r["version"] for r in passing], "promoted": None}
    metric = primary_metric(task)
    best = min(passing, key=lambda r: r[metric] if metric == "rmse" else -r[metric])
    registry.promote(
        model,
        best["version"],
        to="production",
        reason=f"mlcycle demo: best test {metric} ({best[metric]:.3f}) of the versions that passed",
    )
    return {"passed": [r["version"] for r in passing], "promoted": best["version"]}


@pipeline(name=NAME)
def demo_training(  # noqa: PLR0917  (the parameters the demo or a training policy sets)
    data: DatasetRef = DatasetRef("bike@latest"),
    model: str = "bike-demand",
    target: str = "cnt",
    task: str = "regression",
    time: str = "dteday",
    drop: str = "casual,registered,instant",
    train_from: str = "start",
    recent_days: int = 28,
    models: str = ",".join(MODELS),
    promote: bool = True,
) -> None:
    """Split by time, train each model in its own branch, gate, and promote if asked."""
    unknown = [m for m in models.split(",") if m not in _STEPS]
    if unknown:
        raise ValidationFailed(f"models {unknown} are not the demo's; choose from {MODELS}")
    prepared = split(
        load(data), target=target, drop=drop, train_from=train_from, recent_days=recent_days
    )
    trained = {
        kind: _STEPS[kind](
            prepared, kind=kind, data=data, model=model, target=target, task=task, time=time
        )
        for kind in models.split(",")
    }
    gates(prepared, model=model, target=target, task=task, promote=promote, **trained)


def primary_metric(task: str) -> str:
    """The metric the demo ranks models by: ``rmse`` (lower wins) or ``f1`` (higher wins)."""
    return "rmse" if task == "regression" else "f1"


def scores(task: str, truth: Any, model: Any, features: pd.DataFrame) -> dict[str, float]:
    """The task's metrics of ``model`` on ``features`` against ``truth``."""
    # Any: array-likes and an sklearn estimator
    from sklearn import metrics

    predicted = model.predict(features)
    if task == "regression":
        return {
            "rmse": float(metrics.mean_squared_error(truth, predicted) ** 0.5),
            "mae": float(metrics.mean_absolute_error(truth, predicted)),
            "r2": float(metrics.r2_score(truth, predicted)),
        }
    return {
        "accuracy": float(metrics.accuracy_score(truth, predicted)),
        "f1": float(metrics.f1_score(truth, predicted, average="macro")),
    }
