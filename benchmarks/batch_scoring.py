"""Batch scoring benchmark: ``mc.serve.score`` on the Bike Sharing data and a 1M-row table.

Run ``.venv/bin/python benchmarks/batch_scoring.py``. In a fresh workspace under
``benchmarks/.work/`` it trains a gradient boosting model on the Bike Sharing hourly data,
registers it twice (with the ONNX copy, and without it so the scikit-learn flavor serves),
registers the data as a dataset version, and writes a 1,000,000-row synthetic table (the
hourly rows resampled with noise) as a Parquet file and as a dataset version. It then
times batch scoring, end to end (model load, read, check, predict, Parquet write, artifact
and lineage) for each model on each input, best of ``--repeat`` runs, next to the model's
own ``predict`` on the same rows already in memory (the limit). It prints a Markdown table
and, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / f"batch-scoring-{os.getpid()}"
FEATURES = [
    "season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit",
    "temp", "atemp", "hum", "windspeed",
]  # fmt: skip


def _synthetic(hours: pd.DataFrame, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    frame = hours.sample(rows, replace=True, random_state=11).reset_index(drop=True)
    for column in ("temp", "atemp", "hum", "windspeed"):
        frame[column] = np.clip(frame[column] + rng.normal(0, 0.02, rows), 0, 1)
    return frame


def _best(repeat: int, run: Any) -> tuple[float, Any]:  # Any: the timed call and its result
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic table")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is kept)")
    args = parser.parse_args()

    from sklearn.ensemble import GradientBoostingRegressor

    import mlcycle as mc
    from mlcycle.settings import RegistrySettings, Settings
    from mlcycle.workspace import Workspace

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    (WORK / "mlcycle.toml").write_text("")
    os.chdir(WORK)
    hours = pd.read_csv(ROOT / "src" / "mlcycle" / "datasets" / "hour.csv")
    big = _synthetic(hours, args.rows)
    big[FEATURES].to_parquet(WORK / "big.parquet", row_group_size=131_072)
    model = GradientBoostingRegressor(n_estimators=100, max_depth=5, random_state=0)
    model.fit(hours[FEATURES], hours["cnt"])

    settings = Settings(home=WORK, actor="bench")
    plain = RegistrySettings(convert_onnx=False)
    with Workspace.open(settings.model_copy(update={"registry": plain})) as workspace:
        native = workspace.registry.register(
            "bike-gbm-native", model, input_example=hours[FEATURES].head(20)
        )
    with Workspace.open(settings) as workspace:
        onnx = workspace.registry.register(
            "bike-gbm", model, input_example=hours[FEATURES].head(20)
        )
        workspace.data.register("bike", hours, validate=False)
        workspace.data.register("big", big[FEATURES], validate=False)
    assert "onnx" in onnx.files, "the ONNX copy was not made"

    inputs = {
        "bike/1 (17,379 rows, dataset)": ("bike/1", hours),
        f"big/1 ({args.rows:,} rows, dataset)": ("big/1", big),
        f"big.parquet ({args.rows:,} rows, file)": (str(WORK / "big.parquet"), big),
    }
    figures: dict[str, Any] = {"rows": args.rows, "cases": []}  # Any: JSON
    print("| input | model | runtime | seconds | rows/s | model.predict alone, rows/s |")
    print("|---|---|---|---:|---:|---:|")
    for label, (data, frame) in inputs.items():
        limit, _ = _best(args.repeat, lambda frame=frame: model.predict(frame[FEATURES]))
        for version in (onnx, native):
            seconds, scores = _best(
                args.repeat, lambda v=version, d=data: mc.serve.score(v.ref, d, WORK / "s.parquet")
            )
            rate, limit_rate = len(frame) / seconds, len(frame) / limit
            case = {
                "input": label, "model": version.ref, "runtime": scores.runtime,
                "seconds": round(seconds, 3), "rows_per_s": round(rate),
                "predict_rows_per_s": round(limit_rate),
            }  # fmt: skip
            figures["cases"].append(case)
            print(
                f"| {label} | {version.ref} | {scores.runtime} | {seconds:.2f} | {rate:,.0f} "
                f"| {limit_rate:,.0f} |"
            )
    mc.close()
    os.chdir(ROOT)
    shutil.rmtree(WORK, ignore_errors=True)
    print(json.dumps(figures))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
