"""The demo's last act: serve the promoted model for real and replay later hours against it.

It starts ``mlcycle serve models:/bike-demand@production`` as its own process
on a free loopback port, waits for readiness, then sends the test months
(every hour from ``SPLIT_DATE`` on, which no model trained on) as v1
requests of ``BATCH_ROWS`` rows, ``CONCURRENCY`` at a time, as a client
scoring its backlog would. It reports throughput, latency and the error
against the true counts, stops the server with SIGTERM (which writes out
its prediction log), and counts the replayed predictions in that log.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from mlcycle.cli._demo_names import DATASET, MODEL, SPLIT_DATE, TIME_COLUMN
from mlcycle.errors import MlcycleError

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from mlcycle import Workspace
    from mlcycle.settings import Settings
    from mlcycle.store import TableArea

__all__ = ["BATCH_ROWS", "CONCURRENCY", "Replay", "serve_and_replay"]

BATCH_ROWS = 50
CONCURRENCY = 8
_READY_S = 120.0
_STOP_S = 60.0


@dataclass(frozen=True)
class Replay:
    """What replaying the test months against the server gave."""

    url: str
    version: int
    rows: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rmse: float
    logged: int

    def lines(self) -> list[str]:
        """The replay for people."""
        return [
            f"served {MODEL}/{self.version} (models:/{MODEL}@production) at {self.url}",
            (
                f"replayed {self.rows:,} hours from {SPLIT_DATE} on as {self.requests} requests "
                f"of up to {BATCH_ROWS} rows, {CONCURRENCY} at a time: {self.seconds:.2f}s, "
                f"{self.rows / self.seconds:,.0f} rows/s, latency p50 {self.p50_ms:.1f} ms, "
                f"p99 {self.p99_ms:.1f} ms; rmse {self.rmse:.1f} against the true counts"
            ),
            (
                f"the prediction log holds {self.logged:,} of the {self.rows:,} replayed "
                f'predictions (mc.serve.predictions("{MODEL}")); the server stopped cleanly'
            ),
        ]


def serve_and_replay(workspace: Workspace, settings: Settings) -> Replay:
    """Serve production in a child process, replay the test months, stop it, read the log."""
    import numpy as np

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = settings.workspace_dir / "demo-serve.log"
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            _command(settings, port), stdout=output, stderr=subprocess.STDOUT
        )
    started = datetime.now(UTC)
    try:
        _wait_ready(url, process, log_path)
        records, truth = _later_hours(workspace, url)
        began = time.perf_counter()
        answers = asyncio.run(_replay(url, records))
        seconds = time.perf_counter() - began
    finally:
        _stop(process, log_path)
    predictions = np.concatenate([np.asarray(a["predictions"], dtype=float) for a in answers])
    latencies = np.array([a["latency_ms"] for a in answers])
    ids = {a["request_id"] for a in answers}
    return Replay(
        url=url,
        version=int(answers[0]["version"]),
        rows=len(records),
        requests=len(answers),
        seconds=seconds,
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        rmse=float(np.sqrt(np.mean((predictions - truth) ** 2))),
        logged=_logged(workspace, settings, ids, since=started),
    )


def _command(settings: Settings, port: int) -> list[str]:
    command = [sys.executable, "-m", "mlcycle", "--home", str(settings.home)]
    if settings.store.metadata_url is not None:
        command += ["--metadata-url", settings.store.metadata_url]
    if settings.store.artifacts_url is not None:
        command += ["--artifacts-url", settings.store.artifacts_url]
    return [*command, "serve", f"models:/{MODEL}@production", "--port", str(port)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + _READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MlcycleError(
                f"the demo's server exited with code {process.returncode} before it was "
                f"ready:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise MlcycleError(
        f"the demo's server was not ready in {_READY_S:.0f}s; its log:\n{_tail(log_path)}"
    )


def _later_hours(workspace: Workspace, url: str) -> tuple[list[dict[str, Any]], Any]:
    """The hours no model trained on, as v1 records of the served inputs, and their counts."""
    import httpx
    import pandas as pd

    inputs = httpx.get(f"{url}/v2/models/{MODEL}", timeout=10).json()["inputs"]
    names = [spec["name"] for spec in inputs]
    frame = workspace.data.load(f"{DATASET}@latest")
    later = frame[pd.to_datetime(frame[TIME_COLUMN]) >= pd.Timestamp(SPLIT_DATE)]
    records = cast("list[dict[str, Any]]", later[names].to_dict("records"))  # Any: JSON values
    return records, later["cnt"].to_numpy(dtype=float)


async def _replay(url: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:  # Any: JSON
    """``records`` sent ``BATCH_ROWS`` a request, ``CONCURRENCY`` in flight; answers in order."""
    import httpx

    chunks = [records[i : i + BATCH_ROWS] for i in range(0, len(records), BATCH_ROWS)]
    answers: list[dict[str, Any]] = [{} for _ in chunks]
    queue = iter(range(len(chunks)))
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for index in queue:
                answers[index] = await _ask(client, chunks[index])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return answers


async def _ask(client: httpx.AsyncClient, chunk: list[dict[str, Any]]) -> dict[str, Any]:
    began = time.perf_counter()
    response = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": chunk})
    if response.status_code != 200:
        raise MlcycleError(f"the demo's server answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()  # Any: JSON
    answer["latency_ms"] = (time.perf_counter() - began) * 1000
    return answer


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM, so the server answers what is queued and writes out its prediction log."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise MlcycleError(
            f"the demo's server did not stop in {_STOP_S:.0f}s; its log:\n{_tail(log_path)}"
        ) from None


def _logged(workspace: Workspace, settings: Settings, ids: set[str], *, since: datetime) -> int:
    """How many of the replayed predictions (by request id) the prediction log holds."""
    from mlcycle.serve import read_predictions, spool_dir

    tables = cast("TableArea", workspace.artifacts)  # every artifact store has a table area
    table = read_predictions(
        spool_dir=spool_dir(settings), tables=tables, deployment=MODEL, since=since
    )
    return sum(1 for request in table.column("request_id").to_pylist() if request in ids)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
