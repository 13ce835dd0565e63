"""Executors that run independent steps at once: worker processes here, or a Dask cluster.

The main process schedules: a step is sent when everything it waits for is
done, with what its worker needs (the run's record, the step's record and
those of its inputs, its code digest), so a worker reads nothing of the run
from the store and writes only its own step's records. A worker keeps one
workspace per settings and one built DAG per run, runs the step through
``execute_node`` (so it is recorded as it would be locally) and returns its
record; outputs travel through the store, never through the scheduler.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import multiprocessing.util
import os
import queue
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import BackendUnavailable, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.pipeline._host import PipelineHost
from mlcycle.pipeline._logs import info_level
from mlcycle.pipeline._steps import RunContext, StepError, execute_node
from mlcycle.settings import Settings
from mlcycle.store import PipelineRun, StepRun, StepStatus

if TYPE_CHECKING:
    from mlcycle.pipeline._dag import Node

__all__ = ["DaskExecutor", "ProcessExecutor", "RemoteStep", "run_remote"]

CONNECT_TIMEOUT_S = 5.0
KEPT_HOSTS = 4
"""Workspaces a worker keeps open (one per settings); the least recently used is closed."""
KEPT_GRAPHS = 8
"""Built DAGs a worker keeps (one per pipeline run)."""
_hosts: OrderedDict[str, PipelineHost] = OrderedDict()
_graphs: OrderedDict[tuple[str, str, int], dict[str, Node]] = OrderedDict()


@dataclass(frozen=True, slots=True)
class RemoteStep:
    """One step sent to a worker, with everything it needs to run and record it."""

    settings: Settings
    run: PipelineRun
    node: str
    code: Digest
    records: dict[str, StepRun]  # the step's own record and those of its inputs
    no_cache: bool
    trust: bool


def _host(settings: Settings) -> PipelineHost:
    """One workspace per settings in a worker process, kept for the next steps."""
    key = settings.model_dump_json()
    if key in _hosts:
        _hosts.move_to_end(key)
        return _hosts[key]
    workspace = importlib.import_module("mlcycle.workspace").Workspace
    host: PipelineHost = workspace.open(settings)
    if not _hosts:  # worker processes end without atexit: close (and flush) them on the way out
        multiprocessing.util.Finalize(None, _close_hosts, exitpriority=10)
    _hosts[key] = host
    while len(_hosts) > KEPT_HOSTS:
        _key, oldest = _hosts.popitem(last=False)
        oldest.close()  # type: ignore[attr-defined]  # a Workspace
    return host


def _close_hosts() -> None:
    while _hosts:
        _key, host = _hosts.popitem()
        host.close()  # type: ignore[attr-defined]  # a Workspace


def _nodes(run: PipelineRun, root: Path) -> dict[str, Node]:
    """The DAG of ``run``, built once per run (and resume) in this worker."""
    from mlcycle.pipeline._target import load_target  # noqa: PLC0415  (it imports _pipeline)

    key = (run.target, run.id, run.resumes)
    if key in _graphs:
        _graphs.move_to_end(key)
        return _graphs[key]
    found = load_target(run.target, root=root)
    graph = found.build(found.resolved(run.params).call_values(found.specs))
    _graphs[key] = graph.nodes
    while len(_graphs) > KEPT_GRAPHS:
        _graphs.popitem(last=False)
    return graph.nodes


def run_remote(task: RemoteStep) -> StepRun:
    """In a worker: run one step of a pipeline run; its record, failed or not."""
    host = _host(task.settings)
    node = _nodes(task.run, task.settings.home)[task.node]
    context = RunContext(
        host=host,
        run=task.run,
        codes={task.node: task.code},
        records=dict(task.records),
        no_cache=task.no_cache,
        trust=task.trust,
    )
    try:
        with info_level():
            execute_node(context, node)
    except StepError:
        pass  # recorded as failed; the record says so
    finally:
        context.flush()  # the step's end; its tracking run's end follows with the next batch
    return context.records[task.node]


def remote_step(context: RunContext, node: Node) -> RemoteStep:
    """What a worker needs to run ``node`` of the run in ``context``."""
    names = (node.name, *node.inputs.values())
    return RemoteStep(
        settings=context.host.settings,
        run=context.run,
        node=node.name,
        code=context.codes[node.name],
        records={name: context.records[name] for name in names},
        no_cache=context.no_cache,
        trust=context.trust,
    )


def schedule(
    context: RunContext,
    order: list[Node],
    submit: Callable[[Node], Any],  # Any: a future of the executor
) -> None:
    """Send each step once what it waits for is done; on a failure, finish what runs, then raise.

    Futures report to a queue as they finish, so each completion costs the
    same however many steps run at once.
    """
    todo = [node for node in order if not context.records[node.name].status.done]
    names = {node.name for node in todo}
    blocking = {node.name: set(node.upstream) & names for node in todo}
    children: dict[str, list[Node]] = {}
    for node in todo:
        for upstream in blocking[node.name]:
            children.setdefault(upstream, []).append(node)
    finished: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()  # Any: a future
    running = 0
    failed: StepError | None = None

    def send(node: Node) -> None:
        nonlocal running
        future = submit(node)
        running += 1
        context.tell(replace(context.records[node.name], status=StepStatus.RUNNING))
        future.add_done_callback(lambda done, name=node.name: finished.put((name, done)))

    for node in todo:
        if not blocking[node.name]:
            send(node)
    while running:
        name, future = finished.get()
        running -= 1
        failed = _collect(context, name, future) or failed
        for child in children.get(name, ()) if failed is None else ():
            blocking[child.name].discard(name)
            if not blocking[child.name]:
                send(child)
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

        def submit(node: Node) -> concurrent.futures.Future[StepRun]:
            return self.pool.submit(run_remote, remote_step(context, node))

        schedule(context, order, submit)

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

        def submit(node: Node) -> Any:  # Any: a distributed.Future
            return self.client.submit(
                run_remote,
                remote_step(context, node),
                pure=False,
                key=f"mlcycle-{context.run.id}-{node.name}-{os.getpid()}-{id(node)}",
            )

        schedule(context, order, submit)

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        self.client.close()
