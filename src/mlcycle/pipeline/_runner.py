"""Starting, driving and resuming pipeline runs, with their heartbeat and records.

A run resolves its parameters (datasets to versions), builds the DAG, checks
the executor, then records itself and its pending steps before any step
runs. While it runs, a heartbeat says the process is alive, so a run whose
process died is marked killed, never "running" forever. A resume rebuilds the
DAG from the recorded parameters and runs only the steps that did not
complete, refusing changed code unless told to accept it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlcycle.data import DatasetRef
from mlcycle.errors import PipelineFailed, ValidationFailed
from mlcycle.ids import Digest, new_id
from mlcycle.pipeline._code import code_digest, digest_of
from mlcycle.pipeline._dag import Node, literal_params
from mlcycle.pipeline._executors import Executor, open_executor
from mlcycle.pipeline._host import PipelineHost, pipeline_log
from mlcycle.pipeline._logs import info_level
from mlcycle.pipeline._steps import RunContext, StepError, tracked_params
from mlcycle.store import PipelineRun, PipelineStatus, RunStatus, StepRun, StepStatus

if TYPE_CHECKING:
    from mlcycle.pipeline._pipeline import Pipeline
    from mlcycle.track import ActiveRun

__all__ = ["PipelineResult", "reap_stale_pipelines", "resume_run", "start_run"]


@dataclass
class PipelineResult:
    """A pipeline run as it ended here: its record, its steps, and their outputs on demand."""

    record: PipelineRun
    steps: dict[str, StepRun]
    context: RunContext = field(repr=False)

    @property
    def id(self) -> str:
        """The pipeline run's id (what ``resume`` takes)."""
        return self.record.id

    @property
    def status(self) -> PipelineStatus:
        """How the run ended."""
        return self.record.status

    def output(self, step: str, *, trust: bool = False) -> object:
        """The output of ``step`` (read from the artifact store unless still in memory)."""
        if step not in self.steps:
            raise ValidationFailed(
                f"pipeline run {self.id} has no step '{step}'; its steps are: "
                f"{', '.join(self.steps)}"
            )
        self.context.trust = self.context.trust or trust
        return self.context.value(step)


def _pin(host: PipelineHost, ref: DatasetRef) -> str:
    found = host.data.get(ref)
    return f"{found.name}/{found.version}"


def step_codes(
    pipeline: Pipeline, order: list[Node], host: PipelineHost
) -> tuple[dict[str, Digest], Digest]:
    root = host.settings.home
    by_step: dict[int, Digest] = {}
    codes: dict[str, Digest] = {}
    for node in order:
        key = id(node.step)
        if key not in by_step:
            by_step[key] = code_digest(node.step.fn, root=root)
        codes[node.name] = by_step[key]
    total = digest_of({"pipeline": code_digest(pipeline.fn, root=root), "steps": codes})
    return codes, total


def start_run(
    pipeline: Pipeline,
    *,
    host: PipelineHost,
    overrides: dict[str, tuple[Any, str]],  # Any: values with their source
    executor: str,
    no_cache: bool,
    trust: bool,
    progress: Callable[[StepRun], None] | None = None,
) -> PipelineResult:
    """Resolve, build, record and run ``pipeline``; ``PipelineFailed`` names the run to resume."""
    config = host.settings.pipelines.get(pipeline.name)
    resolved = pipeline.resolve(
        config=config.params if config else {},
        overrides=overrides,
        resolve_dataset=lambda ref: _pin(host, ref),
    )
    graph = pipeline.build(resolved.call_values(pipeline.specs))
    order = graph.order()
    codes, total = step_codes(pipeline, order, host)
    runner = open_executor(executor)
    try:
        run_id = new_id()
        tracking = _tracking_run(host, pipeline.name, run_id, resolved.values)
        now = host.clock.now()
        record = PipelineRun(
            id=run_id,
            pipeline=pipeline.name,
            target=pipeline.target(root=host.settings.home),
            status=PipelineStatus.RUNNING,
            params=literal_params(resolved.values),
            param_sources=resolved.sources,
            datasets=resolved.datasets,
            code_digest=total,
            executor=runner.address,
            actor=host.actor,
            created_at=now,
            heartbeat_at=now,
            run_id=tracking.id,
        )
        steps = [
            StepRun(
                pipeline_run_id=run_id,
                step=node.name,
                position=position,
                status=StepStatus.PENDING,
                upstream=node.upstream,
                params=literal_params(node.params),
                code_digest=codes[node.name],
            )
            for position, node in enumerate(order)
        ]
        host.tracker.flush()  # the tracking run exists before rows point at it
        record = pipeline_log(host).create_pipeline_run(record, steps)
        context = RunContext(
            host=host,
            run=record,
            codes=codes,
            records={s.step: s for s in steps},
            no_cache=no_cache,
            trust=trust,
            progress=progress,
        )
        return _drive(context, order, runner, tracking)
    finally:
        runner.close()


def _tracking_run(
    host: PipelineHost,
    pipeline: str,
    run_id: str,
    params: dict[str, Any],  # Any: JSON values
) -> ActiveRun:
    return host.tracker.start_run(
        pipeline,
        name=f"{pipeline}-{run_id[-8:].lower()}",
        params=tracked_params(params),
        tags={"pipeline": pipeline, "pipeline.run": run_id},
    )


class _Heartbeat:
    """A thread that marks the run alive until stopped."""

    def __init__(self, host: PipelineHost, run_id: str) -> None:
        self.host = host
        self.run_id = run_id
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self._beat, name=f"mlcycle-pipeline-{run_id}", daemon=True
        )

    def _beat(self) -> None:
        interval = self.host.settings.tracking.heartbeat_interval_s
        log = pipeline_log(self.host)
        while not self.stop_event.wait(interval):
            try:
                log.heartbeat_pipeline_run(self.run_id, at=self.host.clock.now())
            except Exception:  # noqa: BLE001, S112  (a missed beat is retried next interval)
                continue

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def _drive(
    context: RunContext, order: list[Node], runner: Executor, tracking: ActiveRun
) -> PipelineResult:
    host, log = context.host, pipeline_log(context.host)
    try:
        with _Heartbeat(host, context.run.id), info_level():
            runner.execute(context, order)
            context.flush()
    except BaseException as exc:
        context.flush()  # the steps that ended before it are kept for a resume
        status = PipelineStatus.FAILED if isinstance(exc, Exception) else PipelineStatus.KILLED
        context.run = log.update_pipeline_run(
            replace(context.run, status=status, ended_at=host.clock.now(), error=str(exc))
        )
        tracking.__exit__(type(exc), exc, exc.__traceback__)
        if isinstance(exc, StepError):
            raise PipelineFailed(
                f"pipeline '{context.run.pipeline}' run {context.run.id} failed: {exc}; fix it "
                f"and resume with `mlcycle pipelines resume {context.run.id}` (or "
                f"{context.run.pipeline}.resume('{context.run.id}'))",
                run_id=context.run.id,
                step=exc.step,
            ) from exc
        raise
    tracking.finish(RunStatus.FINISHED)
    context.run = log.update_pipeline_run(
        replace(context.run, status=PipelineStatus.COMPLETED, ended_at=host.clock.now())
    )
    return PipelineResult(record=context.run, steps=dict(context.records), context=context)


def reap_stale_pipelines(host: PipelineHost) -> list[str]:
    """Mark pipeline runs (and tracking runs) whose process stopped heartbeating as killed."""
    now = host.clock.now()
    older_than = now - timedelta(seconds=host.settings.tracking.stale_after_s)
    host.tracker.reap_stale_runs()
    return pipeline_log(host).reap_stale_pipeline_runs(older_than=older_than, at=now)


def resume_run(
    pipeline: Pipeline | None,
    run_id: str,
    *,
    host: PipelineHost,
    allow_changed_code: bool,
    trust: bool,
    executor: str | None,
    progress: Callable[[StepRun], None] | None = None,
) -> PipelineResult:
    """Run the steps of ``run_id`` that did not complete, reusing the stored outputs of the rest."""
    from mlcycle.pipeline._target import load_target  # noqa: PLC0415  (it imports _pipeline)

    log = pipeline_log(host)
    reap_stale_pipelines(host)
    record = log.get_pipeline_run(run_id)
    if record.status is PipelineStatus.RUNNING:
        raise ValidationFailed(
            f"pipeline run {run_id} is still running (its process heartbeated at "
            f"{record.heartbeat_at.isoformat()}); resume it once it has failed or been killed"
        )
    found = pipeline or load_target(record.target, root=host.settings.home)
    graph = found.build(found.resolved(record.params).call_values(found.specs))
    order = graph.order()
    codes, total = step_codes(found, order, host)
    steps = {s.step: s for s in log.list_step_runs(run_id)}
    if set(steps) != set(codes):
        raise ValidationFailed(
            f"pipeline run {run_id} had steps {sorted(steps)}, the pipeline now builds "
            f"{sorted(codes)}; a run cannot be resumed with other steps: start a new run"
        )
    if record.status is PipelineStatus.COMPLETED:  # nothing left to run
        context = RunContext(host=host, run=record, codes=codes, records=steps, trust=trust)
        return PipelineResult(record=record, steps=steps, context=context)
    changed = sorted(name for name, s in steps.items() if s.code_digest != codes[name])
    code_changed = total != record.code_digest
    if code_changed and not allow_changed_code:
        which = f" (steps changed: {', '.join(changed)})" if changed else ""
        raise ValidationFailed(
            f"the code of pipeline '{record.pipeline}' changed since run {run_id}{which}; "
            "resuming would mix outputs of two versions. Pass allow_changed_code=True "
            "(--allow-changed-code) to accept it (recorded on the run), or start a new run"
        )
    runner = open_executor(executor or record.executor)
    try:
        tracking = _tracking_run(host, record.pipeline, run_id, record.params)
        host.tracker.flush()
        record = log.update_pipeline_run(
            replace(
                record,
                status=PipelineStatus.RUNNING,
                heartbeat_at=host.clock.now(),
                ended_at=None,
                error=None,
                resumes=record.resumes + 1,
                code_changed=record.code_changed or code_changed,
                code_digest=total,
                executor=runner.address,
                run_id=tracking.id,
            )
        )
        context = RunContext(
            host=host, run=record, codes=codes, records=steps, trust=trust, progress=progress
        )
        return _drive(context, order, runner, tracking)
    finally:
        runner.close()
