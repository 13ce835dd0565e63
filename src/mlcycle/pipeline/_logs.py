"""What a step prints and logs, captured (bounded) for its step run while still shown."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

__all__ = ["LOG_LIMIT", "LogBuffer", "capture_logs", "info_level"]

LOG_LIMIT = 64 * 1024
"""Characters of output kept per step run; the rest is counted, not kept."""


class LogBuffer:
    """Text written to it, up to ``LOG_LIMIT`` characters, then a note of what was dropped."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Keep ``text`` while there is room."""
        with self._lock:
            room = self.limit - self._size
            kept = text[: max(room, 0)]
            self._parts.append(kept)
            self._size += len(kept)
            self._dropped += len(text) - len(kept)

    def text(self) -> str:
        """What was kept, with a last line saying how much was not."""
        with self._lock:
            body = "".join(self._parts)
            if self._dropped:
                body += f"\n[mlcycle: {self._dropped} more characters of output not kept]\n"
            return body


class _Tee:
    """A text stream that writes to the original stream and to the buffer."""

    def __init__(self, original: TextIO, buffer: LogBuffer) -> None:
        self.original = original
        self.buffer = buffer

    def write(self, text: str) -> int:
        self.buffer.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.original, name)


class _Handler(logging.Handler):
    def __init__(self, buffer: LogBuffer) -> None:
        super().__init__(logging.INFO)
        self.buffer = buffer
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.write(self.format(record) + "\n")


@contextlib.contextmanager
def info_level() -> Iterator[None]:
    """Let INFO records reach the root logger while open; a no-op when they already do.

    A run opens it around all its steps, so each step's ``capture_logs`` does
    not change the level twice (each change clears every logger's cache).
    """
    root = logging.getLogger()
    level = root.level
    if level != logging.NOTSET and level <= logging.INFO:
        yield
        return
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def capture_logs(buffer: LogBuffer) -> Iterator[None]:
    """Copy stdout, stderr and log records (INFO and above) into ``buffer`` while open."""
    root = logging.getLogger()
    handler = _Handler(buffer)
    root.addHandler(handler)
    out = _Tee(sys.stdout, buffer)
    err = _Tee(sys.stderr, buffer)
    try:
        with info_level(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        root.removeHandler(handler)
