"""The goals and the tables of the serving benchmark (issue 6), from its JSON report."""

from __future__ import annotations

import math
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from _serving_switch import switch_goal

# Goals of issue 6.
THROUGHPUT_GOAL_X = 10.0  # ours / MLflow's requests per second at c=32, same workers
P99_GOAL_X = 10.0  # MLflow's p99 / ours at c=32
PLUMBING_GOAL = 0.5  # micro-batched single-row throughput / the plumbing limit
SHADOW_MEDIAN_GOAL = 1.10  # median latency with a shadow / without, at half the maximum rate
SHADOW_P99_GOAL = 1.05  # the same for p99 (issue 6, deployments: "never adds more than 5%")
GOAL_CONNECTIONS = "c32"

TARGETS = {
    "ours_v2": "mlcycle serve, Open Inference Protocol v2",
    "ours_v1": "mlcycle serve, v1 `:predict`",
    "ours_v2_unbatched": "mlcycle serve, v2, micro-batching off",
    "mlflow": "mlflow models serve",
    "mlflow_omp1": "mlflow models serve, OMP_NUM_THREADS=1",
    "plumbing": "Starlette + uvicorn answering a constant",
}


def verdict(
    value: float | None, *, at_least: float | None = None, at_most: float | None = None
) -> str:
    """PASS, MISS or n/a for ``value`` against its bound."""
    if value is None:
        return "n/a"
    if at_least is not None:
        return "PASS" if value >= at_least else "MISS"
    return "PASS" if at_most is None or value <= at_most else "MISS"


def figure(report: dict[str, Any], workers: str, target: str, key: str) -> float | None:
    """One figure of one target at c=32 (None when it was not measured)."""
    value = report["servers"].get(workers, {}).get(target, {}).get(GOAL_CONNECTIONS, {}).get(key)
    return float(value) if value is not None else None


def ratio(top: float | None, bottom: float | None) -> float | None:
    """``top / bottom``, or None when either is missing or zero."""
    return top / bottom if top and bottom else None


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """Each goal of issue 6 with its figure and PASS/MISS."""
    found: dict[str, Any] = {}
    for workers in report["servers"]:
        for target in ("ours_v2", "ours_v1"):
            endpoint = "v2" if target == "ours_v2" else "v1"
            through = ratio(
                figure(report, workers, target, "ok_per_s"),
                figure(report, workers, "mlflow", "ok_per_s"),
            )
            found[f"throughput_{endpoint}_w{workers}"] = {
                "label": f"throughput vs MLflow, {endpoint}, {workers} worker(s), c=32",
                "value": through,
                "unit": "x",
                "goal": f"≥ {THROUGHPUT_GOAL_X:.0f}x",
                "verdict": verdict(through, at_least=THROUGHPUT_GOAL_X),
            }
            p99 = ratio(
                figure(report, workers, "mlflow", "p99_s"),
                figure(report, workers, target, "p99_s"),
            )
            found[f"p99_{endpoint}_w{workers}"] = {
                "label": f"p99 latency, MLflow's / ours, {endpoint}, {workers} worker(s), c=32",
                "value": p99,
                "unit": "x",
                "goal": f"≥ {P99_GOAL_X:.0f}x",
                "verdict": verdict(p99, at_least=P99_GOAL_X),
            }
        share = ratio(
            figure(report, workers, "ours_v2", "ok_per_s"),
            figure(report, workers, "plumbing", "ok_per_s"),
        )
        found[f"plumbing_w{workers}"] = {
            "label": f"micro-batched single-row throughput / plumbing limit, {workers} worker(s)",
            "value": share,
            "unit": "%",
            "goal": f"≥ {PLUMBING_GOAL:.0%}",
            "verdict": verdict(share, at_least=PLUMBING_GOAL),
        }
    found.update(shadow_goals(report["shadow"]))
    found["hot_switch"] = switch_goal(report.get("switch"))
    return found


def shadow_goals(shadow: dict[str, Any]) -> dict[str, Any]:
    """Latency with a shadow vs without at half the maximum rate; shadows shed first.

    Each phase's ratio compares its server with a shadow to the other
    without (the median goal: the runs' medians, as the issue asks, over the
    repetitions, median and spread; the p99 goal: every request of the runs
    together, since a short run's own p99 is set by a handful of requests).
    The figure is the geometric mean of the two phases' ratios: each server
    is once with and once without, so how much faster one process is than
    the other cancels out.
    """
    phases = shadow.get("phases") or []
    median = geometric_mean([phase["median_ratio"] for phase in phases])
    p99 = geometric_mean([phase["p99_ratio"] for phase in phases])
    intervals = shadow.get("intervals", {})
    return {
        "shadow_median": {
            "label": (
                "median latency with a shadow / without (the runs' medians; geometric mean of "
                f"the two phases), at {of_top(shadow)} the maximum rate"
            ),
            "value": median,
            "interval": intervals.get("median"),
            "unit": "x",
            "goal": f"≤ {SHADOW_MEDIAN_GOAL:.2f}x",
            "verdict": verdict(median, at_most=SHADOW_MEDIAN_GOAL),
        },
        "shadow_p99": {
            "label": (
                "p99 latency with a shadow / without (every request of the runs; geometric "
                f"mean of the two phases), at {of_top(shadow)} the maximum rate"
            ),
            "value": p99,
            "interval": intervals.get("p99"),
            "unit": "x",
            "goal": f"≤ {SHADOW_P99_GOAL:.2f}x",
            "verdict": verdict(p99, at_most=SHADOW_P99_GOAL),
        },
        "shadow_shed_first": shed_first(shadow.get("overload")),
    }


def of_top(shadow: dict[str, Any]) -> str:
    """How the paced rate relates to the top rate, in words: "half", or "33 % of"."""
    fraction = shadow.get("fraction_of_top", 0.5)
    return "half" if fraction == 0.5 else f"{fraction:.0%} of"


def geometric_mean(values: list[float]) -> float | None:
    """The geometric mean of ``values`` (``None`` for none)."""
    return math.prod(values) ** (1 / len(values)) if values else None


def server_difference(shadow: dict[str, Any]) -> float | None:
    """How much slower the second server is than the first, as the two phases' ratios give it.

    With ``r1 = second with / first without`` and ``r0 = first with /
    second without``, the shadow's own factor cancels in ``r1 / r0``: its
    square root is the servers' difference, which the goals' geometric mean
    cancels in turn.
    """
    phases = shadow.get("phases") or []
    if len(phases) != 2:
        return None
    return math.sqrt(phases[1]["median_ratio"] / phases[0]["median_ratio"])


def shed_first(overload: dict[str, Any] | None) -> dict[str, Any]:
    """Under overload, a larger share of shadow copies is shed than of primary requests refused."""
    goal: dict[str, Any] = {
        "label": "overload: share of shadow copies shed / share of primary requests refused",
        "unit": "shed",
        "goal": "shadows shed, a larger share than the primary's refusals",
        "value": None,
        "verdict": "n/a",
    }
    if not overload:
        return goal
    answered = overload["requests"] - overload["non_2xx"]
    shed_share = overload["shadow_shed"] / answered if answered else None
    refused_share = overload["non_2xx"] / overload["requests"] if overload["requests"] else 0.0
    goal["value"] = {"shadow_shed_share": shed_share, "primary_refused_share": refused_share}
    passed = bool(overload["shadow_shed"]) and (shed_share or 0.0) >= refused_share
    goal["verdict"] = "PASS" if passed else "MISS"
    return goal


def versions(mlflow_python: Path | None) -> dict[str, Any]:
    """Versions of everything measured."""
    found: dict[str, Any] = {}
    for name in ("mlcycle", "uvicorn", "starlette", "orjson", "onnxruntime", "scikit-learn"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    found["wrk"] = (wrk.stdout or wrk.stderr).split(" [", 1)[0].strip() or None
    if mlflow_python is not None:
        probe = subprocess.run(
            [
                str(mlflow_python),
                "-c",
                (
                    "import importlib.metadata as m; "
                    "print(m.version('mlflow'), m.version('uvicorn'), m.version('scikit-learn'))"
                ),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        parts = probe.stdout.split()
        if len(parts) == 3:
            found["mlflow"], found["uvicorn_mlflow_env"], found["scikit_learn_mlflow_env"] = parts
    return found


# --- the tables -----------------------------------------------------------------------------


def ms(value: float | None) -> str:
    """Seconds as milliseconds (microseconds below 1 ms)."""
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:,.0f} µs"
    return f"{value * 1000:,.1f} ms"


def rate(value: float | None) -> str:
    """Per second, rounded."""
    return "-" if value is None else f"{value:,.0f}/s"


def table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table."""
    for line in [header, ["---"] * len(header), *rows]:
        print("| " + " | ".join(line) + " |")
    print()


def print_tables(report: dict[str, Any]) -> None:
    """The figures as Markdown tables (pasted into docs/benchmarks.md)."""
    rows = []
    for workers, targets in report["servers"].items():
        for target, title in TARGETS.items():
            if target in targets:
                rows.append(server_row(workers, title, targets[target]))
    table(
        [
            "server (workers)",
            "c=1 req/s",
            "c=1 p50 / p99",
            "c=32 req/s",
            "c=32 p50 / p99",
            "CPU per request (c=32)",
            "errors",
        ],
        rows,
    )
    predict = report["in_process"]
    table(
        ["in-process predict (the model's limit)", "calls/s", "rows/s", "per call"],
        [
            [
                label.replace("_", " "),
                rate(f["calls_per_s"]),
                rate(f["rows_per_s"]),
                ms(f["call_s"]),
            ]
            for label, f in predict.items()
        ],
    )
    print_shadow(report["shadow"])
    print_switch(report.get("switch"))
    goal_rows = [[g["label"], shown(g), g["goal"], g["verdict"]] for g in report["goals"].values()]
    table(["goal", "figure", "goal", ""], goal_rows)


def server_row(workers: str, title: str, figures: dict[str, Any]) -> list[str]:
    """One target's cells."""
    if "error" in figures.get("server", {}):
        return [f"{title} ({workers})", figures["server"]["error"], "", "", "", "", ""]
    one, many = figures.get("c1", {}), figures.get("c32", {})
    errors = sum(
        figures.get(c, {}).get(k, 0) for c in ("c1", "c32") for k in ("non_2xx", "socket_errors")
    )
    probe = figures.get("probe", {})
    if probe.get("status") not in (None, 200):
        errors_cell = f"{errors:,} (probe: HTTP {probe['status']})"
    elif probe.get("same_prediction") is False:
        errors_cell = f"{errors:,} (WRONG PREDICTION {probe['prediction']})"
    else:
        errors_cell = f"{errors:,}"
    return [
        f"{title} ({workers})",
        rate(one.get("ok_per_s")),
        f"{ms(one.get('p50_s'))} / {ms(one.get('p99_s'))}",
        rate(many.get("ok_per_s")),
        f"{ms(many.get('p50_s'))} / {ms(many.get('p99_s'))}",
        ms(many.get("server_cpu_s_per_request")),
        errors_cell,
    ]


def print_wire(wire: dict[str, Any] | None) -> None:
    """The shadow phase's ratios from the latencies on the wire (``--wire``), if measured."""
    if not wire:
        return
    print(
        "On the wire (a packet capture of loopback: each request's first segment in to its "
        "answer's first segment out, the client's scheduling left out): every request of the "
        f"runs with a shadow {ms(wire['with']['p50_s'])} median, {ms(wire['with']['p99_s'])} "
        f"p99; without {ms(wire['without']['p50_s'])} and {ms(wire['without']['p99_s'])}; "
        f"{wire['dropped']:,} segments dropped by the capture.\n"
    )
    intervals = wire["intervals"]
    table(
        ["on the wire, phase: shadow on", "median ratio", "p99 ratio (every request)"],
        [
            [phase["shadowed"], f"{phase['median_ratio']:.2f}x", f"{phase['p99_ratio']:.2f}x"]
            for phase in wire["phases"]
        ]
        + [
            [
                "both (geometric mean, 95 % interval)",
                interval_text(wire["phases"], "median_ratio", intervals["median"]),
                interval_text(wire["phases"], "p99_ratio", intervals["p99"]),
            ]
        ],
    )


def interval_text(phases: list[dict[str, Any]], key: str, interval: list[float]) -> str:
    """The phases' geometric mean of ``key`` with its interval, as ``1.02x (0.98 to 1.07)``."""
    mean = geometric_mean([phase[key] for phase in phases])
    return f"{mean:.2f}x ({interval[0]:.2f} to {interval[1]:.2f})"


def print_shadow(shadow: dict[str, Any]) -> None:
    """The shadow table, or why there is none."""
    if "paced" not in shadow:
        print(f"Shadow: not measured ({shadow.get('error', 'no figures')}).\n")
        return
    rows = []
    for name, figures in shadow["paced"].items():
        p50, p99 = figures["p50_s"], figures["p99_s"]
        answered = figures["ok_per_s"]["median"]
        cpu = figures.get("server_cpu_s_per_request")
        own = figures.get("shadow_cpu_s_per_request")
        shadow_cpu = 0.0 if own is None else own["median"]
        rows.append(
            [
                name,
                rate(answered),
                f"{ms(p50['median'])} ({ms(p50['min'])} to {ms(p50['max'])})",
                f"{ms(p99['median'])} ({ms(p99['min'])} to {ms(p99['max'])})",
                ms(figures["pooled"]["p99_s"]),
                "n/a" if cpu is None else f"{cpu['median'] * 1e6:,.0f} µs",
                f"{shadow_cpu * 1e6:,.0f} µs",
                "n/a" if cpu is None else f"{(cpu['median'] - shadow_cpu) * answered:.0%}",
                f"{figures['non_2xx'] + figures['socket_errors']:,}",
            ]
        )
    repeats = shadow["paced"]["with"]["repeats"] // max(len(shadow["phases"]), 1)
    print(
        f"Shadow: two servers, 1 worker each, paced in turn at {shadow['rate_per_s']:,.0f} "
        f"requests/s ({of_top(shadow)} the maximum), {shadow['connections']} connections, runs of "
        f"{shadow['run_s']} s; one has a shadow, then the other: {repeats} pairs of runs per "
        "phase; median (min to max) over the runs.\n"
    )
    table(
        [
            "runs",
            "answered",
            "median latency",
            "p99 latency",
            "p99, every request",
            "CPU / request",
            "of it the shadow's process",
            "worker busy",
            "errors",
        ],
        rows,
    )
    table(
        ["phase: shadow on", "median ratio", "p99 ratio (every request)", "pairs' median ratios"],
        [
            [
                phase["shadowed"],
                f"{phase['median_ratio']:.2f}x",
                f"{phase['p99_ratio']:.2f}x",
                pair_spread(phase["pair_ratios"]),
            ]
            for phase in shadow["phases"]
        ],
    )
    print_wire(shadow.get("wire"))
    difference = server_difference(shadow)
    if difference is not None:
        print(
            f"The two servers' own difference, from the phases' ratios: {difference:.2f}x (the "
            "second's latency / the first's, no shadow in either). The goals take the geometric "
            "mean of the two phases, which cancels it.\n"
        )
    copies = shadow.get("copies")
    if copies:
        print(
            f"During its paced runs the shadow predicted {copies['predicted']:,.0f} copies and "
            f"shed {copies['shed']:,.0f}, of {copies['requests']:,} requests. CPU / request is the "
            "server's (the worker and, with a shadow, its process, whose share follows), median "
            "over the runs; worker busy is the worker's times the rate answered, the share of "
            "one core it used. Near 100 % "
            "a request waits mostly in the queue, and a few percent more work per request makes "
            "the wait much longer: the ratios then read the queue, not the shadow.\n"
        )
    if shadow.get("intervals"):
        print(
            "The shadow goals' 95 % intervals (in the goals' table) come from 400 resamples of "
            "the runs, drawn with replacement on each side of each phase: where an interval "
            "spans the goal, this run cannot decide it either way.\n"
        )
    idle = shadow.get("idle_penalty")
    if idle:
        after = ", ".join(
            f"{idle['work_us'][gap]:.1f} µs after {gap} idle ({ratio:.2f}x)"
            for gap, ratio in idle["ratio"].items()
        )
        print(
            "Idle penalty: the same Python work (parsing a v2 body) took this machine "
            f"{idle['work_us']['none']:.1f} µs of CPU back to back, {after}. A paced "
            "request waits idle before it, so it costs the server more than a batched one, "
            "and half the maximum rate leaves the worker more than half busy.\n"
        )
    load = shadow.get("overload")
    if load:
        print(
            f"Overload (c={load['connections']}): {load['requests']:,} requests, "
            f"{load['non_2xx']:,} refused, {load['socket_errors']:,} socket errors; "
            f"shadow copies shed: {load['shadow_shed']:,.0f}; metrics that moved: "
            f"{json_short(load['metrics_moved'])}.\n"
        )


def pair_spread(ratios: list[float]) -> str:
    """Median (min to max) of the ratios of the pairs of runs next to each other."""
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f} to {max(ratios):.2f}x)"


def print_switch(switch: dict[str, Any] | None) -> None:
    """The hot switch's line, or why there is none."""
    if not switch or "error" in switch:
        print(f"Hot switch: not measured ({(switch or {}).get('error', 'no figures')}).\n")
        return
    first = switch["first_new_s"]
    print(
        f"Hot switch: {switch['workers']} workers under wrk at {switch['connections']} "
        f"connections ({rate(switch['load'].get('ok_per_s'))}); the alias moved, then "
        f"{switch['probes']:,} probes on new connections: the first answer of the new version "
        f"{'-' if first is None else f'{first:.2f} s'} after the move, the last of the old one "
        f"{switch['last_old_s']:.2f} s after; {switch['failed']:,} failed requests.\n"
    )


def json_short(values: dict[str, float]) -> str:
    """``name{labels}=value`` pairs, or 'none'."""
    return ", ".join(f"`{k}`={v:,.0f}" for k, v in values.items()) or "none"


def shown(goal: dict[str, Any]) -> str:
    """A goal's figure for the table."""
    value = goal["value"]
    if value is None:
        return "-"
    if goal["unit"] == "x":
        interval = goal.get("interval")
        if interval:
            return f"{value:,.2f}x (95 % interval {interval[0]:.2f} to {interval[1]:.2f}x)"
        return f"{value:,.2f}x"
    if goal["unit"] == "s":
        return f"{value:.2f} s"
    if goal["unit"] == "%":
        return f"{value:.0%}"
    shed, refused = value["shadow_shed_share"], value["primary_refused_share"]
    return f"{'-' if shed is None else f'{shed:.0%}'} shed vs {refused:.0%} refused"
