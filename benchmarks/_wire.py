"""Latency on the wire: each request's first segment in to its answer's first segment out.

wrk times a request from its own write to its own read. On this 2-core machine
the load generator shares the cores with the server and, in the shadow phase,
with the shadow's process: how long wrk waits for a core before it reads an
answer is part of its figure, and a client on another machine would not see it.
A packet capture of loopback (``tcpdump``, the Debian package) stamps each
segment as the kernel passes it on, so the time from a request's first data
segment to its answer's first data segment is the server's own latency, with
the client's scheduling left out on both ends. wrk keeps one request in flight
per connection, so the client's port pairs each answer with its request.

The capture keeps only segments that carry data (no bare ACKs) and their first
128 bytes; ``tcpdump`` itself runs beside the server in both halves of a
comparison alike.
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

TCPDUMP = shutil.which("tcpdump")
_NANO_MAGIC = 0xA1B23C4D
_MICRO_MAGIC = 0xA1B2C3D4
_ETHERNET = 1
_ETHERNET_HEADER = 14
# Segments carrying data: the IP length less the IP and TCP headers is not 0.
_WITH_DATA = "(((ip[2:2] - ((ip[0] & 0xf) << 2)) - ((tcp[12] & 0xf0) >> 2)) != 0)"
_START_S = 10.0
_BLOCK_S = 1.5


class Capture:
    """A running ``tcpdump`` of one loopback port; ``stop`` ends it and reads the file.

    As a context manager it stops on the way out and keeps what ``stop`` gave in ``seen``.
    """

    seen: dict[str, Any]

    def __init__(self, port: int, path: Path) -> None:
        if TCPDUMP is None:
            raise RuntimeError("tcpdump is not installed: apt-get install tcpdump")
        self.port = port
        self.path = path
        self._process = subprocess.Popen(
            [
                TCPDUMP,
                "-i",
                "lo",
                "-n",
                "-s",
                "128",
                "-B",
                "65536",
                "--time-stamp-precision=nano",
                "-w",
                str(path),
                f"tcp port {port} and {_WITH_DATA}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        """Return once tcpdump says it listens (it prints that to stderr first)."""
        assert self._process.stderr is not None
        deadline = time.monotonic() + _START_S
        while time.monotonic() < deadline:
            line = self._process.stderr.readline()
            if "listening on" in line:
                return
            if not line and self._process.poll() is not None:
                break
        self._process.kill()
        raise RuntimeError(f"tcpdump did not start capturing port {self.port}")

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *_: object) -> None:
        self.seen = self.stop()

    def stop(self) -> dict[str, Any]:
        """Stop capturing; the latencies seen (``histogram_us`` as wrk's) and what was dropped.

        The kernel hands tcpdump its packets in blocks, the last one once a
        second has passed: stopping sooner would lose it.
        """
        time.sleep(_BLOCK_S)
        self._process.send_signal(signal.SIGINT)
        _, err = self._process.communicate(timeout=60)
        dropped = sum(
            int(line.split()[0])
            for line in err.splitlines()
            if "dropped by" in line and line.split()[0].isdigit()
        )
        latencies = wire_latencies(self.path.read_bytes(), self.port)
        self.path.unlink(missing_ok=True)
        counts = Counter(round(seconds * 1e6) for seconds in latencies)
        return {
            "requests": len(latencies),
            "dropped": dropped,
            "histogram_us": sorted(counts.items()),
        }


def wire_latencies(pcap: bytes, port: int) -> list[float]:
    """Seconds from each request's first data segment to its answer's, from a pcap file's bytes.

    ``port`` is the server's. A request is keyed by its client port; an answer
    whose request the capture did not see (it began before) is left out, and so
    are the further segments of a request or an answer.
    """
    if len(pcap) < 24:
        return []
    (magic,) = struct.unpack_from("<I", pcap, 0)
    if magic not in (_NANO_MAGIC, _MICRO_MAGIC):
        raise ValueError(f"not a little-endian pcap file (magic {magic:#x})")
    scale = 1e-9 if magic == _NANO_MAGIC else 1e-6
    (linktype,) = struct.unpack_from("<I", pcap, 20)
    if linktype != _ETHERNET:
        raise ValueError(f"link type {linktype}, expected Ethernet (1) as loopback gives")
    pending: dict[int, float] = {}
    latencies: list[float] = []
    offset = 24
    while offset + 16 <= len(pcap):
        seconds, fraction, kept, _ = struct.unpack_from("<IIII", pcap, offset)
        offset += 16
        start = offset + _ETHERNET_HEADER
        offset += kept
        if pcap[start] >> 4 != 4:  # IPv4 only: the benchmark serves 127.0.0.1
            continue
        ip_header = (pcap[start] & 0xF) * 4
        tcp = start + ip_header
        source, target = struct.unpack_from("!HH", pcap, tcp)
        moment = seconds + fraction * scale
        if target == port:
            pending.setdefault(source, moment)
        elif source == port and target in pending:
            latencies.append(moment - pending.pop(target))
    return latencies
