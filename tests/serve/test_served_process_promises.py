"""What a running ``mlcycle serve`` promises beyond answering: where it listens, what it
counts, what a SIGKILL may cost, and that a NaN in a binary tensor is refused by name."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tests.serve.conftest import rows
from tests.serve.test_server_process import PREDICT, home, metric, serving, start
from tritonclient.utils import InferenceServerException

import mlcycle as mc

__all__ = ["home"]  # the fixture, shared with test_server_process

pytestmark = pytest.mark.slow


def outward_address() -> str | None:
    """This machine's address on its first non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_by_default_it_listens_on_loopback_only(home: Path) -> None:
    outward = outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    with serving(home, "models:/echo@production") as url:
        port = int(url.rsplit(":", 1)[1])
        assert reachable("127.0.0.1", port)
        assert not reachable(outward, port), f"port {port} answers on {outward}"


def test_no_auth_serves_a_public_address_without_a_token(home: Path) -> None:
    outward = outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    with serving(home, "models:/echo@production", "--host", "0.0.0.0", "--no-auth") as url:
        port = int(url.rsplit(":", 1)[1])
        answer = httpx.post(
            f"http://{outward}:{port}{PREDICT}", json={"instances": rows(4.0)}, timeout=30
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [4.0]


def test_metrics_count_errors_latency_and_predicted_values(home: Path) -> None:
    with serving(home, "models:/echo@production") as url, httpx.Client(base_url=url) as client:
        for n in range(5):
            assert client.post(PREDICT, json={"instances": rows(n, n + 1)}).status_code == 200
        for _ in range(3):
            bad = client.post(PREDICT, json={"instances": [{"id": "x", "x": 0}]})
            assert bad.status_code == 422
        errors = metric(url, "mlcycle_serve_errors_total", status="422")
        latency_count = metric(url, "mlcycle_serve_request_seconds_count", version="1")
        values_count = metric(url, "mlcycle_serve_prediction_value_count", version="1")
        values_sum = metric(url, "mlcycle_serve_prediction_value_sum", version="1")
    assert errors == 3
    assert latency_count == 5
    assert values_count == 10
    assert values_sum == pytest.approx(sum(n + n + 1 for n in range(5)))


def test_a_sigkilled_server_loses_at_most_the_last_second_of_its_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process, url = start(home, "models:/echo@production")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            sent = [float(n) for n in range(40)]
            for n in sent:
                assert client.post(PREDICT, json={"instances": rows(n)}).status_code == 200
        time.sleep(1.5)  # past the log's flush interval (0.2 s) and its 1 s promise
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    monkeypatch.chdir(home)
    try:
        logged = mc.serve.predictions("echo")  # the spool the killed process left, read as is
    finally:
        mc.close()
    assert sorted(logged["inputs.id"]) == sent


def test_a_nan_in_a_binary_tensor_is_refused_naming_the_column(home: Path) -> None:
    with serving(home, "models:/echo@production") as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        ids = triton.InferInput("id", [2], "FP64")
        ids.set_data_from_numpy(np.array([1.0, np.nan]), binary_data=True)
        xs = triton.InferInput("x", [2], "FP64")
        xs.set_data_from_numpy(np.array([0.0, 0.5]), binary_data=True)
        with pytest.raises(InferenceServerException, match="'id'") as refused:
            client.infer("echo", [ids, xs])
        assert "nan" in str(refused.value).lower() or "missing" in str(refused.value).lower()
        ok = triton.InferInput("id", [2], "FP64")
        ok.set_data_from_numpy(np.array([1.0, 2.0]), binary_data=True)
        result = client.infer("echo", [ok, xs])
    np.testing.assert_allclose(result.as_numpy("prediction"), [1.0, 2.0])
