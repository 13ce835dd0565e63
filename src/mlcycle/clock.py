"""Real or simulated time, so model ages, cooldowns and schedules can be fast-forwarded.

A simulated clock keeps its state in a small JSON file that every process of
the project reads, so advancing it in a test or the demo moves time for
subprocesses and servers too. Between advances it runs at real speed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from mlcycle.errors import ValidationFailed
from mlcycle.settings import Settings

__all__ = ["Clock", "RealClock", "SimulatedClock", "open_clock"]


class Clock(Protocol):
    """A source of the current time."""

    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
        ...


class RealClock:
    """The system clock."""

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Time that starts where it is set and moves with ``advance``; shared through a file.

    >>> import tempfile, pathlib
    >>> clock = SimulatedClock(pathlib.Path(tempfile.mkdtemp()) / "clock.json")
    >>> clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(days=30))
    >>> clock.now().date().isoformat()
    '2030-01-31'
    """

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0

    def time(self) -> float:
        return time.time() + self._current_offset()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def set(self, when: datetime) -> None:
        """Make ``now()`` return ``when`` from this moment on, in every process."""
        if when.tzinfo is None:
            raise ValidationFailed(f"simulated time {when} has no timezone; pass an aware datetime")
        self._write(when.timestamp() - time.time())

    def advance(self, delta: timedelta) -> None:
        """Move time forward (or back, with a negative delta) for every process."""
        self._write(self._current_offset() + delta.total_seconds())

    def _current_offset(self) -> float:
        try:
            stat = self.state_file.stat()
        except FileNotFoundError:
            return 0.0
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp != self._stamp:
            self._offset = float(json.loads(self.state_file.read_text())["offset_s"])
            self._stamp = stamp
        return self._offset

    def _write(self, offset: float) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".clock-")
        with os.fdopen(fd, "w") as stream:
            json.dump({"offset_s": offset}, stream)
        Path(tmp).replace(self.state_file)
        self._stamp = None


def open_clock(settings: Settings) -> Clock:
    """The clock the settings ask for."""
    if settings.clock.mode == "simulated":
        return SimulatedClock(settings.clock_state_file)
    return RealClock()
