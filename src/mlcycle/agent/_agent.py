"""The agent: fires due cron ticks and follows the event log, launching each schedule's target.

Exactly once, across restarts and between agents: a firing is claimed in the
store (its ``(schedule, key)`` row inserted) before the target is launched,
so a second agent, or this one after a crash, finds it taken. Agents of one
group take turns through a lease, so usually only one works at a time; the
claim is what makes a firing single when a lease runs out mid-pass.

Cron ticks missed while no agent ran fire once, for the newest tick only.
Events are read from the agent group's cursor, saved after each event, so
a restart goes on where the last agent stopped.

With ``alerts``, each pass ends by sending the alert notifications that are
due (those that waited after a receiver failed, once their backoff is over),
so a running agent is what retries them. Each send is bounded by its
notifier's timeout and a failure is queued again with a longer backoff, so a
receiver that stays down never holds a pass up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from mlcycle.agent._cron import latest_tick
from mlcycle.agent._launch import Launch, Launcher
from mlcycle.clock import Clock
from mlcycle.errors import BackendUnavailable, NotFound
from mlcycle.ids import new_id
from mlcycle.store import AlertDelivery, Event, EventLog, Schedule, ScheduleCatalog, TriggerFiring

if TYPE_CHECKING:
    from mlcycle.agent._steps import Step
    from mlcycle.agent._training import Training
    from mlcycle.monitor import Alerts

__all__ = ["TRIGGER_EVENTS", "Agent"]

DATASET_EVENT = "dataset.version_created"
ALERT_EVENT = "alert.fired"
TRIGGER_EVENTS = (DATASET_EVENT, ALERT_EVENT)
"""The event types that fire schedules."""
_SCHEDULE_EVENTS = ("schedule.added", "schedule.removed")
_BATCH = 500
_log = logging.getLogger("mlcycle.agent")


class Agent:
    """Runs schedules: ``run_once()`` for one pass, ``run_forever()`` to keep at it.

    >>> import sys, tempfile
    >>> from mlcycle.agent import CommandLauncher, Schedules
    >>> from mlcycle.clock import RealClock
    >>> from mlcycle.store import open_metadata_store
    >>> store = open_metadata_store(f"sqlite:///{tempfile.mkdtemp()}/mlcycle.db")
    >>> schedules = Schedules(catalog=store, clock=RealClock(), actor="ana")
    >>> schedules.add("on-bike", "train.py", on_dataset="bike").kind
    'dataset'
    >>> _ = store.append_event("dataset.version_created", subject="data:/bike/1",
    ...                        actor="ana", time=RealClock().now(), payload={"name": "bike"})
    >>> agent = Agent(catalog=store, events=store, clock=RealClock(),
    ...               launcher=CommandLauncher([sys.executable, "-c", "pass"]))
    >>> [(f.schedule, f.trigger, f.exit_code) for f in agent.run_once()]
    [('on-bike', 'dataset', 0)]
    >>> agent.run_once()
    []
    >>> store.close()
    """

    def __init__(
        self,
        *,
        catalog: ScheduleCatalog,
        events: EventLog,
        clock: Clock,
        launcher: Launcher,
        name: str | None = None,
        group: str = "default",
        lease_ttl_s: float = 60.0,
        timezone: tzinfo = UTC,
        training: Training | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.catalog = catalog
        self.events = events
        self.clock = clock
        self.launcher = launcher
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:].lower()}"
        self.group = group
        self.lease_ttl_s = lease_ttl_s
        self.timezone = timezone
        self.training = training
        self.training_steps: list[Step] = []
        """The continuous-training steps of the last pass."""
        self.alerts = alerts
        self.deliveries: list[AlertDelivery] = []
        """The alert notifications the last pass tried, as recorded afterwards."""

    @property
    def consumer(self) -> str:
        """The event cursor this agent's group reads from."""
        return f"agent:{self.group}"

    def run_once(self) -> list[TriggerFiring]:
        """One pass: fire due cron ticks, then new events; returns what this agent fired.

        With ``training``, the pass then advances the continuous-training loop
        (its steps, kept in ``training_steps``, are events: ``mlcycle training history``).
        With ``alerts``, it ends by sending the notifications that are due
        (kept in ``deliveries``). Does nothing (returns ``[]``) while another
        agent of the group holds the lease.
        """
        holder = self.catalog.take_lease(
            self.consumer, holder=self.name, now=self.clock.now(), ttl_s=self.lease_ttl_s
        )
        if holder is not None:
            _log.debug("agent %s waits: %s holds the lease of %s", self.name, holder, self.group)
            return []
        schedules = {s.name: s for s in self.catalog.list_schedules() if s.enabled}
        fired = self._fire_cron(list(schedules.values()))
        fired += self._follow_events(schedules)
        if self.training is not None:
            self.training_steps = self.training.run_once()
        if self.alerts is not None:
            self.deliveries = self.alerts.deliver()  # a failed send stays queued
        return fired

    def run_forever(
        self, poll_interval: float = 5.0, *, stop: threading.Event | None = None
    ) -> None:
        """Pass after pass, ``poll_interval`` seconds apart, until ``stop`` is set.

        A database that cannot be reached is logged and retried on the next
        pass; the lease is given back on the way out.
        """
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                try:
                    self.run_once()
                except BackendUnavailable as exc:
                    _log.warning("agent %s: %s; retrying in %g s", self.name, exc, poll_interval)
                stop.wait(poll_interval)
        finally:
            self.catalog.release_lease(self.consumer, holder=self.name)

    def _fire_cron(self, schedules: list[Schedule]) -> list[TriggerFiring]:
        now = self.clock.now()
        fired = []
        for schedule in schedules:
            if schedule.kind != "cron":
                continue
            tick = latest_tick(schedule.spec, now=now, timezone=self.timezone)
            since = schedule.last_fired_tick or schedule.created_at or tick
            if tick > since:
                firing = self._fire(schedule, f"cron:{tick.isoformat()}", tick=tick)
                fired.extend([firing] if firing else [])
        return fired

    def _follow_events(self, schedules: dict[str, Schedule]) -> list[TriggerFiring]:
        fired = []
        cursor = self.events.load_cursor(self.consumer)
        types = (*TRIGGER_EVENTS, *_SCHEDULE_EVENTS)
        while batch := self.events.read_events(since=cursor, types=types, limit=_BATCH):
            for event in batch:
                if event.type in _SCHEDULE_EVENTS:
                    self._refresh(schedules, event)
                for schedule in _matching(schedules.values(), event):
                    firing = self._fire(schedule, f"event:{event.position}", event=event)
                    fired.extend([firing] if firing else [])
                cursor = event.position
                self.events.save_cursor(self.consumer, cursor)
        return fired

    def _refresh(self, schedules: dict[str, Schedule], event: Event) -> None:
        """Keep the pass's schedules as the log says they were at ``event``."""
        name = event.subject.removeprefix("schedules:/")
        schedules.pop(name, None)
        if event.type == "schedule.added":
            try:
                current = self.catalog.get_schedule(name)
            except NotFound:  # removed since: its schedule.removed event follows
                return
            if current.enabled:
                schedules[name] = current

    def _fire(
        self,
        schedule: Schedule,
        key: str,
        *,
        tick: datetime | None = None,
        event: Event | None = None,
    ) -> TriggerFiring | None:
        claim = TriggerFiring(
            schedule=schedule.name,
            key=key,
            trigger=schedule.kind,
            fired_at=self.clock.now(),
            agent=self.name,
            tick=tick,
            position=None if event is None else event.position,
        )
        if not self.catalog.claim_firing(claim):
            return None
        launch = self._launch(schedule, claim)
        done = replace(
            claim,
            command=launch.command,
            pid=launch.pid,
            exit_code=launch.exit_code,
            finished_at=self.clock.now(),
        )
        return self.catalog.finish_firing(done, payload=_payload(schedule, done, launch, event))

    def _launch(self, schedule: Schedule, firing: TriggerFiring) -> Launch:
        _log.info(
            "agent %s fires %s (%s) -> %s", self.name, schedule.name, firing.key, schedule.target
        )
        try:
            return self.launcher(schedule, firing)
        except Exception as exc:  # noqa: BLE001  (a broken launcher must not stop the agent)
            return Launch(command=(), error=f"{type(exc).__name__}: {exc}")


def _matching(schedules: Iterable[Schedule], event: Event) -> list[Schedule]:
    """The schedules ``event`` fires: added before it, and naming its dataset or alert."""
    found = []
    for schedule in schedules:
        if schedule.added_position >= event.position:
            continue
        if event.type == DATASET_EVENT and schedule.kind == "dataset":
            hit = event.payload.get("name") == schedule.spec
        elif event.type == ALERT_EVENT and schedule.kind == "alert":
            hit = event.subject == schedule.spec
        else:
            hit = False
        if hit:
            found.append(schedule)
    return found


def _payload(
    schedule: Schedule, firing: TriggerFiring, launch: Launch, event: Event | None
) -> dict[str, object]:
    return {
        "schedule": schedule.name,
        "target": schedule.target,
        "params": schedule.params,
        "trigger": schedule.kind,
        "key": firing.key,
        "tick": None if firing.tick is None else firing.tick.isoformat(),
        "position": firing.position,
        "event": None if event is None else {"type": event.type, "subject": event.subject},
        "command": list(launch.command),
        "pid": launch.pid,
        "exit_code": launch.exit_code,
        "error": launch.error,
        "agent": firing.agent,
    }
