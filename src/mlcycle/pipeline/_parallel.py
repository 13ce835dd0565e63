"""Executors that run independent steps at once: worker processes here, or a Dask cluster.

The main process schedules: a step is sent when everything it waits for is
done. A worker opens the same stores from the run's settings, rebuilds the
DAG from the recorded parameters, runs the one step through ``execute_node``
(so it is recorded as it would be locally) and returns its record; outputs
travel through the artifact store, never through the scheduler.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlcycle.errors import BackendUnavailable, ValidationFailed
from mlcycle.pipeline._host import PipelineHost, pipeline_log
from mlcycle.pipeline._steps import RunContext, StepError, execute_node
from mlcycle.settings import Settings
from mlcycle.store import StepRun, StepStatus

if TYPE_CHECKING:
    from mlcycle.pipeline._dag import Node

__all__ = ["DaskExecutor", "ProcessExecutor", "run_remote"]

CONNECT_TIMEOUT_S = 5.0
_hosts: dict[str, PipelineHost] = {}


def _host(settings: Settings) -> PipelineHost:
    """One workspace per settings in a worker process, kept for the next steps."""
    key = settings.model_dump_json()
    if key not in _hosts:
        workspace = importlib.import_module("mlcycle.workspace").Workspace
        _hosts[key] = workspace.open(settings)
    return _hosts[key]


def run_remote(
    settings: Settings, target: str, run_id: str, node: str, *, no_cache: bool, trust: bool
) -> StepRun:
    """In a worker: run step ``node`` of pipeline run ``run_id``; its record, failed or not."""
    from mlcycle.pipeline._runner import step_codes  # noqa: PLC0415  (it imports this module)
    from mlcycle.pipeline._target import load_target  # noqa: PLC0415  (it imports _pipeline)

    host = _host(settings)
    found = load_target(target, root=settings.home)
    log = pipeline_log(host)
    record = log.get_pipeline_run(run_id)
    graph = found.build(found.resolved(record.params).call_values(found.specs))
    nodes = {n.name: n for n in graph.order()}
    codes, _total = step_codes(found, list(nodes.values()), host)
    records = {s.step: s for s in log.list_step_runs(run_id)}
    context = RunContext(
        host=host, run=record, codes=codes, records=records, no_cache=no_cache, trust=trust
    )
    try:
        return execute_node(context, nodes[node])
    except StepError:
        return context.records[node]
    finally:
        host.tracker.flush()


def schedule(
    context: RunContext,
    order: list[Node],
    submit: Callable[[Node], Any],  # Any: a future of the executor
    wait_any: Callable[[Iterable[Any]], Iterable[Any]],  # Any: futures
) -> None:
    """Send each step once what it waits for is done; on a failure, finish what runs, then raise."""
    pending = [node for node in order if not context.records[node.name].status.done]
    running: dict[Any, str] = {}  # Any: a future
    failed: StepError | None = None
    while pending or running:
        for node in list(pending):
            if failed is None and all(context.records[u].status.done for u in node.upstream):
                running[submit(node)] = node.name
                context.tell(replace(context.records[node.name], status=StepStatus.RUNNING))
                pending.remove(node)
        if not running:
            break
        for future in wait_any(list(running)):
            name = running.pop(future)
            failed = _collect(context, name, future) or failed
    if failed is not None:
        raise failed


def _collect(context: RunContext, name: str, future: Any) -> StepError | None:  # Any: a future
    try:
        record: StepRun = future.result()
    except Exception as exc:  # noqa: BLE001  (a worker that died: the step failed)
        return StepError(name, 1, exc)
    context.records[name] = record
    context.tell(record)
    if record.status is StepStatus.FAILED:
        return StepError(name, record.attempts, RuntimeError(record.error or "failed"))
    return None


def _remote_args(context: RunContext) -> tuple[Settings, str]:
    return context.host.settings, context.run.target


class ProcessExecutor:
    """Independent steps in parallel worker processes on this machine (``process:N``)."""

    def __init__(self, workers: int) -> None:
        self.address = f"process:{workers}"
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )

    @classmethod
    def open(cls, address: str) -> ProcessExecutor:
        """``process`` (one worker per core, at least 2) or ``process:N``."""
        _, _, count = address.partition(":")
        if count and not (count.isdigit() and int(count) > 0):
            raise ValidationFailed(f"executor {address!r}: give process:N with N a positive number")
        return cls(int(count) if count else max(2, os.cpu_count() or 2))

    def execute(self, context: RunContext, order: list[Node]) -> None:
        """Run the nodes in worker processes as their inputs become ready."""
        settings, target = _remote_args(context)

        def submit(node: Node) -> concurrent.futures.Future[StepRun]:
            return self.pool.submit(
                run_remote,
                settings,
                target,
                context.run.id,
                node.name,
                no_cache=context.no_cache,
                trust=context.trust,
            )

        def wait_any(futures: Iterable[Any]) -> Iterable[Any]:  # Any: futures
            done, _ = concurrent.futures.wait(
                list(futures), return_when=concurrent.futures.FIRST_COMPLETED
            )
            return done

        schedule(context, order, submit, wait_any)

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Steps on a Dask cluster (``dask://host:port``), its workers sharing the stores."""

    def __init__(self, address: str, client: Any) -> None:  # Any: a distributed.Client
        self.address = address
        self.client = client

    @classmethod
    def open(cls, address: str) -> DaskExecutor:
        """Connect to the scheduler at ``address``; ``BackendUnavailable`` within seconds."""
        try:
            import distributed  # noqa: PLC0415  (the dask extra)
        except ImportError as exc:
            raise ValidationFailed(
                f"executor {address!r} needs Dask: install mlcycle[dask]"
            ) from exc
        scheduler = "tcp://" + address.split("://", 1)[1]
        try:
            client = distributed.Client(  # type: ignore[no-untyped-call]  # untyped library
                scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(
                f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S:g} s "
                f"({exc}); start one (dask scheduler) or give another --executor; nothing ran"
            ) from exc
        return cls(address, client)

    def execute(self, context: RunContext, order: list[Node]) -> None:
        """Run the nodes on the cluster's workers as their inputs become ready."""
        import distributed  # noqa: PLC0415  (the dask extra)

        settings, target = _remote_args(context)

        def submit(node: Node) -> Any:  # Any: a distributed.Future
            return self.client.submit(
                run_remote,
                settings,
                target,
                context.run.id,
                node.name,
                no_cache=context.no_cache,
                trust=context.trust,
                pure=False,
                key=f"{context.run.id}-{node.name}-{os.getpid()}-{id(node)}",
            )

        def wait_any(futures: Iterable[Any]) -> Iterable[Any]:  # Any: futures
            with self.client.as_current():
                found = distributed.wait(list(futures), return_when="FIRST_COMPLETED")  # type: ignore[no-untyped-call]  # untyped library
            done: Iterable[Any] = found.done  # Any: futures
            return done

        schedule(context, order, submit, wait_any)

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        self.client.close()
