"""The serving benchmark's latency on the wire: a pcap's requests paired with their answers."""

from __future__ import annotations

import http.server
import shutil
import struct
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _wire import Capture, wire_latencies

SERVER = 8080


def _packet(seconds: float, source: int, target: int, payload: bytes) -> bytes:
    """One Ethernet/IPv4/TCP packet with a nanosecond pcap record header."""
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\1"
    )
    tcp = struct.pack("!HHIIBBHHH", source, target, 0, 0, 5 << 4, 0x18, 65535, 0, 0)
    frame = bytes(14) + ip + tcp + payload
    whole, fraction = divmod(round(seconds * 1e9), 10**9)
    return struct.pack("<IIII", whole, fraction, len(frame), len(frame)) + frame


def _pcap(*packets: bytes) -> bytes:
    header = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 128, 1)
    return header + b"".join(packets)


def test_each_answer_is_paired_with_its_own_request_by_the_client_port() -> None:
    pcap = _pcap(
        _packet(1.000_000, 40001, SERVER, b"POST /a"),
        _packet(1.000_050, 40001, SERVER, b"rest of the body"),  # a request's second segment
        _packet(1.000_100, 40002, SERVER, b"POST /b"),
        _packet(1.000_400, SERVER, 40002, b"HTTP/1.1 200"),
        _packet(1.001_000, SERVER, 40001, b"HTTP/1.1 200"),
        _packet(1.001_010, SERVER, 40001, b"rest of the answer"),  # an answer's second segment
        _packet(1.002_000, SERVER, 40003, b"HTTP/1.1 200"),  # its request came before the capture
        _packet(1.003_000, 40002, SERVER, b"POST /c"),  # the connection's next request
        _packet(1.003_250, SERVER, 40002, b"HTTP/1.1 200"),
    )
    latencies = wire_latencies(pcap, SERVER)
    assert latencies == pytest.approx([0.000_300, 0.001_000, 0.000_250], abs=1e-9)


def test_a_file_that_is_not_a_pcap_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not a little-endian pcap file"):
        wire_latencies(b"\x00" * 64, SERVER)
    assert wire_latencies(b"", SERVER) == []


@pytest.mark.slow
def test_a_real_capture_times_each_request_a_loopback_server_answers(tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump (the Debian package) is not installed")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        try:
            capture = Capture(port, tmp_path / "wire.pcap")
        except RuntimeError as error:  # no permission to capture here
            pytest.skip(str(error))
        with capture:  # stops on the way out, keeping what it saw
            for _ in range(5):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                    assert answer.read() == b"ok"
        seen = capture.seen
    finally:
        server.shutdown()
        server.server_close()
    assert seen["requests"] == 5
    assert seen["dropped"] == 0
    assert sum(count for _, count in seen["histogram_us"]) == 5
    assert all(0 < latency < 1_000_000 for latency, _ in seen["histogram_us"])
    assert not (tmp_path / "wire.pcap").exists()
