"""``GatheringTransport`` over a real uvloop TCP connection on loopback: what the peer reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvloop

from mlcycle.serve._http import GatheringTransport


class Peer:
    """The other end: each chunk as it was read, and whether the connection ended."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended = asyncio.Event()
        self._read = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                self.chunks.append(chunk)
                self._read.set()
        except ConnectionError:  # an aborted connection may end with a reset
            pass
        finally:
            self.ended.set()
            writer.close()

    async def received(self, size: int) -> None:
        """Wait until the peer has read ``size`` bytes in all."""
        while sum(map(len, self.chunks)) < size:
            self._read.clear()
            await asyncio.wait_for(self._read.wait(), 10)


Scenario = Callable[[GatheringTransport, Peer], Awaitable[None]]


def exchange(scenario: Scenario) -> list[bytes]:
    """Run ``scenario`` on a wrapped client transport until the peer's end closes; its reads.

    The peer reads each chunk as it comes, so writes sent apart arrive as chunks apart
    when the scenario waits for the first to be read before the next.
    """

    async def main() -> list[bytes]:
        peer = Peer()
        server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        try:
            await scenario(GatheringTransport(transport, loop), peer)
            await asyncio.wait_for(peer.ended.wait(), 10)  # every scenario closes or aborts
        finally:
            transport.abort()
            server.close()
            await server.wait_closed()
        return peer.chunks

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def test_the_writes_of_one_round_reach_the_peer_as_one() -> None:
    async def scenario(transport: GatheringTransport, peer: Peer) -> None:
        transport.write(b"head\r\n\r\n")
        transport.writelines([b"bo", memoryview(b"dy")])
        assert transport.get_write_buffer_size() == 12  # waiting here, not yet sent
        await peer.received(12)
        assert transport.get_write_buffer_size() == 0
        transport.write(b"next")
        transport.close()

    assert exchange(scenario) == [b"head\r\n\r\nbody", b"next"]


def test_close_and_write_eof_send_what_waits_first() -> None:
    async def closing(transport: GatheringTransport, _peer: Peer) -> None:
        transport.write(b"last words")
        transport.close()
        assert transport.is_closing()

    async def ending(transport: GatheringTransport, _peer: Peer) -> None:
        assert transport.can_write_eof()
        transport.write(b"before eof")
        transport.write_eof()

    assert exchange(closing) == [b"last words"]
    assert exchange(ending) == [b"before eof"]


def test_abort_drops_what_waits() -> None:
    async def scenario(transport: GatheringTransport, peer: Peer) -> None:
        transport.write(b"sent")
        await peer.received(4)
        transport.write(b"dropped")
        transport.abort()

    assert b"".join(exchange(scenario)) == b"sent"


def test_everything_else_is_the_wrapped_transports() -> None:
    async def scenario(transport: GatheringTransport, _peer: Peer) -> None:
        assert transport.get_extra_info("peername")[0] == "127.0.0.1"
        assert transport.get_extra_info("no such thing", "default") == "default"
        transport.pause_reading()
        assert not transport.is_reading()
        transport.resume_reading()
        assert transport.is_reading()
        transport.set_write_buffer_limits(high=4096, low=1024)
        assert transport.get_write_buffer_limits() == (1024, 4096)
        protocol = asyncio.Protocol()
        transport.set_protocol(protocol)
        assert transport.get_protocol() is protocol
        transport.close()

    assert exchange(scenario) == []
