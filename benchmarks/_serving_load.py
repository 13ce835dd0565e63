"""Load generation and server processes for the serving benchmark.

A load generator written in Python saturates before the server does, so the load comes from
``wrk`` (the Debian package) on loopback. A generated Lua script sends the POST body, can pace
requests at a fixed rate (wrk2 is not packaged: a schedule in ``delay()``, on a monotonic clock
read through LuaJIT's FFI), and prints, from ``done()``, one JSON line with the request count,
the errors and the latency percentiles. Servers run as child processes in their own session, so
stopping one stops its workers too; their CPU time is read around each load run.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRK = shutil.which("wrk") or "/usr/bin/wrk"
MARKER = "WRK-JSON "
PERCENTILES = (50, 90, 99, 99.9)
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20

LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
local rate = {rate}
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
    int clock_gettime(int clock, bench_timespec *now);
  ]]
  local now_buffer = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, now_buffer)  -- CLOCK_MONOTONIC
    return tonumber(now_buffer.tv_sec) * 1000 + tonumber(now_buffer.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local slot = nil
  -- Each request takes the next slot of one schedule; a slot missed by more than 100 ms
  -- (the server fell behind) is dropped rather than sent in a burst later.
  function delay()
    local now = now_ms()
    if slot == nil or slot < now - 100 then
      slot = now
    end
    slot = slot + interval
    local wait = slot - now
    if wait < 0 then
      return 0
    end
    return math.floor(wait)
  end
end

function done(summary, latency, requests)
  local parts = {{}}
  for _, p in ipairs({{{percentiles}}}) do
    table.insert(parts, string.format('"%s": %d', tostring(p), latency:percentile(p)))
  end
  -- Every latency seen (µs) with its count, so runs can be pooled into one distribution.
  local histogram = {{}}
  for i = 1, #latency do
    local value, count = latency(i)
    table.insert(histogram, string.format("[%d, %d]", value, count))
  end
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.1f, ' ..
    '"max_us": %d, "errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}}, "percentiles_us": {{%s}}, "histogram_us": [%s]}}\\n',
    summary.requests, summary.duration, summary.bytes, latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", "),
    table.concat(histogram, ", ")))
end
"""


@dataclass(frozen=True)
class Endpoint:
    """One URL to load, with the body and headers of its single-row request."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    def lua(self, *, rate: float = 0.0) -> str:
        """The wrk script that sends this request (at ``rate`` per second if not 0)."""
        headers = "\n".join(
            f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}"
            for name, value in self.headers.items()
        )
        return LUA.format(
            body=self.body.decode(),
            headers=headers,
            rate=float(rate),
            percentiles=", ".join(str(p) for p in PERCENTILES),
            marker=MARKER,
        )

    def post(self, *, timeout_s: float = 30.0) -> tuple[int, Any]:
        """Send the request once: the status and the decoded JSON answer (None if not JSON)."""
        request = urllib.request.Request(
            self.url, data=self.body, headers=dict(self.headers), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")[:500]


def run_wrk(
    endpoint: Endpoint,
    *,
    connections: int,
    duration_s: float,
    script_dir: Path,
    rate: float = 0.0,
    cpu_of: Server | None = None,
    histogram: bool = False,
) -> dict[str, Any]:
    """One wrk run (one thread): throughput, latency percentiles in seconds, errors.

    ``rate`` paces the requests (per second, 0 for as fast as the server answers);
    ``cpu_of`` adds that server's CPU seconds per request over the run (all its
    processes, and apart those of its shadows); ``histogram``
    keeps every latency seen with its count (``histogram_us``: [µs, count] pairs) for
    ``pooled_latency``.
    """
    script = script_dir / f"wrk-{os.getpid()}-{time.monotonic_ns()}.lua"
    script.write_text(endpoint.lua(rate=rate))
    command = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        endpoint.url,
    ]
    cpu_before = cpu_of.cpu_seconds() if cpu_of else None
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    cpu_after = cpu_of.cpu_seconds() if cpu_of else None
    script.unlink(missing_ok=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line[len(MARKER) :])
    errors = raw["errors"]
    duration = raw["duration_us"] / 1e6
    ok = raw["requests"] - errors["status"]
    figures: dict[str, Any] = {
        "connections": connections,
        "duration_s": duration,
        "requests": raw["requests"],
        "ok_per_s": ok / duration,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "mean_s": raw["mean_us"] / 1e6,
        "max_s": raw["max_us"] / 1e6,
        **{f"p{p:g}_s": raw["percentiles_us"][f"{p:g}"] / 1e6 for p in PERCENTILES},
    }
    if rate:
        figures["rate_asked_per_s"] = rate
    if histogram:
        figures["histogram_us"] = raw["histogram_us"]
    if cpu_before is not None and cpu_after is not None and raw["requests"]:
        for key, after in cpu_after.items():
            figures[f"{key}_cpu_s_per_request"] = (after - cpu_before[key]) / raw["requests"]
    return figures


def pooled_latency(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median and p99 latency (s) of every request of ``runs`` together (``histogram_us``).

    A p99 per 10 s run is set by a handful of requests, and moved 2x between runs of one
    server here; the p99 of all the runs' requests is the tail a user of the server sees.
    Ranked as wrk ranks: the smallest latency with at least p % of the requests at or below.
    """
    counts: collections.Counter[int] = collections.Counter()
    for run in runs:
        for value, count in run["histogram_us"]:
            counts[value] += count
    total = sum(counts.values())
    pooled: dict[str, Any] = {"requests": total}
    ranks = {percentile: round(percentile / 100 * total + 0.5) for percentile in (50, 99)}
    seen = 0
    for value, count in sorted(counts.items()):
        seen += count
        for percentile, rank in ranks.items():
            if seen >= rank:
                pooled.setdefault(f"p{percentile}_s", value / 1e6)
    return pooled


def ratio_interval(
    phases: Sequence[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
    statistic: Callable[[Sequence[Mapping[str, Any]]], float],
    *,
    resamples: int = 400,
    seed: int = 6,
) -> list[float]:
    """The 95 % interval of the geometric mean, over ``phases``, of ``statistic`` top / bottom.

    Each phase is a pair of run lists (``top``, ``bottom``); each resample
    draws as many runs as there are from each list of each phase, with
    replacement (a bootstrap over runs: the runs, not the requests, are what
    the machine's drift moves). Where the interval spans a goal, one
    benchmark run cannot decide it.
    """
    draw = random.Random(seed)

    def resampled() -> float:
        ratios = [
            statistic(draw.choices(top, k=len(top)))
            / statistic(draw.choices(bottom, k=len(bottom)))
            for top, bottom in phases
        ]
        return math.prod(ratios) ** (1 / len(ratios))

    ratios = sorted(resampled() for _ in range(resamples))
    return [ratios[int(0.025 * (resamples - 1))], ratios[int(0.975 * (resamples - 1))]]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server process (and its workers) on loopback, started in its own session."""

    def __init__(
        self,
        label: str,
        command: Sequence[str],
        *,
        ready_url: str,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        self.label = label
        self.command = list(command)
        self.ready_url = ready_url
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Seconds until ``ready_url`` answers 200; raises if the process dies or times out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.process.returncode}: {self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.ready_url, timeout=2) as response,
            ):
                if response.status == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} not ready after {timeout_s:.0f} s: {self.log_tail()}")

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far: ``server`` (all its processes), ``shadow`` (its
        shadows' processes, which run ``mlcycle.serve._shadow_child``)."""
        import psutil

        seconds = {"server": 0.0, "shadow": 0.0}
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.process.pid)
            for process in [parent, *parent.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    seconds["server"] += times.user + times.system
                    if any("mlcycle.serve._shadow_child" in part for part in process.cmdline()):
                        seconds["shadow"] += times.user + times.system
        return seconds

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server printed."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the server's session (its workers too), SIGKILL if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[Sequence[Server]]:
    """Stop every server on the way out, whatever happened."""
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus ``/metrics`` page, keyed ``name{label="value",...}``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):  # a timestamp, not a count
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples
