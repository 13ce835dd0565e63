"""A served regression model with a real prediction log: what monitor runs read.

``monitored`` registers ``bike`` data (version 1) and a Ridge model trained
on it inside a run (so the version's lineage names ``data:/bike/1``),
deploys it as ``bike``, and hands a ``write`` helper that logs predictions
through the real ``PredictionLog`` at chosen hours of 2030-05-01.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from mlcycle.clock import SimulatedClock
from mlcycle.serve import PredictionBatch, PredictionLog
from mlcycle.settings import ClockSettings, Settings
from mlcycle.workspace import Workspace

DAY = datetime(2030, 5, 1, tzinfo=UTC)
FEATURES = ["temp", "season"]


@dataclass
class Served:
    """A workspace with deployment ``bike`` serving ``bike/1``, and a prediction writer."""

    ws: Workspace
    model: Ridge
    write: Callable[..., list[str]]
    spooled: list[PredictionLog]


def training_frame(rows: int = 2_000, *, seed: int = 0) -> pd.DataFrame:
    """Training data: ``cnt`` is ``100 * temp + 10 * season`` plus noise."""
    rng = np.random.default_rng(seed)
    temp = rng.uniform(0, 1, rows)
    season = rng.integers(1, 5, rows).astype(np.float64)
    cnt = 100 * temp + 10 * season + rng.normal(0, 1, rows)
    return pd.DataFrame({"temp": temp, "season": season, "cnt": cnt})


def serve_bike(ws: Workspace) -> Served:
    """Register ``bike/1`` and model ``bike/1`` trained on it 10 days before DAY, deploy it."""
    if isinstance(ws.clock, SimulatedClock):
        ws.clock.set(DAY - timedelta(days=10))
    ws.data.register("bike", training_frame())
    with ws.start_run("train"):
        frame = ws.data.load("bike/1")
        model = Ridge(alpha=1e-6).fit(frame[FEATURES], frame["cnt"])
        ws.registry.register("bike", model, input_example=frame[FEATURES].head())
    ws.deployments.deploy("bike", model="bike/1")
    counter = iter(range(10**9))

    def write(
        hour: float,
        inputs: pd.DataFrame,
        *,
        outputs: np.ndarray | None = None,
        variant: str = "primary",
        version: int = 1,
        latency_ms: float = 2.0,
        spool_only: bool = False,
        ids: list[str] | None = None,
        deployment: str = "bike",
    ) -> list[str]:
        found = model.predict(inputs[FEATURES]) if outputs is None else outputs
        ids = ids or [f"r{next(counter)}" for _ in range(len(inputs))]
        log = ws.prediction_log()
        log.append(
            PredictionBatch(
                deployment=deployment,
                model="bike",
                model_version=version,
                variant=variant,
                shadow=variant != "primary",
                request_ids=ids,
                row_indexes=[0] * len(ids),
                times=[(DAY + timedelta(hours=hour)).timestamp()] * len(ids),
                latency_ms=[latency_ms] * len(ids),
                inputs={name: inputs[name].to_numpy() for name in inputs.columns},
                outputs=np.asarray(found, dtype=np.float64) if outputs is None else outputs,
            )
        )
        if spool_only:  # durable in this process's spool segment, not rolled into Delta yet
            log.flush()
            spooled.append(log)
        else:
            log.close()
        return ids

    spooled: list[PredictionLog] = []
    return Served(ws=ws, model=model, write=write, spooled=spooled)


@pytest.fixture
def monitored(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """The served workspace; ``indirect`` parametrisation gives more settings (``monitors``)."""
    overrides = getattr(request, "param", {})
    settings = Settings(home=tmp_path, clock=ClockSettings(mode="simulated"), **overrides)
    with Workspace.open(settings) as ws:
        served = serve_bike(ws)
        yield served
        for log in served.spooled:
            log.close()
