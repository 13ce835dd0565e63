"""The team set-up end to end: PostgreSQL metadata and S3 artifacts through the SDK and CLI."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlcycle import Workspace
from mlcycle.settings import S3Settings, Settings, StoreSettings

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture
def team_settings(tmp_path: Path, postgres_url: str, s3_endpoint: str, s3_bucket: str) -> Settings:
    return Settings(
        home=tmp_path,
        actor="ana",
        store=StoreSettings(
            metadata_url=postgres_url,
            artifacts_url=f"s3://{s3_bucket}/team",
            s3=S3Settings(endpoint_url=s3_endpoint, region="us-east-1"),
        ),
    )


def test_a_run_round_trips_through_postgres_and_s3(team_settings: Settings) -> None:
    frame = pd.DataFrame({"hr": [0, 1, 2], "pred": [10.5, 3.25, math.inf]})
    with Workspace.open(team_settings) as ws:
        with ws.start_run("bike-demand", params={"model": "gbm", "lr": 0.1}) as run:
            for step, rmse in enumerate([60.0, 48.5, 41.2]):
                run.log_metric("rmse", rmse, step=step)
            run.log_metrics({"mae": 30.1, "nan_metric": math.nan})
            record = run.log_artifact(frame, name="predictions.parquet")
            run.set_tags({"owner": "ana"})
        found = ws.search_runs("bike-demand", where="metrics.rmse < 45 and params.model = 'gbm'")
        history = ws.get_run(run.id).metric_history("rmse")
        with ws.artifacts.open(record.digest) as stream:
            stored = pd.read_parquet(io.BytesIO(stream.read()))  # verified streams do not seek
        event_types = [event.type for event in ws.events(types=["run.started", "run.finished"])]

    assert found["run_id"].tolist() == [run.id]
    assert found["metrics.rmse"].tolist() == [41.2]
    assert math.isnan(found["metrics.nan_metric"].iloc[0])
    assert found["params.lr"].tolist() == ["0.1"]
    assert [(point.step, point.value) for point in history] == [(0, 60.0), (1, 48.5), (2, 41.2)]
    pd.testing.assert_frame_equal(stored, frame)
    assert event_types == ["run.started", "run.finished"]
    assert (team_settings.home / ".mlcycle").exists() is False


def test_the_cli_reads_runs_from_postgres(team_settings: Settings, tmp_path: Path) -> None:
    with Workspace.open(team_settings) as ws, ws.start_run("bike-demand") as run:
        run.log_metric("rmse", 41.2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcycle",
            "--metadata-url",
            str(team_settings.store.metadata_url),
            "runs",
            "list",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["run_id"] for row in rows] == [run.id]
