"""The serving benchmark's hot switch: an alias moved under load, and when every worker follows.

``mlcycle serve models:/bike-demand@bench-switch`` with 2 workers answers wrk's v1 load at 32
connections; 3 s in, the alias ``bench-switch`` is moved from version 1 to 2 in this process.
A probe then asks on a new connection each time (so the kernel hands requests to both workers)
until 5 s past the move, and notes the last answer that still came from version 1: the switch
time is from the move to that answer. wrk's errors over the whole run are the failed requests.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _serving_load import Endpoint, Server, free_port, run_wrk, running

SWITCH_ALIAS = "bench-switch"
SWITCH_GOAL_S = 5.0  # issue 6: every worker serves the new version within 5 s
PROBE_AFTER_S = 8.0  # how long past the move the probe keeps asking
LOAD_BEFORE_S = 3.0  # load before the move


def hot_switch(
    project: Path, model: str, body: bytes, start: Any, *, script_dir: Path, load_s: float
) -> dict[str, Any]:  # Any: a callable making a Server; the figures
    """Move ``model``'s alias from version 1 to 2 under load; see the module's docstring."""
    from mlcycle.settings import Settings
    from mlcycle.workspace import Workspace

    with Workspace.open(Settings(home=project)) as ws:
        ws.registry.promote(model, 1, to=SWITCH_ALIAS, force=True, reason="benchmark: switch")
    port = free_port()
    server: Server = start(f"models:/{model}@{SWITCH_ALIAS}", port)
    url = f"http://127.0.0.1:{port}/v1/models/{model}:predict"
    endpoint = Endpoint(url, body)
    figures: dict[str, Any] = {"workers": 2, "connections": 32}
    with running([server]):
        server.wait_ready()
        load: dict[str, Any] = {}
        duration = max(load_s, LOAD_BEFORE_S + PROBE_AFTER_S + 1)

        def drive() -> None:
            load.update(
                run_wrk(endpoint, connections=32, duration_s=duration, script_dir=script_dir)
            )

        driver = threading.Thread(target=drive, name="wrk")
        driver.start()
        time.sleep(LOAD_BEFORE_S)
        with Workspace.open(Settings(home=project)) as ws:
            ws.registry.promote(model, 2, to=SWITCH_ALIAS, force=True, reason="benchmark: switch")
        moved = time.monotonic()
        answers = probe(url, body, until=moved + PROBE_AFTER_S)
        driver.join()
    old = [at - moved for at, version in answers if version == "1"]
    new = [at - moved for at, version in answers if version == "2"]
    figures.update(
        {
            "probes": len(answers),
            "first_new_s": min(new) if new else None,
            "last_old_s": max(old) if old else 0.0,
            "switched": bool(new) and (not old or max(old) < max(new)),
            "load": load,
            "failed": load.get("non_2xx", 0) + load.get("socket_errors", 0),
        }
    )
    return figures


def probe(url: str, body: bytes, *, until: float) -> list[tuple[float, str]]:
    """(time, model version) of answers on new connections, every 20 ms until ``until``."""
    found: list[tuple[float, str]] = []
    while time.monotonic() < until:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        found.append((time.monotonic(), str(answer["version"])))
        time.sleep(0.02)
    return found


def switch_goal(switch: dict[str, Any] | None) -> dict[str, Any]:
    """Every worker on the new version within 5 s of the move, and no failed request."""
    goal: dict[str, Any] = {
        "label": "alias moved under load (2 workers): last answer of the old version, failures",
        "unit": "s",
        "goal": f"≤ {SWITCH_GOAL_S:.0f} s, 0 failed",
        "value": None,
        "verdict": "n/a",
    }
    if not switch or "error" in switch:
        return goal
    goal["value"] = switch["last_old_s"]
    passed = switch["switched"] and switch["last_old_s"] <= SWITCH_GOAL_S and switch["failed"] == 0
    goal["verdict"] = "PASS" if passed else "MISS"
    return goal
