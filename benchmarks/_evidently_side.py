"""Evidently's side of the monitoring benchmark, run in Evidently's own virtual environment.

Arguments: the reference and current Parquet files, a JSON list of numeric and one of
categorical columns, and the number of repeats. It runs the data drift preset with KS
for numbers and chi-squared for categories, and prints one JSON line: the timings and
each column's p-value (Evidently's ``ValueDrift`` value for these tests).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from importlib import metadata


def main() -> int:
    """Time the preset on the files named on the command line; print the JSON line."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference_path, current_path, numeric_json, categorical_json, repeats = sys.argv[1:6]
    numeric, categorical = json.loads(numeric_json), json.loads(categorical_json)
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    times, values = [], {}
    for _ in range(int(repeats)):
        start = time.perf_counter()
        report = Report([DataDriftPreset(num_method="ks", cat_method="chisquare")])
        snapshot = report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        result = snapshot.dict()
        times.append(time.perf_counter() - start)
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            values[config["column"]] = {
                "p_value": metric["value"],
                "threshold": config["threshold"],
                "method": config["method"],
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    print(
        json.dumps(
            {
                "median_s": statistics.median(times),
                "best_s": min(times),
                "repeats": len(times),
                "columns": values,
                "drifted_share": share,
                "versions": {name: metadata.version(name) for name in ("evidently", "pandas")},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
