"""Real receivers on loopback for alert notifications: an HTTP webhook and an SMTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Webhook:
    """What a webhook receiver got, and how it answers: ``status``, or held until ``release``."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alerts"


@contextmanager
def webhook_receiver(port: int = 0, *, status: int = 200) -> Iterator[Webhook]:
    """A real HTTP server on loopback recording each JSON body it is POSTed."""
    hook = Webhook(port=port, status=status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(json.loads(body))
            hook.arrived.set()
            if hook.hold is not None:
                hook.hold.wait(timeout=60)
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok" if hook.status < 300 else b"receiver says no")

        def log_message(self, *args: Any) -> None:
            del args  # quiet

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        if hook.hold is not None:
            hook.hold.set()
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """The messages a local SMTP server accepted."""

    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


@contextmanager
def smtp_server(*, login: tuple[str, str] | None = None) -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback; with ``login``, AUTH needs that user/password."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox(port=free_port())

    class Handler:
        async def handle_DATA(  # noqa: N802  (the name aiosmtpd calls)
            self, server: Any, session: Any, envelope: Any
        ) -> str:
            box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            box.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        ok = (
            isinstance(auth, LoginPassword)
            and (auth.login.decode(), auth.password.decode()) == login
        )
        if ok:
            box.logins.append(auth.login.decode())
        return AuthResult(success=ok)

    options: dict[str, Any] = {}
    if login is not None:
        options = {"authenticator": authenticate, "auth_require_tls": False}
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port, **options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
