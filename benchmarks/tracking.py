"""Tracking benchmark: mlcycle (SQLite, PostgreSQL) against MLflow (SQLite), side by side.

Run ``.venv/bin/python benchmarks/tracking.py`` (or ``make bench``). It installs MLflow into
its own throwaway environment under ``benchmarks/.work/`` (never into our lock), runs the same
workload through each tool in a fresh subprocess, prints a table and, as its last line, one
JSON object with every figure. ``--quick`` shrinks the workload; ``--skip-mlflow`` and
``--skip-postgres`` leave a side out. The figures are recorded in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
VENV_BIN = Path(sys.executable).parent
MLFLOW_VERSION = "3.17.2"
RUN_DIR = WORK / f"run-{os.getpid()}"  # per invocation: two benchmarks may run at once
POSTGRES_ADMIN = "postgresql://root@127.0.0.1:5432/test"
SIDE_TIMEOUT_S = 1800

sys.path.insert(0, str(HERE))
from _incumbents import incumbent_python  # noqa: E402
from _workload import Workload  # noqa: E402  (the sides import it by this path too)

FULL = {
    "mlcycle": Workload(
        single_calls=20_000,
        batch_total=10_000,
        batch_size=1_000,
        runs=1_000,
        search_runs=5_000,
        search_limit=100,
        search_repeats=5,
    ),
    "mlflow": Workload(
        single_calls=1_000,
        batch_total=10_000,
        batch_size=1_000,
        runs=1_000,
        search_runs=5_000,
        search_limit=100,
        search_repeats=5,
    ),
}
QUICK = {
    "mlcycle": Workload(
        single_calls=5_000,
        batch_total=10_000,
        batch_size=1_000,
        runs=200,
        search_runs=1_000,
        search_limit=100,
        search_repeats=3,
    ),
    "mlflow": Workload(
        single_calls=200,
        batch_total=10_000,
        batch_size=1_000,
        runs=100,
        search_runs=1_000,
        search_limit=100,
        search_repeats=3,
    ),
}
# (figure, how ours compares with MLflow's, goal ratio) for the goals.
GOALS = {
    "single": ("log_metric calls/s", "higher", 300.0),
    "batch": ("log_metrics metrics/s", "higher", 15.0),
    "create": ("runs created/s", "higher", 20.0),
    "search": ("search top 100, s", "lower", 50.0),
}
CLI_GOAL_S = 0.3
QUIET_MLFLOW = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GIT_PYTHON_REFRESH": "quiet",
    "PYTHONWARNINGS": "ignore",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table, then the JSON line."""
    args = parse_args(argv)
    workloads = QUICK if args.quick else FULL
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args, workloads)
    finally:
        if not args.keep:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
    print_table(report)
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0


def measure(args: argparse.Namespace, workloads: dict[str, Workload]) -> dict[str, Any]:
    """Every figure of the report."""
    report: dict[str, Any] = {
        "benchmark": "tracking",
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "workloads": {tool: json.loads(w.to_json()) for tool, w in workloads.items()},
        "results": {},
    }
    mlflow_python = None if args.skip_mlflow else ensure_mlflow(args.mlflow_version)
    results = report["results"]
    results["mlcycle_sqlite"] = run_ours(
        "sqlite", lambda home: f"sqlite:///{home / 'bench.db'}", workloads["mlcycle"]
    )
    if not args.skip_postgres:
        with fresh_postgres() as (url, server_version):
            report["machine"]["postgresql"] = server_version
            results["mlcycle_postgres"] = run_ours(
                "postgres", lambda _home: url, workloads["mlcycle"]
            )
    if mlflow_python is not None:
        results["mlflow_sqlite"] = run_side(
            [str(mlflow_python), str(HERE / "_mlflow_side.py"), str(RUN_DIR / "mlflow")],
            workloads["mlflow"],
            env=QUIET_MLFLOW,
        )
    report["cli"] = cli_times(mlflow_python)
    report["goals"] = goals(results, report["cli"])
    report["versions"] = versions(results, report["machine"])
    report["load_average_end"] = os.getloadavg()
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smaller workload (a minute)")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave MLflow out")
    parser.add_argument("--skip-postgres", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--mlflow-version", default=MLFLOW_VERSION, help="MLflow to compare with")
    parser.add_argument("--keep", action="store_true", help=f"keep the stores in {RUN_DIR.name}")
    return parser.parse_args(argv)


def log(message: str) -> None:
    """Progress goes to stderr so stdout is the table and the JSON line."""
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


# --- the sides ------------------------------------------------------------------------------


def run_ours(store: str, url_for: Any, workload: Workload) -> dict[str, Any]:
    """Our side on one store, in a fresh process with a fresh workspace."""
    home = RUN_DIR / f"mlcycle-{store}"
    home.mkdir(parents=True)
    command = [sys.executable, str(HERE / "_mlcycle_side.py"), str(home), url_for(home)]
    return run_side(command, workload)


def run_side(
    command: list[str], workload: Workload, *, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one side script; its last stdout line is its JSON figures."""
    log(f"running {Path(command[1]).name} {' '.join(command[2:])}")
    started = time.perf_counter()
    result = subprocess.run(
        [*command, workload.to_json()],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=SIDE_TIMEOUT_S,
    )
    log(f"  done in {time.perf_counter() - started:.1f} s (exit {result.returncode})")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        log(f"  FAILED:\n{tail}")
        return {"error": tail.splitlines()[-1] if tail else f"exit {result.returncode}"}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def ensure_mlflow(version: str) -> Path:
    """MLflow in its throwaway venv (installing takes about a minute)."""
    return incumbent_python("mlflow", version, log=log)


@contextlib.contextmanager
def fresh_postgres() -> Iterator[tuple[str, str]]:
    """A new database on the local server, dropped afterwards; yields its URL and the version."""
    import psycopg

    name = f"mlcycle_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        row = admin.execute("SHOW server_version").fetchone()
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/{name}", str(row[0] if row else "?")
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- command-line start-up ------------------------------------------------------------------


def wall_times(
    command: list[str], *, repeats: int = 5, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Median and best wall time of ``command`` (one untimed warm-up run first)."""
    environment = {**os.environ, **(env or {})}
    times = []
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        result = subprocess.run(
            command, capture_output=True, env=environment, check=False, cwd=WORK
        )
        if attempt:
            times.append(time.perf_counter() - start)
        if result.returncode != 0:
            return {"error": result.stderr.decode(errors="replace").strip()[-300:] or "failed"}
    return {"median_s": statistics.median(times), "best_s": min(times)}


def cli_times(mlflow_python: Path | None) -> dict[str, Any]:
    """``mlcycle --help`` and ``import mlcycle``; MLflow's for reference."""
    log("timing command-line start-up")
    figures = {
        "mlcycle_help": wall_times([str(VENV_BIN / "mlcycle"), "--help"]),
        "mlcycle_import": wall_times([sys.executable, "-c", "import mlcycle"]),
        "python_startup": wall_times([sys.executable, "-c", "pass"]),
    }
    if mlflow_python is not None:
        figures["mlflow_help"] = wall_times(
            [str(mlflow_python.parent / "mlflow"), "--help"], env=QUIET_MLFLOW
        )
        figures["mlflow_import"] = wall_times(
            [str(mlflow_python), "-c", "import mlflow"], env=QUIET_MLFLOW
        )
    return figures


# --- figures --------------------------------------------------------------------------------


def figure(side: dict[str, Any] | None, test: str) -> float | None:
    """The headline figure of ``test`` for one side (rate, or seconds for search)."""
    values = (side or {}).get(test)
    if not isinstance(values, dict):
        return None
    value = values.get("median_s" if test == "search" else "per_s")
    return float(value) if value is not None else None


def goals(results: dict[str, Any], cli: dict[str, Any]) -> dict[str, Any]:
    """Ratio of ours (SQLite) to MLflow's (SQLite) per goal, with PASS/MISS."""
    verdicts: dict[str, Any] = {}
    for test, (label, better, goal) in GOALS.items():
        ours = figure(results.get("mlcycle_sqlite"), test)
        theirs = figure(results.get("mlflow_sqlite"), test)
        ratio = None
        if ours and theirs:
            ratio = ours / theirs if better == "higher" else theirs / ours
        verdict = "n/a" if ratio is None else ("PASS" if ratio >= goal else "MISS")
        verdicts[test] = {"label": label, "ratio": ratio, "goal": goal, "verdict": verdict}
    help_s = cli.get("mlcycle_help", {}).get("median_s")
    verdicts["cli_help"] = {
        "label": "mlcycle --help, s",
        "seconds": help_s,
        "goal_s": CLI_GOAL_S,
        "verdict": "n/a" if help_s is None else ("PASS" if help_s < CLI_GOAL_S else "MISS"),
    }
    return verdicts


def machine() -> dict[str, Any]:
    """CPU, cores, memory and OS of this machine."""
    cpu = "unknown"
    with contextlib.suppress(OSError), Path("/proc/cpuinfo").open() as stream:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), cpu
        )
    ram_gib = None
    with contextlib.suppress(OSError, StopIteration), Path("/proc/meminfo").open() as stream:
        kib = next(int(line.split()[1]) for line in stream if line.startswith("MemTotal"))
        ram_gib = round(kib / 1024**2, 1)
    os_name = platform.system()
    with contextlib.suppress(OSError), Path("/etc/os-release").open() as stream:
        pretty = [
            line.split("=", 1)[1].strip().strip('"')
            for line in stream
            if line.startswith("PRETTY_NAME")
        ]
        os_name = pretty[0] if pretty else os_name
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }


def versions(results: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """Versions of everything measured."""
    ours = results.get("mlcycle_sqlite", {}).get("versions", {})
    theirs = results.get("mlflow_sqlite", {}).get("versions", {})
    return {
        "python": host["python"],
        "mlcycle": ours.get("mlcycle") or metadata.version("mlcycle"),
        "mlflow": theirs.get("mlflow"),
        "sqlalchemy": ours.get("sqlalchemy") or metadata.version("sqlalchemy"),
        "sqlalchemy_mlflow_env": theirs.get("sqlalchemy"),
        "sqlite": ours.get("sqlite"),
        "postgresql": host.get("postgresql"),
    }


# --- the table ------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    """A figure for the table."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"
    if unit == "us":
        return f"{value:,.1f} µs"
    return f"{value:,.0f}/s"


def print_table(report: dict[str, Any]) -> None:
    """The figures as a Markdown table (pasted into docs/benchmarks.md)."""
    results = report["results"]
    sides = ("mlcycle_sqlite", "mlcycle_postgres", "mlflow_sqlite")
    header = [
        "measurement",
        "mlcycle SQLite",
        "mlcycle PostgreSQL",
        "MLflow SQLite",
        "ratio",
        "goal",
        "",
    ]
    rows = [header, ["---"] * len(header)]
    search_runs = report["workloads"]["mlcycle"]["search_runs"]
    labels = {
        "single": "`log_metric` calls/s, until flushed",
        "batch": "`log_metrics` x1,000 keys, metrics/s, until flushed",
        "create": "runs created/s (5 params, 5 metrics)",
        "search": f"`search_runs` top 100 of {search_runs:,}, median",
    }
    for test, label in labels.items():
        unit = "s" if test == "search" else "rate"
        cells = [fmt(figure(results.get(side), test), unit) for side in sides]
        verdict = report["goals"][test]
        ratio = verdict["ratio"]
        rows.append(
            [
                label,
                *cells,
                "-" if ratio is None else f"{ratio:,.1f}x",
                f"≥ {verdict['goal']:.0f}x",
                verdict["verdict"],
            ]
        )
        if test == "single":
            calls = [(results.get(side) or {}).get("single", {}).get("call_us") for side in sides]
            rows.append(
                ["`log_metric` cost of the call", *[fmt(c, "us") for c in calls], "", "", ""]
            )
    cli = report["cli"]
    help_goal = report["goals"]["cli_help"]
    rows.append(
        [
            "`--help` wall time, median of 5",
            fmt(cli["mlcycle_help"].get("median_s"), "s"),
            "",
            fmt(cli.get("mlflow_help", {}).get("median_s"), "s"),
            "",
            f"< {CLI_GOAL_S * 1000:.0f} ms",
            help_goal["verdict"],
        ]
    )
    rows.append(
        [
            "`python -c 'import …'`, median of 5",
            fmt(cli["mlcycle_import"].get("median_s"), "s"),
            "",
            fmt(cli.get("mlflow_import", {}).get("median_s"), "s"),
            "",
            "",
            "",
        ]
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for side in sides:
        figures = results.get(side)
        if figures and "error" in figures:
            print(f"\n{side} failed: {figures['error']}")
        elif figures:
            wrong = [t for t in labels if figures.get(t, {}).get("correct") is False]
            if wrong:
                print(f"\n{side}: WRONG RESULTS in {', '.join(wrong)}")
    print()


if __name__ == "__main__":
    sys.exit(main())
