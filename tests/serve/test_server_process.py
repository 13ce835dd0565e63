"""``mlcycle serve`` as a real process: workers, shared metrics, hot changes, storms, exposure."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import free_port
from tests.serve.conftest import echo_model, rows
from tests.serve.models import Slow
from typer.testing import CliRunner

from mlcycle.cli._app import app
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.slow
PREDICT = "/v1/models/echo:predict"
BIKES = "/v1/models/bikes:predict"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    settings = Settings(home=tmp_path, actor="ana", registry=RegistrySettings(guarded_aliases=()))
    with Workspace.open(settings) as workspace:
        for offset in (0.0, 1000.0):
            model, frame = echo_model(offset)
            workspace.registry.register("echo", model, input_example=frame)
        workspace.registry.promote("echo", 1, to="production")
        example = pd.DataFrame({"id": [1.0, 2.0]})
        workspace.registry.register("slow", Slow(0.2), input_example=example, flavor="pyfunc")
    (tmp_path / "mlcycle.toml").write_text("[registry]\nguarded_aliases = []\n")
    return tmp_path


def command(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mlcycle", "--home", str(home), "serve", *args]


def start(
    home: Path, target: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``mlcycle serve`` until ready: its process and URL (killed if it never is ready)."""
    port = free_port()
    log = home / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command(home, target, "--port", str(port), *args),
            env={**os.environ, "MLCYCLE_SERVE__POLL_INTERVAL_S": "0.2", **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server was not ready in 120 s"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    except BaseException:
        process.kill()
        process.wait(timeout=60)
        raise


@contextmanager
def serving(
    home: Path, target: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run ``mlcycle serve`` until ready; yields its URL; SIGTERM on the way out."""
    process, url = start(home, target, *args, env=env)
    try:
        yield url
        assert process.poll() is None, "the server died while serving"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def fresh(url: str, ids: list[float], *, path: str = PREDICT) -> httpx.Response:
    """One request on a new connection, so the kernel may hand it to any worker."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post(path, json={"instances": rows(*ids)})


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_without_a_token_a_public_address_is_refused(home: Path) -> None:
    done = subprocess.run(
        command(home, "models:/echo@production", "--host", "0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "refusing to serve 0.0.0.0 without a token" in done.stderr


def test_an_unknown_model_or_an_empty_token_file_stops_before_binding(home: Path) -> None:
    unknown = subprocess.run(
        command(home, "models:/nope@production"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    (home / "token").write_text("\n")
    empty = subprocess.run(
        command(home, "models:/echo@production", "--token-file", str(home / "token")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 1
    assert "nope" in unknown.stderr
    assert empty.returncode == 1
    assert "is empty" in empty.stderr


def test_two_workers_count_every_request_once(home: Path) -> None:
    with serving(home, "models:/echo@production", "--workers", "2") as url:
        answers = [fresh(url, [n]) for n in range(30)]
        counted = metric(url, "mlcycle_serve_requests_total", status="200", version="1")
        batches = metric(url, "mlcycle_serve_batch_rows_sum", version="1")
    assert all(answer.status_code == 200 for answer in answers)
    assert counted == 30
    assert batches == 30


def segments_received(sock: socket.socket) -> int:
    """TCP segments with data this socket has received (Linux's ``tcpi_data_segs_in``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


_DATA_SEGS_IN = 152  # the offset of tcpi_data_segs_in in struct tcp_info (Linux 4.6 on)


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's TCP_INFO")
def test_each_answer_leaves_the_server_in_one_tcp_segment(home: Path) -> None:
    body = json.dumps({"instances": rows(1.0)})
    asks = [
        ("POST", PREDICT, body),
        ("POST", PREDICT, "{not json"),
        ("POST", "/v1/models/nope:predict", body),
        ("GET", "/v2/health/ready", None),
        ("POST", PREDICT, body),
    ]
    with serving(home, "models:/echo@production") as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        statuses = []
        for method, path, data in asks:
            headers = {"content-type": "application/json"} if data else {}
            connection.request(method, path, body=data, headers=headers)
            answer = connection.getresponse()
            answer.read()
            statuses.append(answer.status)
        assert connection.sock is not None
        received = segments_received(connection.sock)
        connection.close()
    assert statuses == [200, 400, 404, 200, 200]
    assert received == len(asks)  # head and body together: one segment each


def test_an_answer_before_the_server_closes_the_connection_arrives_whole(home: Path) -> None:
    body = json.dumps({"instances": rows(1.0)}).encode()
    with serving(home, "models:/echo@production") as url:
        port = int(url.rsplit(":", 1)[1])
        closing = (
            b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
            b"content-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        malformed = b"NOT HTTP AT ALL\r\n\r\n"
        answers = []
        for request in (closing, malformed):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(request)
                answers.append(b"".join(iter(lambda s=sock: s.recv(65536), b"")))  # to EOF
    head, _, rest = answers[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answers[0]
    assert json.loads(rest)["predictions"] == [1.0]
    assert answers[1].startswith(b"HTTP/1.1 400"), answers[1]
    assert answers[1].endswith(b"Invalid HTTP request received."), answers[1]


def test_an_alias_move_reaches_every_worker_under_load_without_a_failure(home: Path) -> None:
    failures: list[str] = []
    versions: list[int] = []
    stop = threading.Event()

    def load(url: str) -> None:
        while not stop.is_set():
            try:
                answer = fresh(url, [7])
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if answer.status_code != 200:
                failures.append(answer.text)
                continue
            versions.append(answer.json()["version"])

    with serving(home, "models:/echo@production", "--workers", "2") as url:
        threads = [threading.Thread(target=load, args=(url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        settings = Settings(home=home, actor="ana")
        with Workspace.open(settings) as workspace:
            workspace.registry.promote("echo", 2, to="production")
        deadline = time.monotonic() + 30  # a guard against hanging, not the 5 s promise
        while time.monotonic() < deadline and not all(
            fresh(url, [1]).json()["version"] == 2 for _ in range(12)
        ):
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        after = [fresh(url, [1]).json() for _ in range(12)]
    assert failures == []
    assert 1 in versions
    assert {body["version"] for body in after} == {2}
    assert {round(body["predictions"][0]) for body in after} == {1001}


def test_a_storm_at_ten_times_the_limit_is_shed_and_the_server_recovers(home: Path) -> None:
    env = {"MLCYCLE_SERVE__MAX_INFLIGHT": "4", "MLCYCLE_REGISTRY__TRUSTED_PUBLISHERS": '["ana"]'}
    with serving(home, "models:/slow/1", "--workers", "2", env=env) as url:
        results: list[int] = []

        def ask() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                answer = client.post("/v1/models/slow:predict", json={"instances": [{"id": 1.0}]})
                results.append(answer.status_code)

        storm = [threading.Thread(target=ask) for _ in range(80)]
        for thread in storm:
            thread.start()
        for thread in storm:
            thread.join()
        shed = metric(url, "mlcycle_serve_shed_total", reason="overload")
        with httpx.Client(base_url=url, timeout=30) as client:
            recovered = client.post("/v1/models/slow:predict", json={"instances": [{"id": 3.0}]})
    assert set(results) <= {200, 503}
    assert results.count(503) > 0
    assert results.count(200) > 0
    assert shed == results.count(503)
    assert recovered.status_code == 200


def deploy(home: Path, *args: str) -> str:
    """Run ``mlcycle deploy`` (or ``deployments ...``) in-process; its output."""
    result = CliRunner().invoke(app, ["--home", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_stored_deployment_follows_changes_and_removal_under_load(home: Path) -> None:
    deploy(home, "deploy", "bikes", "--model", "echo@production", "--canary", "echo/2=10")
    failures: list[str] = []
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def load(url: str) -> None:
        while not stop.is_set():
            try:
                answer = fresh(url, [7], path=BIKES)
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if answer.status_code != 200:
                failures.append(answer.text)
                continue
            answers.append((answer.json()["version"], answer.json()["variant"]))

    def everyone(url: str, check: Callable[[httpx.Response], bool]) -> bool:
        return all(check(fresh(url, [1], path=BIKES)) for _ in range(12))

    with serving(home, "bikes", "--workers", "2") as url:
        threads = [threading.Thread(target=load, args=(url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        deploy(home, "deploy", "bikes", "--model", "echo/2", "--shadow", "echo@production")
        deadline = time.monotonic() + 30  # a guard against hanging, not the 5 s promise
        while time.monotonic() < deadline and not everyone(
            url,
            lambda answer: answer.json()["variant"] == "primary" and answer.json()["version"] == 2,
        ):
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        changed = [fresh(url, [1], path=BIKES).json() for _ in range(12)]
        loads = metric(url, "mlcycle_serve_model_loads_total", variant="shadow")
        deploy(home, "deployments", "remove", "bikes")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not everyone(
            url, lambda answer: answer.status_code == 404
        ):
            time.sleep(0.2)
        removed = [fresh(url, [1], path=BIKES) for _ in range(12)]
        ready = [httpx.get(f"{url}/v2/health/ready", timeout=10).status_code for _ in range(12)]
    assert failures == []
    assert {variant for _, variant in answers} >= {"primary", "canary"}
    assert {(body["version"], body["variant"]) for body in changed} == {(2, "primary")}
    assert {round(body["predictions"][0]) for body in changed} == {1001}
    assert loads == 2  # each worker loaded the shadow once
    assert {answer.status_code for answer in removed} == {404}
    assert "was removed from the store" in removed[0].json()["error"]
    assert set(ready) == {503}
