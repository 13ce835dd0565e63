"""Pipeline benchmark: per-step overhead, cached re-runs, the Dask executor, and Prefect 3.

Run ``.venv/bin/python benchmarks/pipelines.py`` (or ``make bench-pipelines``). In a fresh
project (SQLite and a local artifact store under ``benchmarks/.work/``), with the pipelines
of ``benchmarks/_pipeline_flows.py`` copied in as ``bench_flows.py`` (not
``pipelines.py``: this file has that name and its folder is on the path), it times: chains of
no-op steps on the local executor (the overhead per step is the wall time less the steps'
own time, divided by the steps); a 20-step chain run again entirely from the cache; 200
independent steps of 50 ms of CPU each on the Dask executor against raw ``client.map`` of
the same function on the same ``distributed.LocalCluster`` (2 worker processes); and the
same no-op chains as a Prefect 3 flow of tasks, installed into its own throwaway
environment under ``benchmarks/.work/`` (never into our lock) and run as a subprocess with
a temporary ``PREFECT_HOME`` and no server. It prints Markdown tables and, as its last
line, one JSON object with every figure. ``--quick`` is a small workload for a smoke test.
The figures are recorded in ``docs/benchmarks.md``.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RUN_DIR = WORK / f"pipelines-run-{os.getpid()}"  # per invocation: two benchmarks may run at once
PREFECT_VERSION = "3.9.1"
SIDE_TIMEOUT_S = 900

sys.path.insert(0, str(HERE))
from _incumbents import incumbent_python  # noqa: E402
from tracking import machine  # noqa: E402  (the same machine record as the tracking benchmark)

# Goals of issue 5.
OVERHEAD_GOAL_S = 0.005
CACHED_GOAL_S = 0.2
DASK_GOAL_X = 1.3
PREFECT_GOAL_X = 10.0


@dataclass(frozen=True)
class Workload:
    """How much of everything one invocation does."""

    chains: tuple[int, ...]  # no-op chain lengths; the last one is the goal's
    chain_repeats: int
    cached_steps: int
    cached_repeats: int
    dask_steps: int
    dask_cpu_s: float
    dask_repeats: int
    prefect_repeats: int


FULL = Workload(
    chains=(10, 50),
    chain_repeats=7,
    cached_steps=20,
    cached_repeats=7,
    dask_steps=200,
    dask_cpu_s=0.05,
    dask_repeats=3,
    prefect_repeats=5,
)
QUICK = Workload(
    chains=(10, 50),
    chain_repeats=2,
    cached_steps=20,
    cached_repeats=2,
    dask_steps=20,
    dask_cpu_s=0.01,
    dask_repeats=1,
    prefect_repeats=1,
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
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small workload (smoke test)")
    parser.add_argument("--skip-dask", action="store_true", help="leave the Dask test out")
    parser.add_argument("--skip-prefect", action="store_true", help="leave Prefect out")
    parser.add_argument("--prefect-version", default=PREFECT_VERSION, help="Prefect to compare")
    parser.add_argument("--keep", action="store_true", help=f"keep the stores in {RUN_DIR.name}")
    return parser.parse_args(argv)


def log(message: str) -> None:
    """Progress goes to stderr so stdout is the tables and the JSON line."""
    sys.stderr.write(f"[bench-pipelines] {message}\n")
    sys.stderr.flush()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the report."""
    from mlcycle.project import init_project
    from mlcycle.settings import Settings
    from mlcycle.workspace import Workspace

    workload = QUICK if args.quick else FULL
    report: dict[str, Any] = {
        "benchmark": "pipelines",
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "workload": asdict(workload),
    }
    prefect_python = None if args.skip_prefect else ensure_prefect(args.prefect_version)
    home = init_project(RUN_DIR / "project")
    shutil.copy(HERE / "_pipeline_flows.py", home / "bench_flows.py")
    sys.path.insert(0, str(home))  # so `import bench_flows` and Dask workers find it
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(home), os.getenv("PYTHONPATH")]))
    import bench_flows  # type: ignore[import-not-found]  # the copied flows

    with Workspace.open(Settings(home=home)) as ws:
        report["local"] = local_chains(ws, bench_flows, workload)
        report["cached"] = cached_rerun(ws, bench_flows, workload)
        report["dask"] = None if args.skip_dask else dask_fan(ws, bench_flows, workload)
    if prefect_python is not None:
        report["prefect"] = run_prefect(prefect_python, workload)
    report["goals"] = goals(report, workload)
    report["versions"] = versions(report)
    report["load_average_end"] = os.getloadavg()
    return report


# --- mlcycle ----------------------------------------------------------------------------------


def chain_figures(walls: list[float], bodies: list[float], steps: int) -> dict[str, Any]:
    """Median, best and every time of a chain, and the overhead per step."""
    overheads = [(w - b) / steps for w, b in zip(walls, bodies, strict=True)]
    return {
        "median_s": statistics.median(walls),
        "best_s": min(walls),
        "times_s": walls,
        "body_s": bodies,
        "overhead_per_step_s": statistics.median(overheads),
    }


def marginal(chains: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """Cost of one more step and of the run itself: the line through the shortest and longest."""
    sizes = sorted(int(n) for n in chains)
    if len(sizes) < 2:
        return None
    short, long = chains[str(sizes[0])]["median_s"], chains[str(sizes[-1])]["median_s"]
    per_step = (long - short) / (sizes[-1] - sizes[0])
    return {"per_step_s": per_step, "fixed_s": short - per_step * sizes[0]}


def local_chains(ws: Any, flows: Any, workload: Workload) -> dict[str, Any]:
    """No-op chains on the local executor, each run a cache miss (a new salt)."""
    flows.chain.run(workspace=ws, steps=2, salt=-1)  # untimed: first imports and statements
    chains: dict[str, Any] = {}
    salt = 0
    for steps in workload.chains:
        log(f"local: {steps}-step no-op chain x{workload.chain_repeats}")
        walls, bodies = [], []
        for _ in range(workload.chain_repeats):
            salt += 1
            flows.BODY_S.clear()
            started = time.perf_counter()
            result = flows.chain.run(workspace=ws, steps=steps, salt=salt)
            walls.append(time.perf_counter() - started)
            bodies.append(sum(flows.BODY_S))
            check_statuses(result, "completed", steps)
        chains[str(steps)] = chain_figures(walls, bodies, steps)
    return {"chains": chains, "marginal": marginal(chains)}


def check_statuses(result: Any, status: str, steps: int) -> None:
    """Every step of ``result`` ended as ``status`` (the benchmark measured what it says)."""
    found = [s.status.value for s in result.steps.values()]
    if len(found) != steps or set(found) != {status}:
        raise RuntimeError(f"expected {steps} steps {status}, got {sorted(set(found))}")


def cached_rerun(ws: Any, flows: Any, workload: Workload) -> dict[str, Any]:
    """A chain run once, then again entirely from the cache (the second run timed)."""
    steps = workload.cached_steps
    log(f"cached: {steps}-step chain run again from the cache x{workload.cached_repeats}")
    first, again = [], []
    for repeat in range(workload.cached_repeats):
        salt = 1_000_000 + repeat
        started = time.perf_counter()
        flows.chain.run(workspace=ws, steps=steps, salt=salt)
        first.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = flows.chain.run(workspace=ws, steps=steps, salt=salt)
        again.append(time.perf_counter() - started)
        check_statuses(result, "cached", steps)
    return {
        "steps": steps,
        "median_s": statistics.median(again),
        "best_s": min(again),
        "times_s": again,
        "first_run_median_s": statistics.median(first),
    }


def dask_fan(ws: Any, flows: Any, workload: Workload) -> dict[str, Any]:
    """Independent CPU steps on the Dask executor and as raw ``client.map``, same cluster."""
    import distributed

    steps, cpu_s = workload.dask_steps, workload.dask_cpu_s
    log("dask: starting a LocalCluster with 2 worker processes, 1 thread each")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        address = cluster.scheduler_address.replace("tcp://", "dask://")

        def raw(salt: int) -> None:
            futures = client.map(flows.spin, range(steps), salt=salt, cpu_s=cpu_s, pure=False)
            client.gather(futures)

        def ours(salt: int) -> None:
            result = flows.fan.run(
                workspace=ws, executor=address, steps=steps, salt=salt, cpu_s=cpu_s
            )
            check_statuses(result, "completed", steps)

        log("dask: warm-up (workers import mlcycle and open the stores), untimed")
        raw(-1)
        flows.fan.run(workspace=ws, executor=address, steps=4, salt=-1, cpu_s=cpu_s)
        times: dict[str, list[float]] = {"raw": [], "mlcycle": []}
        for repeat in range(workload.dask_repeats):
            for side, action in (("raw", raw), ("mlcycle", ours)):  # taking turns: same load
                log(f"dask: {side}, {steps} steps of {cpu_s * 1000:g} ms CPU ({repeat + 1})")
                started = time.perf_counter()
                action(2_000_000 + repeat)
                times[side].append(time.perf_counter() - started)
    raw_s, ours_s = statistics.median(times["raw"]), statistics.median(times["mlcycle"])
    return {
        "steps": steps,
        "cpu_s": cpu_s,
        "ideal_s": steps * cpu_s / 2,
        "raw": {"median_s": raw_s, "best_s": min(times["raw"]), "times_s": times["raw"]},
        "mlcycle": {
            "median_s": ours_s,
            "best_s": min(times["mlcycle"]),
            "times_s": times["mlcycle"],
        },
        "ratio": ours_s / raw_s,
        "overhead_per_step_s": (ours_s - raw_s) / steps,
    }


# --- Prefect ----------------------------------------------------------------------------------


def ensure_prefect(version: str) -> Path:
    """Prefect 3 in its throwaway venv (its FastAPI pin conflicts with ours)."""
    return incumbent_python("prefect", version, log=log)


def run_prefect(python: Path, workload: Workload) -> dict[str, Any]:
    """The Prefect side: the same no-op chains as a flow of tasks, in its own process."""
    prefect_home = RUN_DIR / "prefect-home"
    prefect_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(prefect_home),  # its settings, SQLite database and temporary server
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Its temporary server gets 20 s to start by default: too little on a loaded machine.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="600",
        DO_NOT_TRACK="1",
        PYTHONWARNINGS="ignore",
    )
    sizes = ",".join(str(n) for n in workload.chains)
    command = [str(python), str(HERE / "_prefect_side.py"), sizes, str(workload.prefect_repeats)]
    log(f"prefect: chains of {sizes} tasks x{workload.prefect_repeats} (after a warm-up)")
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=RUN_DIR,
        env=env,
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
    figures["marginal"] = marginal(figures["chains"])
    return figures


# --- figures ----------------------------------------------------------------------------------


def verdict(value: float | None, *, at_most: float | None = None, at_least: float = 0.0) -> str:
    """PASS, MISS or n/a for ``value`` against its bound."""
    if value is None:
        return "n/a"
    passed = value <= at_most if at_most is not None else value >= at_least
    return "PASS" if passed else "MISS"


def goals(report: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """The goals of issue 5."""
    longest = str(workload.chains[-1])
    ours = report["local"]["chains"][longest]["overhead_per_step_s"]
    cached = report["cached"]["median_s"]
    dask = (report.get("dask") or {}).get("ratio")
    prefect = report.get("prefect") or {}
    theirs = (prefect.get("chains") or {}).get(longest, {}).get("overhead_per_step_s")
    prefect_x = theirs / ours if theirs and ours else None
    return {
        "overhead": {
            "label": f"overhead per step, {longest}-step no-op chain, local executor",
            "value": ours,
            "unit": "s",
            "goal": f"≤ {OVERHEAD_GOAL_S * 1000:g} ms",
            "verdict": verdict(ours, at_most=OVERHEAD_GOAL_S),
        },
        "cached": {
            "label": f"{workload.cached_steps}-step pipeline re-run entirely from the cache",
            "value": cached,
            "unit": "s",
            "goal": f"≤ {CACHED_GOAL_S * 1000:g} ms",
            "verdict": verdict(cached, at_most=CACHED_GOAL_S),
        },
        "dask": {
            "label": (
                f"Dask executor / raw `client.map`, {workload.dask_steps} steps of "
                f"{workload.dask_cpu_s * 1000:g} ms CPU"
            ),
            "value": dask,
            "unit": "x",
            "goal": f"≤ {DASK_GOAL_X:g}x",
            "verdict": verdict(dask, at_most=DASK_GOAL_X),
        },
        "prefect": {
            "label": f"Prefect's overhead per task / ours per step, {longest}-step no-op chain",
            "value": prefect_x,
            "unit": "x",
            "goal": f"≥ {PREFECT_GOAL_X:g}x",
            "verdict": verdict(prefect_x, at_least=PREFECT_GOAL_X),
        },
    }


def versions(report: dict[str, Any]) -> dict[str, Any]:
    """Versions of everything measured."""
    ours = {
        name: metadata.version(name)
        for name in ("mlcycle", "dask", "distributed", "sqlalchemy", "pydantic")
    }
    side = (report.get("prefect") or {}).get("versions", {})
    return {**ours, "prefect": side.get("prefect"), "pydantic_prefect_env": side.get("pydantic")}


# --- the tables -------------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    """Seconds for the table."""
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:,.2f} ms"
    return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"


def print_tables(report: dict[str, Any]) -> None:
    """The figures as Markdown tables (pasted into docs/benchmarks.md)."""
    rows = [["measurement", "mlcycle", "Prefect"], ["---"] * 3]
    prefect = report.get("prefect") or {}
    theirs_chains = prefect.get("chains") or {}
    for steps, ours in report["local"]["chains"].items():
        theirs = theirs_chains.get(steps, {})
        rows.append(
            [
                f"{steps}-step no-op chain, wall time (median)",
                fmt_s(ours["median_s"]),
                fmt_s(theirs.get("median_s")),
            ]
        )
        rows.append(
            [
                f"{steps}-step chain: overhead per step (wall - bodies) / {steps}",
                fmt_s(ours["overhead_per_step_s"]),
                fmt_s(theirs.get("overhead_per_step_s")),
            ]
        )
    ours_line, theirs_line = report["local"]["marginal"], prefect.get("marginal")
    if ours_line:
        rows.append(
            [
                "one more step (slope between the chains)",
                fmt_s(ours_line["per_step_s"]),
                fmt_s((theirs_line or {}).get("per_step_s")),
            ]
        )
        rows.append(
            [
                "the run itself (intercept)",
                fmt_s(ours_line["fixed_s"]),
                fmt_s((theirs_line or {}).get("fixed_s")),
            ]
        )
    cached = report["cached"]
    rows.append(
        [
            f"{cached['steps']}-step chain, first run / re-run from the cache",
            f"{fmt_s(cached['first_run_median_s'])} / {fmt_s(cached['median_s'])}",
            "",
        ]
    )
    if "error" in prefect:
        rows.append(["Prefect side", "", f"failed: {prefect['error']}"])
    print_rows(rows)
    dask = report.get("dask")
    if dask:
        title = f"{dask['steps']} steps of {dask['cpu_s'] * 1000:g} ms CPU, 2 Dask workers"
        print_rows(
            [
                [title, "median", "best", "per step"],
                ["---"] * 4,
                ["ideal (CPU / 2 workers)", fmt_s(dask["ideal_s"]), "", ""],
                [
                    "raw `client.map` + `gather`",
                    fmt_s(dask["raw"]["median_s"]),
                    fmt_s(dask["raw"]["best_s"]),
                    fmt_s(dask["raw"]["median_s"] / dask["steps"]),
                ],
                [
                    "mlcycle Dask executor",
                    fmt_s(dask["mlcycle"]["median_s"]),
                    fmt_s(dask["mlcycle"]["best_s"]),
                    fmt_s(dask["mlcycle"]["median_s"] / dask["steps"]),
                ],
            ]
        )
    goal_rows = [["goal", "figure", "goal", ""], ["---"] * 4]
    for goal in report["goals"].values():
        value = goal["value"]
        shown = (
            "-" if value is None else (f"{value:,.2f}x" if goal["unit"] == "x" else fmt_s(value))
        )
        goal_rows.append([goal["label"], shown, goal["goal"], goal["verdict"]])
    print_rows(goal_rows)


def print_rows(rows: list[list[str]]) -> None:
    """One Markdown table and a blank line."""
    for line in rows:
        print("| " + " | ".join(line) + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())
