"""Running one step of a pipeline run: cache lookup, retries, logs, outputs and its record.

Every executor runs steps through ``execute_node``, in this process or in a
worker, so a step is recorded the same way wherever it runs: its state is
written before its function starts and after it ends, which is what makes a
run resumable after a crash. To keep that at one transaction per step, a
step's end (or a cache hit) waits in ``RunContext.pending`` and is written
together with the next step's start, before that step's function runs, or
when the runner flushes; no user code runs while a record waits.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mlcycle.errors import MlcycleError
from mlcycle.ids import Digest, RunId
from mlcycle.pipeline._code import digest_of, environment_digest
from mlcycle.pipeline._dag import Node, literal_params
from mlcycle.pipeline._host import PipelineHost, hosting, pipeline_log
from mlcycle.pipeline._logs import LogBuffer, capture_logs
from mlcycle.pipeline._outputs import load_output, store_output
from mlcycle.store import PipelineRun, StepOutput, StepRun, StepStatus, WriteBatch

__all__ = ["OUTPUT", "RunContext", "StepError", "execute_node", "tracked_params"]

OUTPUT = "return"
"""The name a step's return value is stored under."""


class StepError(MlcycleError):
    """A step failed after its retries; the run stops there."""

    def __init__(self, step: str, attempts: int, cause: BaseException) -> None:
        tries = "attempt" if attempts == 1 else "attempts"
        super().__init__(
            f"step '{step}' failed after {attempts} {tries}: {type(cause).__name__}: {cause}"
        )
        self.step = step


@dataclass
class RunContext:
    """What the steps of one pipeline run share in one process."""

    host: PipelineHost
    run: PipelineRun
    codes: dict[str, Digest]
    records: dict[str, StepRun]
    no_cache: bool = False
    trust: bool = False
    values: dict[str, object] = field(default_factory=dict)
    progress: Callable[[StepRun], None] | None = None
    pending: dict[str, StepRun] = field(default_factory=dict)

    def value(self, node: str) -> object:
        """The output of ``node``: kept in memory, else read from the artifact store."""
        if node not in self.values:
            output = self.records[node].outputs[OUTPUT]
            self.values[node] = load_output(
                output,
                what=f"the output of step '{node}' of pipeline run {self.run.id}",
                artifacts=self.host.artifacts,
                settings=self.host.settings,
                trust=self.trust,
            )
        return self.values[node]

    def save(
        self, record: StepRun, *, defer: bool = False, tracking: WriteBatch | None = None
    ) -> StepRun:
        """Keep a step's new state here and write it, with any pending ones, unless ``defer``.

        ``tracking`` (the step's tracking-run start) is written in the same transaction.
        """
        self.records[record.step] = record
        self.pending[record.step] = record
        if not defer:
            self.flush(tracking)
        self.tell(record)
        return record

    def flush(self, tracking: WriteBatch | None = None) -> None:
        """Write the pending step states (after ``tracking``) in one transaction."""
        if self.pending or tracking:
            pipeline_log(self.host).save_step_runs(list(self.pending.values()), tracking=tracking)
            self.pending.clear()

    def tell(self, record: StepRun) -> None:
        """Pass a step's new state to whoever shows progress."""
        if self.progress is not None:
            self.progress(record)


def tracked_params(values: dict[str, Any]) -> dict[str, Any]:  # Any: JSON values
    """Parameters as a tracking run takes them: text, so a ``None`` is left out."""
    return {key: value for key, value in values.items() if value is not None}


def cache_key(ctx: RunContext, node: Node) -> tuple[str, dict[str, Digest], dict[str, Any]]:
    """The step's cache key, input digests and (JSON) parameters."""
    inputs = {arg: ctx.records[src].outputs[OUTPUT].digest for arg, src in node.inputs.items()}
    params = literal_params(node.params)
    key = digest_of(
        {
            "code": ctx.codes[node.name],
            "environment": environment_digest(),
            "inputs": inputs,
            "params": params,
        }
    )
    return key, inputs, params


def execute_node(ctx: RunContext, node: Node) -> StepRun:
    """Run (or reuse from the cache) one step and record it; ``StepError`` when it fails."""
    key, inputs, params = cache_key(ctx, node)
    base = replace(
        ctx.records[node.name],
        inputs=inputs,
        params=params,
        code_digest=ctx.codes[node.name],
        cache_key=key,
        error=None,
        logs="",
    )
    if node.step.options.cache and not ctx.no_cache:
        hit = _cache_hit(ctx, key)
        if hit is not None:
            now = ctx.host.clock.now()
            return ctx.save(
                replace(
                    base,
                    status=StepStatus.CACHED,
                    outputs=hit.outputs,
                    cached_from=hit.pipeline_run_id,
                    run_id=hit.run_id,
                    attempts=0,
                    started_at=now,
                    ended_at=now,
                    duration_s=0.0,
                ),
                defer=True,
            )
    return _run(ctx, node, base)


def _cache_hit(ctx: RunContext, key: str) -> StepRun | None:
    waiting = (
        r for r in ctx.pending.values() if r.cache_key == key and r.status is StepStatus.COMPLETED
    )
    hit = next(waiting, None) or pipeline_log(ctx.host).find_cached_step(key)
    if hit is None:
        return None
    stored = (
        o.inline is not None or ctx.host.artifacts.exists(o.digest) for o in hit.outputs.values()
    )
    return hit if all(stored) else None


def _run(ctx: RunContext, node: Node, base: StepRun) -> StepRun:
    host = ctx.host
    started: list[StepRun] = []

    def write(run_id: RunId, start: WriteBatch) -> None:
        # the step's run is stored with (and before) its record, which points at it
        record = replace(
            base,
            status=StepStatus.RUNNING,
            started_at=host.clock.now(),
            cached_from=None,
            attempts=0,
            run_id=run_id,
        )
        started.append(ctx.save(record, tracking=start))

    tracking = host.tracker.start_run(
        ctx.run.pipeline,
        name=node.name,
        params=tracked_params(base.params),
        tags={"pipeline": ctx.run.pipeline, "pipeline.run": ctx.run.id, "pipeline.step": node.name},
        parent=ctx.run.run_id,
        write=write,
    )
    record = started[0]
    logs = LogBuffer()
    clock = time.monotonic()
    tried = [0]
    try:
        with tracking:
            inputs = {arg: ctx.value(src) for arg, src in node.inputs.items()}
            bound = inspect.BoundArguments(
                node.step.signature, OrderedDict({**node.arguments, **inputs})
            )
            value = _attempts(ctx, node, bound, logs, tried)
            output = store_output(
                value,
                step=node.name,
                allow_pickle=node.step.options.pickle,
                artifacts=host.artifacts,
                publisher=host.actor,
            )
    except Exception as exc:
        logs.write("".join(traceback.format_exception(exc)))
        ctx.save(
            _ended(
                ctx,
                record,
                StepStatus.FAILED,
                started=clock,
                logs=logs,
                attempts=tried[0],
                error=str(exc),
            )
        )
        raise StepError(node.name, max(tried[0], 1), exc) from exc
    ctx.values[node.name] = value
    return ctx.save(
        _ended(
            ctx,
            record,
            StepStatus.COMPLETED,
            started=clock,
            logs=logs,
            attempts=tried[0],
            outputs={OUTPUT: output},
        ),
        defer=True,
    )


def _attempts(
    ctx: RunContext, node: Node, bound: inspect.BoundArguments, logs: LogBuffer, tried: list[int]
) -> object:
    options = node.step.options
    for attempt in range(1, options.retries + 2):
        tried[0] = attempt
        try:
            with hosting(ctx.host), capture_logs(logs):
                return node.step.fn(*bound.args, **bound.kwargs)
        except Exception as exc:
            if attempt > options.retries:
                exc.add_note(f"mlcycle: step '{node.name}' attempt {attempt}")
                raise
            delay = options.retry_delay * 2 ** (attempt - 1)
            logs.write(
                f"[mlcycle: attempt {attempt} of step '{node.name}' failed: "
                f"{type(exc).__name__}: {exc}; retrying in {delay:g} s]\n"
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _ended(
    ctx: RunContext,
    record: StepRun,
    status: StepStatus,
    *,
    started: float,
    logs: LogBuffer,
    attempts: int,
    outputs: dict[str, StepOutput] | None = None,
    error: str | None = None,
) -> StepRun:
    return replace(
        record,
        status=status,
        ended_at=ctx.host.clock.now(),
        duration_s=time.monotonic() - started,
        logs=logs.text(),
        attempts=attempts,
        outputs=outputs if outputs is not None else record.outputs,
        error=error,
    )
