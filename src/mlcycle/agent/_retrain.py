"""A retrain of continuous training, from the alert's go-ahead to the candidate's trial.

The loop (``_training``) decides that a retrain may start and records its
``training.started`` step; this runs it: the policy's pipeline, every step
anew (in this process or in one of its own), the newest version it
registered as the candidate, the registry's gates, then the candidate
deployed as a shadow or a canary beside production. Each step is recorded
through the loop's ``record``, so it is a ``training.*`` event like the rest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from mlcycle.agent._launch import run_retrain
from mlcycle.agent._policy import TrainingPolicy
from mlcycle.agent._steps import Step, TrainingStatus
from mlcycle.agent._trial import deployment_dict, trial_deployment
from mlcycle.errors import MlcycleError, NotFound
from mlcycle.pipeline import PipelineHost, load_target
from mlcycle.store import ModelVersion

if TYPE_CHECKING:
    from mlcycle.monitor import Alerts
    from mlcycle.serve import Deployments, FeedbackLog

__all__ = ["Record", "Retrainer", "TrainingHost"]


class TrainingHost(PipelineHost, Protocol):
    """What the loop works on (a ``Workspace``): a pipeline host with deployments and feedback."""

    @property
    def deployments(self) -> Deployments:
        """Deployments as applied."""
        ...

    @property
    def feedback(self) -> FeedbackLog:
        """Labels joined to served predictions."""
        ...

    @property
    def alerts(self) -> Alerts:
        """Alerts, whose notifiers hear what became of the retrains they started."""
        ...


class Record(Protocol):
    """Appends one step of the loop as a ``training.*`` event (the loop's ``_step``)."""

    def __call__(
        self,
        kind: str,
        policy: TrainingPolicy,
        state: TrainingStatus,
        *,
        why: str,
        **extra: Any,  # Any: JSON values
    ) -> Step:
        """The step recorded."""
        ...


class Retrainer:
    """Runs retrains on ``host``, recording each step with ``record``."""

    def __init__(self, host: TrainingHost, record: Record) -> None:
        self.host = host
        self.record = record

    def run(self, policy: TrainingPolicy, attempt: TrainingStatus) -> list[Step]:
        """Run ``policy``'s pipeline for ``attempt`` and take its candidate as far as it goes."""
        before = self._latest_version(policy.model)
        try:
            ran = self._run_pipeline(policy)
        except Exception as exc:  # noqa: BLE001  (a failing pipeline must not stop the loop)
            return [self.failed(policy, attempt, "pipeline", f"{type(exc).__name__}: {exc}")]
        new = [v for v in self._versions(policy.model) if v.version > before]
        if not new:
            return [
                self.failed(
                    policy,
                    attempt,
                    "pipeline",
                    f"{ran} registered no new version of "
                    f"'{policy.model}'; its steps must register the retrained model",
                )
            ]
        candidate = _choose(new)
        attempt = replace(attempt, candidate=candidate.version)
        steps = [
            self.record(
                "training.candidate",
                policy,
                attempt,
                why=f"{ran} registered version {candidate.version}",
                version=candidate.version,
                versions=[v.version for v in new],
                ran=ran,
            )
        ]
        gated = self._gate(policy, attempt, candidate)
        steps.append(gated)
        if not gated.payload["passed"]:
            steps.append(
                self.record(
                    "training.rejected",
                    policy,
                    attempt,
                    why=f"version {candidate.version} failed the gates and is not deployed: "
                    f"{gated.why}",
                    stage="gates",
                )
            )
            return steps
        steps.append(self._start_trial(policy, attempt))
        return steps

    def _run_pipeline(self, policy: TrainingPolicy) -> str:
        """Run the policy's pipeline, every step anew; says what ran, raises when it failed.

        An alert asks for a new model even when the inputs look unchanged to the cache.
        """
        if policy.launch == "process":
            return run_retrain(self.host.settings, policy.pipeline, policy.params)
        pipeline = load_target(policy.pipeline, root=self.host.settings.home)
        result = pipeline.run(workspace=self.host, no_cache=True, **policy.params)
        return f"pipeline run {result.id}"

    def _gate(self, policy: TrainingPolicy, attempt: TrainingStatus, version: ModelVersion) -> Step:
        from mlcycle.registry import Evaluation  # noqa: PLC0415  (on first retrain)

        try:
            evaluation = (
                Evaluation.from_dict(version.evaluation)
                if version.evaluation is not None
                else self.host.registry.evaluate(version)
            )
        except MlcycleError as exc:
            return self.record(
                "training.gated",
                policy,
                attempt,
                why=f"the gates could not run: {exc}",
                passed=False,
                failures=["evaluation"],
            )
        failures = [g.name for g in evaluation.failures]
        return self.record(
            "training.gated",
            policy,
            attempt,
            why=evaluation.summary(),
            passed=evaluation.passed,
            failures=failures,
        )

    def _start_trial(self, policy: TrainingPolicy, attempt: TrainingStatus) -> Step:
        try:
            current = self.host.deployments.get(policy.deployment)
            production = self.host.registry.get(f"{policy.model}@production").version
            ref = f"{policy.model}/{attempt.candidate}"
            trial = trial_deployment(current, policy, ref)
            self.host.deployments.apply(trial)
        except MlcycleError as exc:
            return self.failed(policy, attempt, "trial", str(exc))
        share = (
            f" taking {policy.canary_share:.0%} of the traffic" if policy.trial == "canary" else ""
        )
        return self.record(
            "training.trial_started",
            policy,
            attempt,
            why=f"version {attempt.candidate} deployed as a {policy.trial}{share} of "
            f"{policy.deployment} against production version {production}",
            trial=policy.trial,
            production=production,
            canary_share=policy.canary_share if policy.trial == "canary" else None,
            since=self.host.clock.now().isoformat(),
            deployment_before=deployment_dict(current),
        )

    def failed(self, policy: TrainingPolicy, attempt: TrainingStatus, stage: str, why: str) -> Step:
        """Record that ``attempt`` failed at ``stage``; production is left as it is."""
        return self.record(
            "training.failed",
            policy,
            attempt,
            why=f"retrain failed at the {stage}: {why}; production is untouched",
            stage=stage,
        )

    def _latest_version(self, model: str) -> int:
        return max((v.version for v in self._versions(model)), default=0)

    def _versions(self, model: str) -> list[ModelVersion]:
        try:
            return self.host.registry.versions(model)
        except NotFound:  # not registered yet
            return []


def _choose(versions: list[ModelVersion]) -> ModelVersion:
    """The newest version whose stored gates passed, else the newest."""
    passed = [
        v for v in versions if v.evaluation is not None and v.evaluation.get("passed") is True
    ]
    return max(passed or versions, key=lambda v: v.version)
