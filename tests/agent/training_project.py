"""A real project for continuous-training tests: a retrain pipeline, a production model, traffic.

``demand`` is a linear model of ``x1`` and ``x2``. Production (version 1) was
trained when ``y = 3 x1 + 2 x2``; the world has since turned to
``y = 3 x1 - 2 x2``, which the retrain pipeline trains on. Traffic is written
through the real ``PredictionLog`` and labelled through the real ``FeedbackLog``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from mlcycle import Workspace
from mlcycle.monitor import MonitorResult
from mlcycle.serve import PredictionBatch
from mlcycle.settings import (
    AlertRuleSettings,
    AlertSettings,
    ClockSettings,
    GateSettings,
    NotifierSettings,
    RegistrySettings,
    Settings,
)

MODEL = "demand"
DEPLOYMENT = "demand"
FEATURES = ["x1", "x2"]
NOTICES = "alerts.jsonl"
"""Where the ``log`` notifier appends the notifications of ``demand-drift`` (in the project)."""

PIPELINE = """\
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from mlcycle import pipeline, step
from mlcycle.pipeline import active_host


def world(seed, sign, rows=400):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    y = 3 * x[:, 0] + sign * 2 * x[:, 1] + rng.normal(scale=0.1, size=rows)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": y})


@step
def train(mode: str) -> int:
    if mode == "fail":
        raise RuntimeError("the training data is unreachable")
    if mode == "nothing":
        return 0
    host = active_host()
    data = world(1, -1.0)
    fit, test = data.iloc[:300], data.iloc[300:]
    labels = fit["y"].sample(frac=1.0, random_state=0).to_numpy() if mode == "bad" else fit["y"]
    model = LinearRegression().fit(fit[["x1", "x2"]], labels)
    version = host.registry.register("demand", model, input_example=fit[["x1", "x2"]].head(5))
    if mode != "register-only":
        host.registry.evaluate(version, test, train_data=fit, target="y")
    return version.version


@pipeline
def retrain(mode: str = "good") -> None:
    train(mode)
"""


def world(seed: int, sign: float, rows: int = 400) -> pd.DataFrame:
    """Rows of the world where ``y = 3 x1 + sign * 2 x2`` (plus a little noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    y = 3 * x[:, 0] + sign * 2 * x[:, 1] + rng.normal(scale=0.1, size=rows)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": y})


def policy(**overrides: Any) -> dict[str, Any]:  # Any: TOML values
    """A ``[training.demand]`` table with small numbers, ``overrides`` on top."""
    table: dict[str, Any] = {  # Any: TOML values
        "pipeline": "pipelines.py:retrain",
        "model": MODEL,
        "on_alerts": ["demand-drift", "demand-decay"],
        "trial": "shadow",
        "metric": "rmse",
        "margin": 0.05,
        "min_labelled": 100,
        "max_retrains": "1 per 6h",
        "rollback_on": ["demand-decay"],
        "watch": "2d",
    }
    table.update(overrides)
    return table


RULES = {
    "demand-drift": AlertRuleSettings(when="drift_share > 0.3", notify=("log",)),
    "demand-decay": AlertRuleSettings(when="rmse > 1.5"),
    "demand-skew": AlertRuleSettings(when="skew_share > 0.5"),
}


def settings_for(home: Path, table: dict[str, Any] | None = None, **extra: Any) -> Settings:
    """Settings of the project at ``home`` (simulated clock) with one training policy."""
    return Settings(
        home=home,
        actor="tester",
        clock=ClockSettings(mode="simulated"),
        alerts=AlertSettings(
            rules=RULES, notifiers={"log": NotifierSettings(kind="file", path=Path(NOTICES))}
        ),
        # The pipeline evaluates on rows it held out, without recording a split.
        registry=RegistrySettings(gates={MODEL: GateSettings(require_disjoint_test=False)}),
        training={DEPLOYMENT: table if table is not None else policy()},
        **extra,
    )


def write_pipeline(home: Path) -> None:
    """The project's ``pipelines.py`` with the ``retrain`` pipeline."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "pipelines.py").write_text(PIPELINE)


def deploy_production(ws: Workspace) -> None:
    """Version 1 (the old world) as production, served by deployment ``demand``."""
    old = world(0, 1.0)
    model = LinearRegression().fit(old[FEATURES], old["y"])
    version = ws.registry.register(MODEL, model, input_example=old[FEATURES].head(5))
    ws.registry.promote(MODEL, version.version, force=True, reason="the first model")
    ws.deployments.deploy(DEPLOYMENT, model=f"{MODEL}@production")


def fire(ws: Workspace, rule_metric: str, value: float, at: datetime) -> list[str]:
    """Evaluate a window whose ``rule_metric`` is ``value``; the ids of the alerts that fired."""
    found = ws.alerts.evaluate(MonitorResult(DEPLOYMENT, at, {rule_metric: value}))
    return [a.id for a in found if a.state == "firing"]


def traffic(
    ws: Workspace,
    *,
    ids: Sequence[str],
    at: datetime,
    variants: Sequence[tuple[str, int, bool, np.ndarray[Any, Any]]],
    inputs: pd.DataFrame,
) -> None:
    """Log predictions of each ``(variant, version, shadow, outputs)`` for the requests ``ids``."""
    log = ws.prediction_log()
    try:
        for variant, version, shadow, outputs in variants:
            log.append(
                PredictionBatch(
                    deployment=DEPLOYMENT,
                    model=MODEL,
                    model_version=version,
                    variant=variant,
                    shadow=shadow,
                    request_ids=list(ids),
                    row_indexes=[0] * len(ids),
                    times=[at.timestamp()] * len(ids),
                    latency_ms=[1.0] * len(ids),
                    inputs={c: inputs[c].to_numpy() for c in FEATURES},
                    outputs=np.asarray(outputs, dtype=np.float64),
                )
            )
    finally:
        log.close()


def label(ws: Workspace, ids: Sequence[str], labels: Sequence[float]) -> None:
    """Record the true ``labels`` of requests ``ids``."""
    ws.feedback.record(DEPLOYMENT, list(zip(ids, (float(v) for v in labels), strict=True)))
