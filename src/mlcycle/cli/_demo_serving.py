"""The demo's production: a real ``mlcycle serve`` in its own process, asked a day at a time.

``DemoServer`` starts ``mlcycle serve DEPLOYMENT`` on a free loopback port
with the demo's simulated clock (so the prediction log stamps the simulated
day), waits for readiness, sends a day's rows in one request (or a few of at
most ``REQUEST_ROWS``) and its labels to the ``:feedback`` route once they are
known, and stops the server with SIGTERM, which writes out its prediction log.
When the training loop changes the deployment (a promotion, a rollback),
``follow`` waits until the server answers with what the store says.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.errors import MlcycleError

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    import httpx

    from mlcycle import Workspace
    from mlcycle.settings import Settings

__all__ = ["REQUEST_ROWS", "Answer", "DemoServer"]

REQUEST_ROWS = 5_000
"""Rows per request at most: a day of a larger table goes as a few requests."""
_READY_S = 120.0
_STOP_S = 60.0
_FOLLOW_S = 60.0
_POLL_S = 0.1


@dataclass(frozen=True)
class Answer:
    """One request's answer: its id (for the labels), the predictions, who answered, how fast."""

    request_id: str
    predictions: list[Any]  # Any: numbers or class labels
    version: int
    latency_ms: float


class DemoServer:
    """``mlcycle serve`` for one deployment in a child process, on a free loopback port."""

    def __init__(self, settings: Settings, deployment: str) -> None:
        self.settings = settings
        self.deployment = deployment
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = settings.workspace_dir / "demo-serve.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self.inputs: list[str] = []

    def __enter__(self) -> DemoServer:
        import httpx

        env = {
            **os.environ,
            "MLCYCLE_CLOCK__MODE": self.settings.clock.mode,
            # Trials and promotions reach the server within a tenth of a second, not one.
            "MLCYCLE_SERVE__POLL_INTERVAL_S": str(_POLL_S),
        }
        with self.log_path.open("wb") as output:
            self._process = subprocess.Popen(
                self._command(), stdout=output, stderr=subprocess.STDOUT, env=env
            )
        try:
            self._client = httpx.Client(base_url=self.url, timeout=120)
            self._wait_ready()
            found = self._client.get(f"/v2/models/{self.deployment}").json()
            self.inputs = [spec["name"] for spec in found["inputs"]]
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def predict(self, rows: list[dict[str, Any]]) -> list[Answer]:  # Any: JSON values
        """``rows`` in requests of at most ``REQUEST_ROWS``; the answers in order."""
        answers = []
        for first in range(0, len(rows), REQUEST_ROWS):
            began = time.perf_counter()
            body = self._post(
                f"/v1/models/{self.deployment}:predict",
                {"instances": rows[first : first + REQUEST_ROWS]},
            )
            answers.append(
                Answer(
                    request_id=body["request_id"],
                    predictions=body["predictions"],
                    version=int(body["version"]),
                    latency_ms=(time.perf_counter() - began) * 1000,
                )
            )
        return answers

    def label(self, labels: list[dict[str, Any]]) -> int:  # Any: JSON values
        """Send ``labels`` (``request_id``, ``row_index``, ``label``); how many were recorded."""
        body = self._post(f"/v1/models/{self.deployment}:feedback", {"labels": labels})
        return int(body["recorded"])

    def follow(self, workspace: Workspace) -> None:
        """Wait until the server answers with the versions the stored deployment says.

        (A shadow is not visible over HTTP; the server takes it up within a poll,
        ``_POLL_S``, far less than a simulated day takes.)
        """
        deployment = workspace.deployments.get(self.deployment)
        answering = {
            str(workspace.registry.get(variant.model).version)
            for variant in deployment.variants
            if not variant.shadow
        }
        client = self._checked_client()
        deadline = time.monotonic() + _FOLLOW_S
        while time.monotonic() < deadline:
            found = client.get(f"/v2/models/{self.deployment}").json()
            if set(found["versions"]) == answering:
                return
            time.sleep(_POLL_S)
        raise MlcycleError(
            f"the demo's server did not take up deployment '{self.deployment}' in "
            f"{_FOLLOW_S:.0f}s; its log:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM, so the server answers what is queued and writes out its prediction log."""
        if self._client is not None:
            self._client.close()
            self._client = None
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise MlcycleError(
                f"the demo's server did not stop in {_STOP_S:.0f}s; its log:\n"
                f"{_tail(self.log_path)}"
            ) from None

    def _command(self) -> list[str]:
        settings = self.settings
        command = [sys.executable, "-m", "mlcycle", "--home", str(settings.home)]
        if settings.store.metadata_url is not None:
            command += ["--metadata-url", settings.store.metadata_url]
        if settings.store.artifacts_url is not None:
            command += ["--artifacts-url", settings.store.artifacts_url]
        return [*command, "serve", self.deployment, "--port", str(self.port)]

    def _checked_client(self) -> httpx.Client:
        if self._client is None:
            raise MlcycleError("the demo's server is not running")
        return self._client

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:  # Any: JSON
        response = self._checked_client().post(path, json=body)
        if response.status_code != 200:
            raise MlcycleError(
                f"the demo's server answered {response.status_code} to {path}: {response.text}"
            )
        answer: dict[str, Any] = response.json()  # Any: JSON
        return answer

    def _wait_ready(self) -> None:
        import httpx

        process, client = self._process, self._checked_client()
        assert process is not None, "the server was started"
        deadline = time.monotonic() + _READY_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise MlcycleError(
                    f"the demo's server exited with code {process.returncode} before it was "
                    f"ready:\n{_tail(self.log_path)}"
                )
            try:
                if client.get("/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(_POLL_S)
        raise MlcycleError(
            f"the demo's server was not ready in {_READY_S:.0f}s; its log:\n{_tail(self.log_path)}"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
