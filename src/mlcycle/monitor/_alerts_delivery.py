"""Sending alert notifications off the evaluation path, with retries that survive restarts.

Deliveries wait in the store. The courier claims the due ones for a lease
(so two processes never send one twice at once), sends them in parallel
threads, each bounded by its notifier's timeout, and records the outcome: a
failure is retried after a backoff that doubles up to a ceiling, until the
attempts run out and it is marked failed. Whatever a process leaves unsent
stays queued for the next evaluation or ``mlcycle alerts deliver``. A
process claims only deliveries to the notifiers it has, so one configured
differently never fails another's notifications. Backoff follows the
settings' clock, so tests fast-forward it.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from mlcycle.clock import Clock
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.monitor._notifiers import Notification, Notifier, describe_error
from mlcycle.store import AlertDelivery, AlertLog

__all__ = ["Courier", "RetryPolicy"]

_BATCH = 100
_MIN_LEASE_S = 60.0
_log = logging.getLogger("mlcycle.monitor.alerts")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed notification is tried again: ``initial_s``, doubling to ``max_s``."""

    max_attempts: int = 8
    initial_s: float = 30.0
    max_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValidationFailed(
                f"retry policy {self}: max_attempts must be at least 1 and "
                "0 < retry_initial_s <= retry_max_s"
            )

    def next_attempt(self, attempts_before: int, *, now: datetime) -> datetime | None:
        """When to try again after attempt ``attempts_before + 1`` failed (``None``: never)."""
        if attempts_before + 1 >= self.max_attempts:
            return None
        delay = min(self.max_s, self.initial_s * 2 ** min(attempts_before, 30))
        return now + timedelta(seconds=delay)


class Courier:
    """Sends due deliveries: on demand (``deliver_due``) or from a background thread (``wake``)."""

    def __init__(
        self,
        *,
        log: AlertLog,
        clock: Clock,
        notifiers: Mapping[str, Notifier],
        retry: RetryPolicy,
        actor: str,
    ) -> None:
        self.log = log
        self.clock = clock
        self.notifiers = dict(notifiers)
        self.retry = retry
        self.actor = actor
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:].lower()}"
        timeouts = [float(getattr(n, "timeout_s", 0.0)) for n in self.notifiers.values()]
        self.lease_s = max(_MIN_LEASE_S, 2 * max(timeouts, default=0.0) + 30)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def deliver_due(self) -> list[AlertDelivery]:
        """Send what is due now; returns the deliveries as recorded afterwards.

        Notifiers are sent to in parallel, so a slow one delays no other;
        each one's messages go in the order they were queued.
        """
        done: list[AlertDelivery] = []
        if not self.notifiers:
            return done
        while claimed := self.log.claim_deliveries(
            now=self.clock.now(),
            holder=self.holder,
            lease_s=self.lease_s,
            notifiers=sorted(self.notifiers),
            limit=_BATCH,
        ):
            queues: dict[str, list[AlertDelivery]] = {}
            for delivery in claimed:
                queues.setdefault(delivery.notifier, []).append(delivery)
            done.extend(self._send_queues(list(queues.values())))
            if len(claimed) < _BATCH:
                break
        return done

    def _send_queues(self, queues: list[list[AlertDelivery]]) -> list[AlertDelivery]:
        if len(queues) > 1:
            try:
                with ThreadPoolExecutor(max_workers=min(8, len(queues))) as pool:
                    futures = [pool.submit(self._send_in_order, queue) for queue in queues]
                return [sent for future in futures for sent in future.result()]
            except RuntimeError:  # the interpreter is exiting: no new threads, send in turn
                pass
        return [sent for queue in queues for sent in self._send_in_order(queue)]

    def _send_in_order(self, queue: list[AlertDelivery]) -> list[AlertDelivery]:
        return [done for delivery in queue if (done := self._send(delivery)) is not None]

    def _send(self, delivery: AlertDelivery) -> AlertDelivery | None:
        """Send one claimed delivery and record the outcome; ``None`` when it was taken over."""
        notifier = self.notifiers[delivery.notifier]  # only deliveries to these were claimed
        try:
            notifier.send(Notification(event=delivery.event, payload=delivery.payload))
        except Exception as exc:  # noqa: BLE001  (any failure of a receiver is recorded and retried)
            error = describe_error(exc)
            retry_at = self.retry.next_attempt(delivery.attempts, now=self.clock.now())
            _log.warning(
                "alert notification to %s failed (attempt %d): %s; %s",
                delivery.notifier,
                delivery.attempts + 1,
                error,
                "giving up" if retry_at is None else f"retrying at {retry_at:%Y-%m-%d %H:%M:%S}",
            )
            return self._finish(delivery, error=error, retry_at=retry_at)
        return self._finish(delivery)

    def _finish(
        self, delivery: AlertDelivery, *, error: str | None = None, retry_at: datetime | None = None
    ) -> AlertDelivery | None:
        """Record the attempt; a delivery no longer pending was taken over, and is left alone.

        That happens when this sender's lease ran out mid-send (a slow receiver,
        or a simulated clock moved on by days) and another sender claimed and
        finished it: the notification may have gone out twice (delivery is at
        least once), and the other sender's outcome stands.
        """
        try:
            return self.log.finish_delivery(
                delivery.id, now=self.clock.now(), error=error, retry_at=retry_at, actor=self.actor
            )
        except NotFound:
            _log.warning(
                "alert notification %s to %s was finished by another sender after this one's "
                "lease ran out; its outcome stands",
                delivery.id,
                delivery.notifier,
            )
            return None

    def wake(self) -> None:
        """Have the background thread send what is due (starting it on first use).

        The thread is a daemon, so it never keeps a process alive; ``close``
        (also run at interpreter exit) gives it a last, bounded pass.
        """
        with self._lock:
            if self._stop.is_set() or not self.notifiers:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mlcycle-alert-courier", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001  (a store out of reach: the next wake tries again)
                _log.exception("alert courier: could not deliver notifications")
            if self._stop.is_set():
                return

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is due in a last pass, waiting at most ``timeout_s``, and stop the thread.

        What is still unsent afterwards stays queued in the store for the next process.
        """
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is None:
            return
        atexit.unregister(self.close)
        self._wake.set()
        thread.join(timeout_s)
