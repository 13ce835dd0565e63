"""Monitoring benchmark: a drift report of 1,000,000 rows x 25 columns, against Evidently and SciPy.

Run ``.venv/bin/python benchmarks/monitoring.py`` (or ``make bench-monitoring``). It makes a
reference and a current table of 1,000,000 rows each, 20 numeric and 5 categorical
columns (numeric n00-n05 and categorical c0-c1 are shifted, n04-n05 only slightly), and
times, with KS for numbers and chi-squared for categories:

- mlcycle's first run, which prepares the reference (sorts and counts it) and scores the
  window, and the cached run, which scores the window against the prepared reference;
  also the prepared reference written to and read back from a local artifact store, and
  a window of 100,000 rows against the cached reference;
- ``ws.monitor.run`` over a window of the real prediction log holding 100,000 answered
  predictions of a registered model (half of them labelled), end to end: reading the
  log and the labels, drift, skew, stability, latency, performance, storing the window
  and evaluating the alert rules (the reference of the training data already cached);
- the same tests called directly with SciPy (``ks_2samp``; ``chisquare`` of the window's
  counts against the reference's scaled ones, Evidently's formula): the naive limit;
- Evidently's data drift preset with the same tests chosen, installed into its own
  throwaway environment under ``benchmarks/.work/`` (Evidently needs pandas < 3; never in
  our lock) and run as a subprocess on the same data, written as Parquet.

It checks that every column's decision agrees between the three and that mlcycle's
p-values agree with SciPy's and Evidently's to 1e-6, prints Markdown tables and, as its
last line, one JSON object with every figure. ``--quick`` is a small workload for a smoke
test. The figures are recorded in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
RUN_DIR = WORK / f"monitoring-run-{os.getpid()}"  # per invocation: two benchmarks may run at once
EVIDENTLY_VERSION = "0.7.23"
SIDE_TIMEOUT_S = 1800
P_VALUE_TOLERANCE = 1e-6

sys.path.insert(0, str(HERE))
from _incumbents import incumbent_python  # noqa: E402
from tracking import machine  # noqa: E402  (the same machine record as the tracking benchmark)

# Goals of issue 7.
EVIDENTLY_GOAL_X = 30.0
WINDOW_GOAL_S = 1.0


@dataclass(frozen=True)
class Workload:
    """How much of everything one invocation does."""

    rows: int
    window_rows: int
    numeric: int
    categorical: int
    repeats: int
    evidently_repeats: int


FULL = Workload(
    rows=1_000_000, window_rows=100_000, numeric=20, categorical=5, repeats=3, evidently_repeats=1
)
QUICK = Workload(
    rows=20_000, window_rows=5_000, numeric=20, categorical=5, repeats=1, evidently_repeats=1
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables, then the JSON line."""
    args = parse_args(argv)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
    print_tables(report)
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0 if report["agreement"]["ok"] else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small workload (smoke test)")
    parser.add_argument("--skip-evidently", action="store_true", help="leave Evidently out")
    parser.add_argument("--evidently-version", default=EVIDENTLY_VERSION, help="Evidently to run")
    parser.add_argument("--keep", action="store_true", help=f"keep the files in {RUN_DIR.name}")
    return parser.parse_args(argv)


def log(message: str) -> None:
    """Progress goes to stderr so stdout is the tables and the JSON line."""
    sys.stderr.write(f"[bench-monitoring] {message}\n")
    sys.stderr.flush()


# --- the data ---------------------------------------------------------------------------------


def make_tables(workload: Workload) -> tuple[pa.Table, pa.Table, list[str], list[str]]:
    """Reference and current tables; numeric n00-n05 and categorical c0-c1 are shifted."""
    rng = np.random.default_rng(20_240_601)
    rows = workload.rows
    shifts = {0: 0.2, 1: 0.1, 2: 0.05, 3: 0.02, 4: 0.006, 5: 0.005}  # in reference stds
    reference: dict[str, Any] = {}
    current: dict[str, Any] = {}
    numeric = [f"n{i:02d}" for i in range(workload.numeric)]
    for i, name in enumerate(numeric):
        scale = 1.0 + i
        if i % 3 == 0:
            reference[name] = rng.normal(10 * i, scale, rows)
            current[name] = rng.normal(10 * i + shifts.get(i, 0.0) * scale, scale, rows)
        elif i % 3 == 1:
            reference[name] = rng.lognormal(0.0, 0.5, rows) * scale
            current[name] = rng.lognormal(shifts.get(i, 0.0), 0.5, rows) * scale
        else:
            reference[name] = np.round(rng.uniform(0, 100, rows), 1)  # ties, as real data has
            current[name] = np.round(rng.uniform(shifts.get(i, 0.0) * 30, 100, rows), 1)
    categorical = [f"c{i}" for i in range(workload.categorical)]
    for i, name in enumerate(categorical):
        labels = np.array([f"{name}_{k:02d}" for k in range(5 + 10 * i)])
        weights = rng.dirichlet(np.ones(labels.size))
        moved = weights if i >= 2 else rng.dirichlet(np.ones(labels.size))
        reference[name] = pa.array(rng.choice(labels, rows, p=weights))
        current[name] = pa.array(rng.choice(labels, rows, p=0.95 * weights + 0.05 * moved))
    return pa.table(reference), pa.table(current), numeric, categorical


# --- the sides --------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> tuple[float, Any]:
    """Seconds ``action`` took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def repeated(action: Callable[[], object], repeats: int) -> tuple[dict[str, float], Any]:
    """Median and best of ``repeats`` timings, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        seconds, result = timed(action)
        times.append(seconds)
    return {"median_s": statistics.median(times), "best_s": min(times)}, result


def run_ours(reference: pd.DataFrame, current: pd.DataFrame, workload: Workload) -> dict[str, Any]:
    """First run, cached run, the cache through an artifact store, and a 100,000-row window."""
    from mlcycle.monitor import ReferenceStats, drift
    from mlcycle.store import LocalArtifactStore

    log("mlcycle: first run (prepares the reference)")
    first, _ = repeated(lambda: drift(reference, current), workload.repeats)
    prepare, prepared = repeated(lambda: ReferenceStats.from_frame(reference), workload.repeats)
    log("mlcycle: cached runs")
    cached, report = repeated(lambda: drift(prepared, current), workload.repeats)
    window = current.iloc[: workload.window_rows]
    window_timing, _ = repeated(lambda: drift(prepared, window), workload.repeats)
    store = LocalArtifactStore(root=RUN_DIR / "artifacts")

    def put() -> str:
        path = RUN_DIR / "reference.bin"
        with path.open("wb") as sink:
            prepared.write(sink)
        return str(store.put_file(str(path)))

    write_s, digest = timed(put)

    def read() -> object:
        with store.open(digest) as stream:  # type: ignore[arg-type]
            return ReferenceStats.read(stream)

    read_timing, _ = repeated(read, workload.repeats)
    return {
        "first_run": first,
        "prepare_reference": prepare,
        "cached_run": cached,
        "window": {**window_timing, "rows": len(window)},
        "cache_write_s": write_s,
        "cache_read": read_timing,
        "cache_bytes": (RUN_DIR / "reference.bin").stat().st_size,
        "columns": {
            name: {"p_value": c.p_value, "statistic": c.statistic, "drifted": c.drifted}
            for name, c in report.columns.items()
        },
        "drifted_share": report.drifted_share,
    }


def run_monitor(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], workload: Workload
) -> dict[str, Any]:
    """``ws.monitor.run`` over one day of the prediction log holding ``window_rows`` answers."""
    from datetime import UTC, datetime, timedelta

    from sklearn.linear_model import LinearRegression

    from mlcycle.serve import PredictionBatch
    from mlcycle.settings import ClockSettings, Settings
    from mlcycle.workspace import Workspace

    day0 = datetime(2030, 1, 1, tzinfo=UTC)
    settings = Settings(
        home=RUN_DIR / "project",
        clock=ClockSettings(mode="simulated"),
        monitors={"bench": {"features": list(current.columns)}},  # the categories too
    )
    rows = workload.window_rows
    with Workspace.open(settings) as ws:
        ws.clock.set(day0 - timedelta(days=30))  # type: ignore[attr-defined]
        log("monitor run: registering the training data and a model")
        ws.data.register("bench", reference.assign(target=reference["n00"] * 2))
        with ws.start_run("bench"):
            loaded = ws.data.load("bench")
            model = LinearRegression().fit(
                loaded[numeric].head(10_000), loaded["target"].head(10_000)
            )
            ws.registry.register("bench", model, input_example=loaded[numeric].head())
        ws.deployments.deploy("bench", model="bench/1")
        window = current.iloc[:rows]
        outputs = model.predict(window[numeric])
        days = workload.repeats + 1
        log(f"monitor run: logging {days} days of {rows:,} predictions")
        for day in range(days):
            start = (day0 + timedelta(days=day)).timestamp()
            ids = [f"d{day}-{n}" for n in range(rows)]
            sink = ws.prediction_log()
            sink.append(
                PredictionBatch(
                    deployment="bench",
                    model="bench",
                    model_version=1,
                    variant="primary",
                    shadow=False,
                    request_ids=ids,
                    row_indexes=[0] * rows,
                    times=(start + np.linspace(0, 86_000, rows)).tolist(),
                    latency_ms=np.full(rows, 2.0),
                    inputs={name: window[name].to_numpy() for name in window.columns},
                    outputs=outputs,
                )
            )
            sink.close()
            truth = (window["n00"] * 2).to_numpy()
            ws.feedback.record("bench", list(zip(ids[::2], truth[::2].tolist(), strict=True)))
        ws.monitor.run("bench", until=day0 + timedelta(days=1))  # builds the reference cache
        times = []
        for day in range(1, days):
            spent, scored = timed(
                lambda d=day: ws.monitor.run("bench", until=day0 + timedelta(days=d + 1))
            )
            assert [found.rows for found in scored] == [rows], "one full window per run"
            times.append(spent)
        values = scored[0].values
    return {
        "median_s": statistics.median(times),
        "best_s": min(times),
        "rows": rows,
        "metrics": len(values),
        "labelled_rows": values["labelled_rows"],
    }


def run_scipy(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, Any]:
    """``ks_2samp`` per numeric column, Evidently's ``chisquare`` per categorical one."""

    def everything() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for name in numeric:
            p = float(stats.ks_2samp(reference[name].to_numpy(), current[name].to_numpy()).pvalue)
            found[name] = {"p_value": p, "drifted": p <= 0.05}
        for name in categorical:
            ref_counts, cur_counts = reference[name].value_counts(), current[name].value_counts()
            keys = list(set(ref_counts.index) | set(cur_counts.index))
            scale = len(current) / len(reference)
            expected = [ref_counts.get(k, 0) * scale for k in keys]
            p = float(stats.chisquare([cur_counts.get(k, 0) for k in keys], expected).pvalue)
            found[name] = {"p_value": p, "drifted": p < 0.05}
        return found

    log("scipy: the same tests called directly")
    seconds, columns = timed(everything)
    return {"total_s": seconds, "columns": columns}


def run_evidently(
    python: Path, paths: tuple[Path, Path], numeric: list[str], categorical: list[str], repeats: int
) -> dict[str, Any]:
    """Evidently's preset in its own environment, on the same Parquet files."""
    command = [
        str(python),
        str(HERE / "_evidently_side.py"),
        str(paths[0]),
        str(paths[1]),
        json.dumps(numeric),
        json.dumps(categorical),
        str(repeats),
    ]
    log(f"evidently: data drift preset (KS, chi-squared) x{repeats}")
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=SIDE_TIMEOUT_S
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    for column in figures["columns"].values():
        rule = (lambda p, t: p <= t) if column["method"] == "ks" else (lambda p, t: p < t)
        column["drifted"] = rule(column["p_value"], column["threshold"])
    return figures


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the report."""
    workload = QUICK if args.quick else FULL
    report: dict[str, Any] = {
        "benchmark": "monitoring",
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "workload": asdict(workload),
    }
    evidently_python = (
        None
        if args.skip_evidently
        else incumbent_python("evidently", args.evidently_version, pins=["pandas<3"], log=log)
    )
    log(f"making {workload.rows:,} x {workload.numeric + workload.categorical} tables")
    reference_table, current_table, numeric, categorical = make_tables(workload)
    paths = (RUN_DIR / "reference.parquet", RUN_DIR / "current.parquet")
    pq.write_table(reference_table, paths[0])
    pq.write_table(current_table, paths[1])
    reference, current = reference_table.to_pandas(), current_table.to_pandas()
    del reference_table, current_table
    report["mlcycle"] = run_ours(reference, current, workload)
    report["mlcycle"]["monitor_run"] = run_monitor(reference, current, numeric, workload)
    report["scipy"] = run_scipy(reference, current, numeric, categorical)
    if evidently_python is not None:
        report["evidently"] = run_evidently(
            evidently_python, paths, numeric, categorical, workload.evidently_repeats
        )
    report["agreement"] = agreement(report)
    report["goals"] = goals(report, workload)
    report["versions"] = versions(report)
    report["machine"]["load_average_end"] = os.getloadavg()
    return report


# --- figures ----------------------------------------------------------------------------------


def agreement(report: dict[str, Any]) -> dict[str, Any]:
    """Per-column decisions equal, p-values within 1e-6, against SciPy and Evidently."""
    ours = report["mlcycle"]["columns"]
    found: dict[str, Any] = {"tolerance": P_VALUE_TOLERANCE}
    ok = True
    for side in ("scipy", "evidently"):
        theirs = (report.get(side) or {}).get("columns")
        if not theirs:
            continue
        decisions = [n for n in ours if ours[n]["drifted"] != theirs[n]["drifted"]]
        gaps = {n: abs(ours[n]["p_value"] - theirs[n]["p_value"]) for n in ours}
        worst = max(gaps.values())
        found[side] = {
            "columns": len(ours),
            "decisions_differ": decisions,
            "max_p_value_gap": worst,
            "ok": not decisions and worst <= P_VALUE_TOLERANCE,
        }
        ok = ok and found[side]["ok"]
    found["ok"] = ok
    found["drifted_columns"] = sorted(n for n, c in ours.items() if c["drifted"])
    return found


def verdict(value: float | None, *, at_most: float | None = None, at_least: float = 0.0) -> str:
    """PASS, MISS or n/a for ``value`` against its bound."""
    if value is None:
        return "n/a"
    passed = value <= at_most if at_most is not None else value >= at_least
    return "PASS" if passed else "MISS"


def goals(report: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """The goals of issue 7."""
    cached = report["mlcycle"]["cached_run"]["median_s"]
    evidently = (report.get("evidently") or {}).get("median_s")
    evidently_x = evidently / cached if evidently else None
    scipy_x = report["scipy"]["total_s"] / cached
    window = report["mlcycle"]["window"]["median_s"]
    monitor_run = report["mlcycle"]["monitor_run"]["median_s"]
    size = f"{workload.rows:,} x {workload.numeric + workload.categorical}"
    return {
        "evidently": {
            "label": f"Evidently's preset / our cached run, {size}, KS + chi-squared",
            "value": evidently_x,
            "unit": "x",
            "goal": f"≥ {EVIDENTLY_GOAL_X:g}x",
            "verdict": verdict(evidently_x, at_least=EVIDENTLY_GOAL_X),
        },
        "scipy": {
            "label": f"plain SciPy calls / our cached run, {size}",
            "value": scipy_x,
            "unit": "x",
            "goal": "> 1x",
            "verdict": "PASS" if scipy_x > 1 else "MISS",
        },
        "window": {
            "label": f"a window of {workload.window_rows:,} rows against the cached reference",
            "value": window,
            "unit": "s",
            "goal": f"≤ {WINDOW_GOAL_S:g} s",
            "verdict": verdict(window, at_most=WINDOW_GOAL_S),
        },
        "monitor_run": {
            "label": (
                f"monitor run over a {workload.window_rows:,}-row prediction-log window "
                "(read, score, store, alert)"
            ),
            "value": monitor_run,
            "unit": "s",
            "goal": f"≤ {WINDOW_GOAL_S:g} s",
            "verdict": verdict(monitor_run, at_most=WINDOW_GOAL_S),
        },
        "agreement": {
            "label": "same decision per column, p-values within 1e-6 (SciPy, Evidently)",
            "value": None,
            "unit": "",
            "goal": "all columns",
            "verdict": "PASS" if report["agreement"]["ok"] else "MISS",
        },
    }


def versions(report: dict[str, Any]) -> dict[str, Any]:
    """Versions of everything measured."""
    ours = {name: metadata.version(name) for name in ("mlcycle", "numpy", "scipy", "pandas")}
    side = (report.get("evidently") or {}).get("versions", {})
    return {**ours, "evidently": side.get("evidently"), "pandas_evidently_env": side.get("pandas")}


# --- the tables -------------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    """Seconds for the table."""
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:,.2f} ms"
    return f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def print_tables(report: dict[str, Any]) -> None:
    """The figures as Markdown tables (pasted into docs/benchmarks.md)."""
    ours, scipy_side = report["mlcycle"], report["scipy"]
    evidently = report.get("evidently") or {}
    work = report["workload"]
    size = f"{work['rows']:,} x {work['numeric'] + work['categorical']}"
    rows = [
        [f"drift report, {size} (KS + chi-squared)", "median", "best"],
        ["---"] * 3,
        ["mlcycle, first run (prepares the reference)", *pair(ours["first_run"])],
        ["mlcycle, preparing the reference alone", *pair(ours["prepare_reference"])],
        ["mlcycle, cached run", *pair(ours["cached_run"])],
        [f"mlcycle, {ours['window']['rows']:,}-row window, cached", *pair(ours["window"])],
        [
            f"ws.monitor.run, {ours['monitor_run']['rows']:,}-row prediction-log window",
            *pair(ours["monitor_run"]),
        ],
        [
            (
                "prepared reference to / from a local artifact store "
                f"({ours['cache_bytes'] / 1e6:,.0f} MB)"
            ),
            fmt_s(ours["cache_write_s"]),
            fmt_s(ours["cache_read"]["median_s"]),
        ],
        ["SciPy called directly, once", fmt_s(scipy_side["total_s"]), ""],
        [
            "Evidently data drift preset (KS, chi-squared)",
            *(pair(evidently) if "median_s" in evidently else ["-", "-"]),
        ],
    ]
    if "error" in evidently:
        rows.append(["Evidently side", f"failed: {evidently['error']}", ""])
    print_rows(rows)
    agree = report["agreement"]
    agree_rows = [["agreement with", "columns", "decisions differ", "largest p-value gap"]]
    agree_rows.append(["---"] * 4)
    for side in ("scipy", "evidently"):
        if side in agree:
            found = agree[side]
            agree_rows.append(
                [
                    side,
                    str(found["columns"]),
                    ", ".join(found["decisions_differ"]) or "none",
                    f"{found['max_p_value_gap']:.1e}",
                ]
            )
    print_rows(agree_rows)
    goal_rows = [["goal", "figure", "goal", ""], ["---"] * 4]
    for goal in report["goals"].values():
        value = goal["value"]
        shown = (
            "-" if value is None else (f"{value:,.1f}x" if goal["unit"] == "x" else fmt_s(value))
        )
        goal_rows.append([goal["label"], shown, goal["goal"], goal["verdict"]])
    print_rows(goal_rows)


def pair(timing: dict[str, float]) -> list[str]:
    """Median and best, formatted."""
    return [fmt_s(timing["median_s"]), fmt_s(timing["best_s"])]


def print_rows(rows: list[list[str]]) -> None:
    """One Markdown table and a blank line."""
    for line in rows:
        print("| " + " | ".join(line) + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())
