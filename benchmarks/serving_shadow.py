"""Only the serving benchmark's shadow phase: the top rate first, then the paced A/B and overload.

``benchmarks/serving.py`` measures everything (about 40 minutes with MLflow);
a change to shadows needs only this part of it (about 25 minutes). It trains
and registers the same model, measures our v2 throughput at c=32 with one
worker (twice, the larger counts), then runs ``serving.shadow`` at half of it:
two servers taking turns, one with a shadow, then the other, ``--repeats``
pairs of runs each time. Prints the table and, last, the JSON line.

    .venv/bin/python benchmarks/serving_shadow.py [--repeats 64] [--fraction 0.5] [--wire] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import serving
from _serving_report import print_shadow, rate, shadow_goals, shown, table


def main(argv: Sequence[str] | None = None) -> int:
    """Run the shadow phase; print its table, then the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=serving.FULL.shadow_repeats,
        help="pairs of paced runs per phase",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=serving.FULL.shadow_fraction,
        help="the paced rate as a share of the top rate (the issue's goal: 0.5)",
    )
    parser.add_argument(
        "--wire",
        action="store_true",
        help="also time each request on the wire, from a packet capture of loopback (needs "
        "tcpdump, the Debian package, and the right to capture)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the project afterwards")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be above 0 and at most 1")
    serving.RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args.repeats, args.fraction, wire=args.wire)
    finally:
        if not args.keep:
            shutil.rmtree(serving.RUN_DIR, ignore_errors=True)
    print(f"Top rate, ours v2, 1 worker, c=32: {rate(report['top_per_s'])}\n")
    print_shadow(report["shadow"])
    table(
        ["goal", "figure", "goal", ""],
        [[g["label"], shown(g), g["goal"], g["verdict"]] for g in report["goals"].values()],
    )
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0


def measure(repeats: int, fraction: float, *, wire: bool = False) -> dict[str, Any]:
    """The top rate of one worker, then the shadow phase at ``fraction`` of it."""
    workload = dataclasses.replace(
        serving.FULL, shadow_repeats=repeats, shadow_fraction=fraction, wire=wire
    )
    setup = serving.prepare(workload)
    name = serving.SHADOW_SERVERS[0]
    serving.deploy(setup, name, "--model", f"{serving.MODEL}@production")
    port = serving.free_port()
    server = serving.ours(name, name, setup, port=port, workers=1, env={})
    endpoint = serving.Endpoint(
        f"http://127.0.0.1:{port}/v2/models/{name}/infer", serving.bodies(setup)["v2"]
    )
    with serving.running([server]):
        server.wait_ready()
        serving.run_wrk(endpoint, connections=32, duration_s=2, script_dir=serving.RUN_DIR)
        runs = [
            serving.run_wrk(
                endpoint, connections=32, duration_s=workload.duration_s, script_dir=serving.RUN_DIR
            )
            for _ in range(2)
        ]
    top = max(runs, key=lambda run: run["ok_per_s"])
    servers = {"1": {"ours_v2": {"c32": top}}}
    report: dict[str, Any] = {
        "benchmark": "serving-shadow",
        "machine": serving.machine(),
        "workload": dataclasses.asdict(workload),
        "top_per_s": top["ok_per_s"],
        "shadow": serving.shadow(setup, servers, workload),
    }
    report["goals"] = shadow_goals(report["shadow"])
    return report


if __name__ == "__main__":
    sys.exit(main())
