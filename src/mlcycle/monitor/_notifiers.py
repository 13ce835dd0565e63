"""Notifiers: where alert messages go (a webhook, a JSON-lines file, e-mail, or a plugin's).

A notifier gets one ``Notification`` (an alert event and its payload) and
either delivers it or raises; the courier retries it later. Built-in kinds
are ``webhook`` (Slack-compatible JSON, or the whole alert as JSON), ``file``
and ``email``; an installed package adds a kind through an entry point in
the ``mlcycle.notifiers`` group named after the kind, whose value is a
factory ``(name, settings, home) -> Notifier``.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from mlcycle.errors import ValidationFailed
from mlcycle.settings import AlertSettings, NotifierSettings

__all__ = [
    "ENTRY_POINT_GROUP",
    "EmailNotifier",
    "FileNotifier",
    "Notification",
    "Notifier",
    "WebhookNotifier",
    "build_notifier",
    "build_notifiers",
    "describe_error",
    "known_kinds",
    "slack_message",
]

ENTRY_POINT_GROUP = "mlcycle.notifiers"
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert event to tell someone about: its type and the event's payload."""

    event: str
    payload: Mapping[str, Any]  # Any: JSON values of the alert event

    @property
    def state(self) -> str:
        """``firing`` or ``resolved``."""
        return "resolved" if self.event == "alert.resolved" else "firing"

    @property
    def title(self) -> str:
        """One line: severity, rule, state and deployment."""
        p = self.payload
        severity = str(p.get("severity", "warning")).upper()
        if not self.event.startswith("alert."):  # what followed the alert, such as a retrain
            return f"[{severity}] {p.get('name')} on {p.get('deployment')}: {self.event}"
        return f"[{severity}] {p.get('name')} {self.state} on {p.get('deployment')}"

    @property
    def values_text(self) -> str:
        """The metric values of the window that decided, as ``name = value`` pairs."""
        values = self.payload.get("values") or {}
        return ", ".join(f"{k} = {_number(v)}" for k, v in values.items()) or "no values"

    @property
    def text(self) -> str:
        """The whole message as plain text."""
        p = self.payload
        return (
            f"{self.title}\n{p.get('why', '')}\n"
            f"rule: {p.get('rule')}\nvalues: {self.values_text}\n"
            f"alert {p.get('alert_id')}, window ending {p.get('window_end')}"
        )


def _number(value: object) -> str:
    return (
        "missing" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
    )


class Notifier(Protocol):
    """Something that delivers a notification or raises; ``name`` is its settings' name."""

    name: str

    def send(self, notification: Notification) -> None:
        """Deliver ``notification``, or raise an exception saying why it could not be."""
        ...


class WebhookNotifier:
    """POSTs JSON to a URL: Slack's ``text`` and ``blocks``, or the whole alert (``json``)."""

    def __init__(self, name: str, *, url: str, fmt: str = "slack", timeout_s: float = 5.0):
        self.name = name
        self.url = url
        self.format = fmt
        self.timeout_s = timeout_s

    def body(self, notification: Notification) -> dict[str, Any]:  # Any: JSON values
        """What is posted for ``notification``."""
        if self.format == "json":
            return {"event": notification.event, **notification.payload}
        return slack_message(notification)

    def send(self, notification: Notification) -> None:
        """POST the body; anything but a 2xx answer within ``timeout_s`` raises."""
        request = urllib.request.Request(  # noqa: S310  (the scheme is checked: http or https)
            self.url,
            data=orjson.dumps(self.body(notification)),
            headers={"Content-Type": "application/json", "User-Agent": "mlcycle-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace")
            raise OSError(f"the webhook answered {exc.code} {exc.reason}: {detail}") from None


def slack_message(notification: Notification) -> dict[str, Any]:  # Any: JSON values
    """A Slack incoming-webhook message: ``text`` for notifications, ``blocks`` for the channel."""
    p = notification.payload
    fields = [
        ("Rule", f"`{p.get('rule')}`"),
        ("Deployment", str(p.get("deployment"))),
        ("Severity", str(p.get("severity"))),
        ("Values", notification.values_text),
    ]
    return {
        "text": f"{notification.title}: {p.get('why', '')}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": notification.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": str(p.get("why", ""))}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"alert {p.get('alert_id')} · window ending {p.get('window_end')}",
                    }
                ],
            },
        ],
    }


class FileNotifier:
    """Appends each notification to a file as one JSON line, flushed to disk."""

    def __init__(self, name: str, *, path: Path):
        self.name = name
        self.path = path

    def send(self, notification: Notification) -> None:
        """Append ``{"event": ..., **payload}`` and a newline, then fsync."""
        line = orjson.dumps({"event": notification.event, **notification.payload}) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())


class EmailNotifier:
    """Sends a plain-text e-mail over SMTP (optionally STARTTLS or SSL, with a login)."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        to: tuple[str, ...],
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
    ):
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.to = to
        self.security = security
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail for ``notification``."""
        message = EmailMessage()
        message["Subject"] = f"[mlcycle] {notification.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(notification.text + "\n")
        return message

    def send(self, notification: Notification) -> None:
        """Connect, log in when configured, and send; SMTP errors raise."""
        smtp: smtplib.SMTP
        if self.security == "ssl":
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None and self.password is not None:
                smtp.login(self.username, self.password)
            smtp.send_message(self.message(notification))


Factory = Callable[[str, NotifierSettings, Path], Notifier]


def _webhook(name: str, config: NotifierSettings, home: Path) -> Notifier:
    del home
    url = config.url
    parts = urlsplit(url or "")
    if not url or parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValidationFailed(
            f"notifier '{name}' (webhook) needs a url starting with http:// or https:// "
            f"(found {url!r}); put it in [alerts.notifiers.{name}] or, when the URL holds a "
            "secret (as Slack's do), in .mlcycle/secrets.toml"
        )
    return WebhookNotifier(name, url=url, fmt=config.format, timeout_s=config.timeout_s)


def _file(name: str, config: NotifierSettings, home: Path) -> Notifier:
    if config.path is None or not str(config.path).strip():
        raise ValidationFailed(
            f"notifier '{name}' (file) needs a path, such as path = \"alerts.jsonl\" "
            "(relative to the project)"
        )
    path = config.path if config.path.is_absolute() else home / config.path
    if path.is_dir():
        raise ValidationFailed(f"notifier '{name}' (file): {path} is a folder; name a file")
    return FileNotifier(name, path=path)


def _email(name: str, config: NotifierSettings, home: Path) -> Notifier:
    del home
    problems = _smtp_problems(config)
    if problems:
        raise ValidationFailed(f"notifier '{name}' (email): {'; '.join(problems)}")
    port = config.port or _DEFAULT_PORTS[config.security]
    assert config.host is not None  # checked above
    assert config.sender is not None
    return EmailNotifier(
        name,
        host=config.host,
        port=port,
        sender=config.sender,
        to=config.to,
        security=config.security,
        username=config.username,
        password=None if config.password is None else config.password.get_secret_value(),
        timeout_s=config.timeout_s,
    )


def _smtp_problems(config: NotifierSettings) -> list[str]:
    problems = []
    if not config.host or not config.host.strip():
        problems.append('it needs the SMTP server\'s host, such as host = "smtp.example.com"')
    if config.port is not None and not 1 <= config.port <= 65535:
        problems.append(f"port {config.port} is not a TCP port; use 1 to 65535 (587 for starttls)")
    if not config.sender or "@" not in config.sender:
        problems.append(
            f'sender {config.sender!r} is not an e-mail address; set sender = "ml@example.com"'
        )
    if not config.to:
        problems.append('it has no recipients; set to = ["oncall@example.com"]')
    problems.extend(
        f"recipient {address!r} is not an e-mail address"
        for address in config.to
        if "@" not in address
    )
    if (config.username is None) != (config.password is None):
        problems.append(
            "a login needs both username and password (put the password in "
            ".mlcycle/secrets.toml or MLCYCLE_ALERTS__NOTIFIERS__<NAME>__PASSWORD)"
        )
    return problems


_BUILTIN: dict[str, Factory] = {"webhook": _webhook, "file": _file, "email": _email}


def _plugins() -> dict[str, Any]:  # Any: entry points, loaded on use
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> tuple[str, ...]:
    """The notifier kinds: the built-in ones, then those installed packages add."""
    return (*_BUILTIN, *sorted(set(_plugins()) - set(_BUILTIN)))


def build_notifier(name: str, config: NotifierSettings, *, home: Path) -> Notifier:
    """The notifier ``[alerts.notifiers.NAME]`` declares; ``ValidationFailed`` names a problem."""
    factory = _BUILTIN.get(config.kind)
    if factory is None:
        plugin = _plugins().get(config.kind)
        if plugin is None:
            raise ValidationFailed(
                f"notifier '{name}' has unknown kind {config.kind!r}; use one of "
                f"{', '.join(known_kinds())}, or install a package that provides the "
                f"'{config.kind}' entry point in the {ENTRY_POINT_GROUP} group"
            )
        factory = plugin.load()
    return factory(name, config, home)


def build_notifiers(settings: AlertSettings, *, home: Path) -> dict[str, Notifier]:
    """Every notifier of ``[alerts.notifiers]``, checked."""
    return {
        name: build_notifier(name, config, home=home) for name, config in settings.notifiers.items()
    }


def describe_error(exc: BaseException) -> str:
    """An exception as one short line for the delivery record."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."
