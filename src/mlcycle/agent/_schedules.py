"""Adding, listing and removing schedules, with each trigger checked before anything is stored."""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from typing import Any

from mlcycle.agent._cron import check_cron
from mlcycle.clock import Clock
from mlcycle.errors import ValidationFailed
from mlcycle.store import (
    Schedule,
    ScheduleCatalog,
    ScheduleKind,
    TriggerFiring,
    check_dataset_name,
    check_schedule_name,
)

__all__ = ["Schedules", "check_alert_name"]

_ALERT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-:/]{0,127}")


def check_alert_name(name: str) -> str:
    """``name`` if it can name an alert rule, else ``ValidationFailed``."""
    if not isinstance(name, str) or not _ALERT.fullmatch(name):
        raise ValidationFailed(
            f"alert name {name!r} must be 1 to 128 letters, digits, '_', '.', '-', ':' or '/', "
            "starting with a letter or digit (such as 'latency-high')"
        )
    return name


class Schedules:
    """The project's schedules: what to launch, and on which cron tick, dataset or alert.

    >>> import tempfile
    >>> from mlcycle.clock import RealClock
    >>> from mlcycle.store import open_metadata_store
    >>> store = open_metadata_store(f"sqlite:///{tempfile.mkdtemp()}/mlcycle.db")
    >>> schedules = Schedules(catalog=store, clock=RealClock(), actor="ana")
    >>> schedules.add("nightly", "pipelines.py:training", cron="0 2 * * *").spec
    '0 2 * * *'
    >>> [s.name for s in schedules.list()]
    ['nightly']
    >>> store.close()
    """

    def __init__(self, *, catalog: ScheduleCatalog, clock: Clock, actor: str) -> None:
        self.catalog = catalog
        self.clock = clock
        self.actor = actor

    def add(
        self,
        name: str,
        target: str,
        *,
        cron: str | None = None,
        on_dataset: str | None = None,
        on_alert: str | None = None,
        params: Mapping[str, Any] | None = None,  # Any: passed on as text
    ) -> Schedule:
        """Add schedule ``name`` launching ``target``, on exactly one of the three triggers.

        Raises:
            ValidationFailed: a bad name, no trigger or several, a cron
                expression that does not parse (naming the field).
            AlreadyExists: a schedule of that name exists.
        """
        check_schedule_name(name)
        kind, spec = _trigger(cron=cron, on_dataset=on_dataset, on_alert=on_alert)
        schedule = Schedule(
            name=name,
            target=target,
            kind=kind,
            spec=spec,
            params={str(k): str(v) for k, v in (params or {}).items()},
            actor=self.actor,
        )
        return self.catalog.add_schedule(schedule, time=self.clock.now())

    def get(self, name: str) -> Schedule:
        """Schedule ``name``; ``NotFound`` when there is none."""
        return self.catalog.get_schedule(name)

    def list(self) -> list[Schedule]:
        """Every schedule, by name."""
        return self.catalog.list_schedules()

    def remove(self, name: str) -> Schedule:
        """Remove schedule ``name``; its past firings stay as history."""
        return self.catalog.remove_schedule(name, actor=self.actor, time=self.clock.now())

    def firings(
        self, name: str | None = None, *, limit: int = 1000
    ) -> builtins.list[TriggerFiring]:
        """Past firings, oldest first (of one schedule, when given)."""
        return self.catalog.list_firings(name, limit=limit)


def _trigger(
    *, cron: str | None, on_dataset: str | None, on_alert: str | None
) -> tuple[ScheduleKind, str]:
    given = [value is not None for value in (cron, on_dataset, on_alert)]
    if sum(given) != 1:
        raise ValidationFailed(
            "a schedule needs exactly one trigger: cron='0 2 * * *' (--cron), "
            "on_dataset='bike' (--on-dataset) or on_alert='latency-high' (--on-alert)"
        )
    if cron is not None:
        return "cron", check_cron(cron)
    if on_dataset is not None:
        return "dataset", check_dataset_name(on_dataset)
    assert on_alert is not None  # exactly one was given
    return "alert", check_alert_name(on_alert)
