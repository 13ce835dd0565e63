"""HTTP/1.1 for the server: uvicorn's httptools protocol, each response sent in one write.

uvicorn writes a response's head when the app sends ``http.response.start``
and its body when it sends ``http.response.body``, and uvloop sends each
write at once: two ``write`` calls to the kernel and two TCP segments a
response, each waking the client. ``HttpProtocol`` hands uvicorn a transport
that gathers what is written while the event loop runs one round of
callbacks and sends it as one write at the start of the next (``call_soon``),
so a head and its body leave together. Measured on the serving benchmark's
single-row requests, one worker: 11 to 18 % more requests a second at c=32
and 9 to 23 µs less CPU a request at half that rate
(``docs/serving-benchmark-history.md``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HttpProtocol"]


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a transport that sends each round's writes as one.

    Pass the class as ``uvicorn.Config(http=HttpProtocol)``, or name it to uvicorn's command
    line as ``--http mlcycle.serve:HttpProtocol``.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection, wrapped so that the writes of one loop round go together."""
        super().connection_made(GatheringTransport(transport, self.loop))


class GatheringTransport(asyncio.Transport):
    """A transport whose writes wait for the end of the loop's round, then go as one.

    Closing (or ending the writing side) sends what waits first; aborting drops
    it, as a transport's own buffer is dropped. Everything else is the wrapped
    transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; the first write of a round asks the loop to send the round's writes."""
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._send)
        else:
            self._pending.append(data)

    def writelines(self, list_of_data: Any) -> None:  # Any: asyncio's own signature
        """Queue each of ``list_of_data`` (see ``write``)."""
        for data in list_of_data:
            self.write(data)

    def _send(self) -> None:
        pending, self._pending = self._pending, None
        if not pending or self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Send what waits, then close."""
        self._send()
        self._transport.close()

    def abort(self) -> None:
        """Close at once; what waits is dropped (nothing is sent once closing)."""
        self._transport.abort()

    def write_eof(self) -> None:
        """Send what waits, then end the writing side."""
        self._send()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:  # Any: asyncio's own
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        """What the wrapped transport holds unsent, and what waits here."""
        waiting = 0 if self._pending is None else sum(len(data) for data in self._pending)
        return self._transport.get_write_buffer_size() + waiting

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()
