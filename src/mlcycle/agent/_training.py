"""Continuous training: from an alert to a retrained model proven on live traffic, or rolled back.

Each pass (``run_once``, which the agent's pass calls) does two things:

1. Judges the running trials: once enough requests are labelled, the
   candidate is promoted (production moved, the deployment back to its
   single answering model) or kept as the ``challenger`` alias, and says why.
2. Follows new ``alert.fired`` events from its own cursor. An alert of a
   policy's ``rollback_on`` within the watch after a promotion rolls
   production back, and so does one still firing since before the promotion
   whose rule held on a window that began after it (``_still_firing``). One
   of ``on_alerts`` starts a retrain, unless a retrain of the deployment is
   already under way or ``max_retrains`` is used up (recorded as
   ``training.rate_limited``). An alert older than the policy's
   ``max_alert_age`` when read (the first pass in a project reads the whole
   log) starts nothing. A retrain (``_retrain``) runs the
   pipeline, takes the new version as the candidate, checks the registry's
   gates and deploys it as a shadow or a canary.

Every step is a ``training.*`` event with subject ``training:/<deployment>``
and the ``alert_id`` that started it in its payload; where a deployment
stands is read back from those events, so a pass may stop anywhere and the
next one (in any process) continues.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from mlcycle.agent._policy import TrainingPolicy
from mlcycle.agent._retrain import Retrainer, TrainingHost
from mlcycle.agent._steps import STEP_EVENTS, Step, TrainingStatus, fold
from mlcycle.agent._trial import Verdict, judge, restored_deployment
from mlcycle.errors import MlcycleError, NotFound
from mlcycle.ids import new_id
from mlcycle.store import Event, MonitorResultLog, ScheduleCatalog

__all__ = ["Training"]

_ALERT_EVENT = "alert.fired"
_OUTCOMES = frozenset(
    {"training.promoted", "training.rejected", "training.failed", "training.rolled_back"}
)
"""The steps the notifiers of the alert that started them hear about."""
_CHALLENGER = "challenger"
_BATCH = 500
_INSTANT = timedelta(microseconds=1)
_log = logging.getLogger("mlcycle.agent.training")


class Training:
    """The continuous-training loop of every deployment with a ``[training.NAME]`` policy."""

    def __init__(
        self,
        *,
        host: TrainingHost,
        policies: Mapping[str, TrainingPolicy],
        name: str | None = None,
        group: str = "default",
        lease_ttl_s: float = 600.0,
    ) -> None:
        self.host = host
        self.policies = dict(policies)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:].lower()}"
        self.group = group
        self.lease_ttl_s = lease_ttl_s
        self.retrainer = Retrainer(host, self._step)

    @property
    def consumer(self) -> str:
        """The event cursor (and lease) of this group's loop."""
        return f"training:{self.group}"

    def run_once(self) -> list[Step]:
        """One pass: judge running trials, then act on new alerts; returns the steps taken.

        Does nothing while another process of the group holds the loop's lease.
        """
        catalog: ScheduleCatalog = self.host.metadata  # type: ignore[assignment]  # every catalog
        holder = catalog.take_lease(
            self.consumer, holder=self.name, now=self.host.clock.now(), ttl_s=self.lease_ttl_s
        )
        if holder is not None:
            _log.debug("training %s waits: %s holds %s", self.name, holder, self.consumer)
            return []
        try:
            steps = []
            for policy in self.policies.values():
                steps.extend(self._advance_trial(policy))
            steps.extend(self._follow_alerts())
            return steps + self._still_firing()
        finally:
            catalog.release_lease(self.consumer, holder=self.name)

    def status(self, deployment: str) -> TrainingStatus:
        """Where ``deployment``'s loop stands: production from the registry, labels counted now."""
        policy = self._policy(deployment)
        state = self._state(deployment)
        try:
            production = self.host.registry.get(f"{policy.model}@production").version
            state = replace(state, production=production)
        except NotFound:
            pass  # nothing in production yet: the events' view stands
        if state.phase == "trial" and state.candidate is not None:
            verdict = self._judge(policy, state)
            state = replace(state, verdict=verdict)
        return state

    def history(self, deployment: str) -> list[Step]:
        """Every step of ``deployment``'s loop, oldest first."""
        self._policy(deployment)
        return [Step.of(e) for e in self._events(deployment)]

    # -- trials ---------------------------------------------------------------------------

    def _advance_trial(self, policy: TrainingPolicy) -> list[Step]:
        state = self._state(policy.deployment)
        if state.phase == "retraining":
            # Retrains run inside a pass, under the lease: one seen here was interrupted.
            return [self._failed(policy, state, "pipeline", "the pass running it was interrupted")]
        if state.phase != "trial" or state.candidate is None:
            return []
        return self._decide(policy, state)

    def _decide(self, policy: TrainingPolicy, state: TrainingStatus) -> list[Step]:
        """Promote, keep as challenger, or wait, as the labelled requests say."""
        try:
            verdict = self._judge(policy, state)
        except (ValueError, TypeError) as exc:  # outputs or labels the metric cannot compare
            return [self._abandon(policy, state, f"its {policy.metric} cannot be computed: {exc}")]
        if not verdict.decided:
            return []
        try:
            if verdict.promote:
                return [self._promote(policy, state, verdict)]
            return [self._keep_challenger(policy, state, verdict)]
        except MlcycleError as exc:
            return [self._abandon(policy, state, f"its outcome could not be applied: {exc}")]

    def _abandon(self, policy: TrainingPolicy, state: TrainingStatus, why: str) -> Step:
        """End a trial that cannot be decided, putting the deployment back if that still works."""
        try:
            self._restore(policy, state, winner=None)
        except MlcycleError as exc:
            why = f"{why}; the deployment could not be put back either: {exc}"
        return self._failed(policy, state, "trial", f"the trial of version {state.candidate} "
                            f"ended: {why}")  # fmt: skip

    def _judge(self, policy: TrainingPolicy, state: TrainingStatus) -> Verdict:
        rows = self.host.feedback.labelled(policy.deployment, since=state.trial_since)
        assert state.candidate is not None
        assert state.production is not None
        return judge(rows, policy, candidate=state.candidate, production=state.production)

    def _promote(self, policy: TrainingPolicy, state: TrainingStatus, verdict: Verdict) -> Step:
        assert state.candidate is not None  # judged trials have one
        try:
            self.host.registry.promote(
                policy.model, state.candidate, to="production", reason=f"training: {verdict.why}"
            )
        except MlcycleError as exc:
            self._restore(policy, state, winner=None)
            return self._step(
                "training.rejected",
                policy,
                state,
                why=f"version {state.candidate} won its trial but promotion was refused: {exc}",
                stage="promotion",
                verdict=verdict.to_dict(),
            )
        self._restore(policy, state, winner=state.candidate)
        return self._step(
            "training.promoted",
            policy,
            state,
            why=f"promoted version {state.candidate} over version {state.production}: "
            f"{verdict.why}",
            previous=state.production,
            verdict=verdict.to_dict(),
            watch_until=(self.host.clock.now() + policy.watch).isoformat(),
        )

    def _keep_challenger(
        self, policy: TrainingPolicy, state: TrainingStatus, verdict: Verdict
    ) -> Step:
        assert state.candidate is not None  # judged trials have one
        self.host.registry.promote(
            policy.model, state.candidate, to=_CHALLENGER, reason=f"training: {verdict.why}"
        )
        self._restore(policy, state, winner=None)
        return self._step(
            "training.rejected",
            policy,
            state,
            why=f"version {state.candidate} stays the challenger; production version "
            f"{state.production} is kept: {verdict.why}",
            stage="trial",
            verdict=verdict.to_dict(),
        )

    def _restore(
        self, policy: TrainingPolicy, state: TrainingStatus, *, winner: int | None
    ) -> None:
        """Put the deployment back as before the trial (a pinned version pinned to the winner)."""
        self.host.deployments.apply(
            restored_deployment(
                policy.deployment,
                state.deployment_before or {},
                model=policy.model,
                winner=winner,
            )
        )

    # -- alerts ---------------------------------------------------------------------------

    def _follow_alerts(self) -> list[Step]:
        events = self.host.metadata
        steps: list[Step] = []
        cursor = events.load_cursor(self.consumer)
        while batch := events.read_events(since=cursor, types=(_ALERT_EVENT,), limit=_BATCH):
            for event in batch:
                policy = self.policies.get(str(event.payload.get("deployment")))
                if policy is not None:
                    steps.extend(self._on_alert(policy, event))
                cursor = event.position
                events.save_cursor(self.consumer, cursor)
        return steps

    def _on_alert(self, policy: TrainingPolicy, alert: Event) -> list[Step]:
        rule = str(alert.payload.get("name", alert.subject))
        state = self._state(policy.deployment)
        watching = (
            state.phase == "watching"
            and state.promoted_position is not None
            and alert.position > state.promoted_position
        )
        if watching and rule in policy.rollback_on:
            alert_id = alert.payload.get("alert_id")
            cause = (
                f"alert '{rule}' fired on {policy.deployment} within {policy.watch} of the "
                f"promotion of version {state.candidate}"
            )
            detail = alert.payload.get("why")
            return [self._rollback(policy, state, rule, alert_id, cause=cause, detail=detail)]
        if rule in policy.on_alerts:
            age = self.host.clock.now() - alert.time
            if age > policy.max_alert_age:
                _log.info(
                    "alert '%s' on %s fired %s ago, before max_alert_age = %s: no retrain",
                    rule,
                    policy.deployment,
                    age,
                    policy.max_alert_age,
                )
                return []
            return self._retrain(policy, state, alert, rule)
        return []

    def _still_firing(self) -> list[Step]:
        """Roll back a promotion whose ``rollback_on`` alert never stopped firing.

        Such an alert fires no new event, so its rule state is read each pass:
        the rule held on its latest window (a window that breaks it resolves
        the alert). That counts once the window started at or after the
        promotion, so the promoted version answered it; a window that a
        monitor run stored has its start, one evaluated directly counts from
        its end.
        """
        steps: list[Step] = []
        for policy in self.policies.values():
            state = self._state(policy.deployment)
            if state.phase != "watching" or state.promoted_at is None:
                continue
            for rule in policy.rollback_on:
                held = self._held_since(rule, policy.deployment, state.promoted_at)
                if held is None:
                    continue
                alert_id, end = held
                why = (
                    f"alert '{rule}' on {policy.deployment} was still firing when version "
                    f"{state.candidate} was promoted and still held in the window ending "
                    f"{end:%Y-%m-%d %H:%M} UTC, answered by it within {policy.watch} of the "
                    "promotion"
                )
                steps.append(self._rollback(policy, state, rule, alert_id, cause=why, detail=None))
                break  # once per promotion: the rollback ends the watch
        return steps

    def _held_since(
        self, rule: str, deployment: str, promoted_at: datetime
    ) -> tuple[str, datetime] | None:
        """The firing alert of ``rule`` and its latest window, if that began after the promotion."""
        ruled = self.host.alerts.log.get_alert_rule_state(rule, deployment)
        if ruled is None or ruled.alert is None or ruled.alert.state != "firing":
            return None
        end = ruled.last_window_end
        if end is None or end <= promoted_at:
            return None
        results: MonitorResultLog = self.host.metadata  # type: ignore[assignment]  # every catalog
        stored = results.monitor_windows(deployment, since=end - _INSTANT, until=end)
        start = stored[-1][0] if stored else end
        return (ruled.alert.id, end) if start >= promoted_at else None

    def _rollback(
        self,
        policy: TrainingPolicy,
        state: TrainingStatus,
        rule: str,
        alert_id: str | None,
        *,
        cause: str,
        detail: str | None,
    ) -> Step:
        ids = {"alert_id": alert_id, "started_by": state.alert_id}
        try:
            move = self.host.registry.rollback(policy.model, reason=f"training: {cause}")
        except MlcycleError as exc:
            return self._step(
                "training.failed",
                policy,
                state,
                why=f"{cause}, asking to roll back version {state.candidate}, but: {exc}",
                stage="rollback",
                **ids,
            )
        return self._step(
            "training.rolled_back",
            policy,
            state,
            why=f"{cause}: production rolled back to version {move.to_version}. "
            f"{detail or ''}".strip(),
            version=state.candidate,
            to_version=move.to_version,
            rule=rule,
            **ids,
        )

    def _retrain(
        self, policy: TrainingPolicy, state: TrainingStatus, alert: Event, rule: str
    ) -> list[Step]:
        alert_id = alert.payload.get("alert_id")
        busy = self._busy(policy, state)
        if busy is not None:
            return [
                self._step(
                    "training.rate_limited",
                    policy,
                    TrainingStatus(policy.deployment, "idle"),
                    why=f"alert '{rule}' would start a retrain, but {busy}",
                    alert_id=alert_id,
                    rule=rule,
                    attempt=None,
                )
            ]
        attempt = TrainingStatus(policy.deployment, "retraining", attempt=new_id())
        attempt = replace(attempt, alert_id=alert_id)
        started = self._step(
            "training.started",
            policy,
            attempt,
            why=f"alert '{rule}' fired on {policy.deployment}: retraining {policy.model} "
            f"with {policy.pipeline}",
            rule=rule,
            pipeline=policy.pipeline,
            params={k: str(v) for k, v in policy.params.items()},
        )
        return [started, *self.retrainer.run(policy, attempt)]

    def _busy(self, policy: TrainingPolicy, state: TrainingStatus) -> str | None:
        """Why no retrain may start now, or ``None``."""
        if state.phase in {"retraining", "trial"}:
            what = "a trial" if state.phase == "trial" else "a retrain"
            return f"{what} of this deployment is under way (attempt {state.attempt})"
        now = self.host.clock.now()
        recent = [t for t in state.retrains if now - t < policy.per]
        if len(recent) >= policy.max_retrains:
            return (
                f"max_retrains = '{policy.rate}' is used up "
                f"({len(recent)} since {min(recent):%Y-%m-%d %H:%M} UTC); the next may start "
                f"at {min(recent) + policy.per:%Y-%m-%d %H:%M} UTC"
            )
        return None

    def _failed(
        self, policy: TrainingPolicy, attempt: TrainingStatus, stage: str, why: str
    ) -> Step:
        return self.retrainer.failed(policy, attempt, stage, why)

    # -- events and state -----------------------------------------------------------------

    def _step(
        self,
        kind: str,
        policy: TrainingPolicy,
        state: TrainingStatus,
        *,
        why: str,
        **extra: Any,  # Any: JSON values
    ) -> Step:
        payload: dict[str, Any] = {  # Any: JSON values
            "deployment": policy.deployment,
            "model": policy.model,
            "alert_id": state.alert_id,
            "attempt": state.attempt,
            "version": state.candidate,
            **extra,
            "why": why,
        }
        event = self.host.metadata.append_event(
            kind,
            subject=f"training:/{policy.deployment}",
            actor=self.host.actor,
            time=self.host.clock.now(),
            payload=payload,
        )
        _log.info("%s %s: %s", kind, policy.deployment, why)
        alert_id = payload["alert_id"]
        if kind in _OUTCOMES and isinstance(alert_id, str):
            self._tell(alert_id, kind, why, payload)
        return Step.of(event)

    def _tell(self, alert_id: str, kind: str, why: str, payload: dict[str, Any]) -> None:
        """Queue the outcome for the notifiers of the alert's rule (never failing the step)."""
        try:
            self.host.alerts.follow_up(
                alert_id,
                event=kind,
                why=f"continuous training: {why}",
                details={"training": {k: v for k, v in payload.items() if k != "why"}},
            )
        except MlcycleError as exc:
            _log.warning("cannot notify about %s of alert %s: %s", kind, alert_id, exc)

    def _events(self, deployment: str) -> Iterable[Event]:
        subject = f"training:/{deployment}"
        cursor = 0
        while batch := self.host.metadata.read_events(
            since=cursor, types=STEP_EVENTS, limit=_BATCH
        ):
            yield from (e for e in batch if e.subject == subject)
            cursor = batch[-1].position

    def _state(self, deployment: str) -> TrainingStatus:
        state = TrainingStatus(deployment, "idle")
        for event in self._events(deployment):
            state = fold(state, event)
        watched = state.watch_until
        if state.phase == "watching" and watched is not None and self.host.clock.now() >= watched:
            state = replace(state, phase="idle")
        return state

    def _policy(self, deployment: str) -> TrainingPolicy:
        try:
            return self.policies[deployment]
        except KeyError:
            known = ", ".join(sorted(self.policies)) or "none"
            raise NotFound(
                f"deployment '{deployment}' has no training policy (policies: {known}); "
                f"add [training.{deployment}] to mlcycle.toml"
            ) from None
