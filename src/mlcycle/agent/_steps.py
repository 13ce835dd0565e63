"""The steps of the continuous-training loop, and where a deployment stands, read from them.

Every step is a ``training.*`` event; a deployment's ``TrainingStatus`` is the
fold of its events, oldest first, so the state needs no table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from mlcycle.agent._trial import Verdict
from mlcycle.store import Event

__all__ = ["STEP_EVENTS", "Step", "TrainingStatus", "fold"]

STEP_EVENTS = (
    "training.started",
    "training.candidate",
    "training.gated",
    "training.trial_started",
    "training.promoted",
    "training.rejected",
    "training.rolled_back",
    "training.rate_limited",
    "training.failed",
)
"""The events of the loop, in the order a retrain goes through them."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the loop, as its event recorded it."""

    deployment: str
    event: str
    time: datetime
    alert_id: str | None
    why: str
    version: int | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)  # Any: JSON values

    @classmethod
    def of(cls, event: Event) -> Step:
        """The step ``event`` (a ``training.*`` event) records."""
        p = event.payload
        return cls(
            deployment=str(p.get("deployment")),
            event=event.type,
            time=event.time,
            alert_id=p.get("alert_id"),
            why=str(p.get("why", "")),
            version=p.get("version"),
            payload=p,
        )


@dataclass(frozen=True, slots=True)
class TrainingStatus:
    """Where a deployment's loop stands.

    ``phase`` is ``idle``, ``retraining`` (a pipeline run under way or
    interrupted), ``trial`` (a candidate on live traffic; ``verdict`` says
    how many labelled requests there are), or ``watching`` (promoted, and
    rolled back if a ``rollback_on`` alert fires before ``watch_until``).
    """

    deployment: str
    phase: str
    attempt: str | None = None
    alert_id: str | None = None
    candidate: int | None = None
    production: int | None = None
    trial: str | None = None
    trial_since: datetime | None = None
    promoted_position: int | None = None
    promoted_at: datetime | None = None
    watch_until: datetime | None = None
    last: Step | None = None
    retrains: tuple[datetime, ...] = ()
    verdict: Verdict | None = None
    deployment_before: dict[str, Any] | None = field(default=None, repr=False)  # Any: JSON

    @property
    def why(self) -> str:
        """The last step's reason, or the trial's progress while one runs."""
        if self.verdict is not None:
            return self.verdict.why
        return "" if self.last is None else self.last.why


def fold(state: TrainingStatus, event: Event) -> TrainingStatus:
    """``state`` after ``event``."""
    p = event.payload
    step = Step.of(event)
    state = replace(state, last=step)
    kind = event.type.removeprefix("training.")
    if kind == "started":
        return replace(
            state,
            phase="retraining",
            attempt=p.get("attempt"),
            alert_id=p.get("alert_id"),
            candidate=None,
            trial=None,
            trial_since=None,
            retrains=(*state.retrains, event.time),
        )
    if kind == "candidate":
        return replace(state, candidate=p.get("version"))
    if kind == "trial_started":
        return replace(
            state,
            phase="trial",
            trial=p.get("trial"),
            production=p.get("production"),
            trial_since=datetime.fromisoformat(p["since"]),
            deployment_before=p.get("deployment_before"),
        )
    if kind == "promoted":
        return replace(
            state,
            phase="watching",
            production=p.get("version"),
            promoted_position=event.position,
            promoted_at=event.time,
            watch_until=datetime.fromisoformat(p["watch_until"]),
        )
    if kind in {"rejected", "failed", "rolled_back"}:
        return replace(
            state, phase="idle", watch_until=None, promoted_position=None, promoted_at=None
        )
    return state
