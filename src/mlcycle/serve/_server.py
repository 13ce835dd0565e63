"""The model server's state in one worker: its routes, its batchers, and how they change.

A ``ModelServer`` loads every variant of its deployment, gives each a
micro-batching queue, and answers requests (``queue``, then ``answer``) through the traffic
policy. In the background it follows the store's event log: when an alias
one of its variants follows moves (``model.alias_moved``) or its deployment
changes (``deployment.applied``), it loads the new versions first, then swaps
the routes in one assignment; requests already queued on an old version are
still answered by it, so a switch fails and drops nothing. Several workers
share nothing but the stores: each follows the log on its own.

A stored deployment that is removed (``deployment.removed``) stops being
served, as the store says: requests already queued are answered, new ones
get 404 naming the removal, and readiness turns 503 so a load balancer
stops sending traffic; the process stays up, and serves again as soon as a
deployment of that name is applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from mlcycle.errors import MlcycleError, NotFound, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.serve._batching import Batcher, Job, row_columns
from mlcycle.serve._deployments import (
    check_deployment,
    check_logged,
    check_variants,
    log_schema,
)
from mlcycle.serve._errors import Overloaded
from mlcycle.serve._metrics import (
    LaneMetrics,
    Metrics,
    add_observed,
    bucket_bounds,
    observe_many,
)
from mlcycle.serve._model import ServedModel, load_model
from mlcycle.serve._predlog import PredictionLog
from mlcycle.serve._routing import Lane, Routes
from mlcycle.serve._shadow import (
    RegistryOpener,
    ShadowLog,
    ShadowProcess,
    SinkOpener,
    Tally,
)
from mlcycle.serve._sink import PredictionBatch, PredictionSink, logged_inputs
from mlcycle.store import Deployment, Event, EventLog, Variant

if TYPE_CHECKING:
    from mlcycle.clock import Clock
    from mlcycle.registry import ModelRegistry
    from mlcycle.serve._rows import Rows, Schema
    from mlcycle.settings import ServeSettings

__all__ = ["FOLLOWED_EVENTS", "Answer", "DeploymentSource", "ModelServer"]

LaneT = TypeVar("LaneT", Lane[Batcher], Lane[ShadowProcess])

FOLLOWED_EVENTS = ("model.alias_moved", "deployment.applied", "deployment.removed")
"""The event types that make a server reload."""
_PAGE = 1000
_RETRY_MAX_S = 30.0
"""The longest wait before a failed refresh is tried again."""
_MAX_ERROR = 500  # characters of a failure's message kept in the log
_log = logging.getLogger("mlcycle.serve")


class DeploymentSource(Protocol):
    """Where a server reads its deployment again when a ``deployment.applied`` event names it."""

    def get_deployment(self, name: str) -> Deployment:
        """The deployment's applied state; ``NotFound`` when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got: its outputs and who predicted them."""

    outputs: np.ndarray
    lane: Lane[Batcher]
    request_id: str


Decoder = Callable[["Schema"], "Rows"]
"""Decodes the request body against a model's schema (each lane may have its own)."""


class ModelServer:
    """One worker's deployment: routes, micro-batching, shadows, metrics and hot changes."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        deployment: Deployment,
        settings: ServeSettings,
        sink: PredictionSink | None = None,
        events: EventLog | None = None,
        deployments: DeploymentSource | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        registry_opener: RegistryOpener | None = None,
        sink_opener: SinkOpener | None = None,
    ) -> None:
        deployment = check_deployment(deployment)
        self.registry = registry
        self.registry_opener = registry_opener
        """Opens the registry in a shadow variant's own process; needed to serve shadows."""
        self.sink_opener = sink_opener
        """Opens the prediction log in a shadow variant's own process, which logs its copies.

        Without one, a shadow's copies are predicted and measured, not logged.
        """
        self.deployment = deployment
        self.settings = settings
        self.sink = sink
        self.events = events
        self.deployments = deployments
        self.metrics = metrics or Metrics()
        # Logged prediction times follow the project's clock, so a simulated one (the demo's
        # fast-forwarded days) puts them in the windows the monitors score.
        self._time = time.time if clock is None else clock.time
        self.inflight = 0
        self.arriving = 0
        self._routes: Routes | None = None
        self._removed: str | None = None
        self._cursor = 0
        self._follower: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        """Lanes a change replaced, closing (``_retire``); ``stop`` waits for them."""
        self._refreshing = asyncio.Lock()
        self._stale = False
        """Whether a followed change may not be served yet (``_poll`` refreshes until it is)."""
        self._retry_at = 0.0
        self._retry_s = 0.0
        self._ids = itertools.count(1)
        self._id_prefix = new_id()[-12:].lower()

    @property
    def name(self) -> str:
        """The deployment's name, which is the model name in every URL."""
        return self.deployment.name

    @property
    def routes(self) -> Routes:
        """The routes serving now."""
        if self._removed is not None:
            raise NotFound(self._removed)
        if self._routes is None:
            raise NotFound(f"deployment '{self.name}' is not loaded yet; wait for readiness")
        return self._routes

    @property
    def ready(self) -> bool:
        """Whether every variant is loaded and answering."""
        return self._routes is not None

    async def start(self) -> None:
        """Load every variant, then follow the event log (when there is one)."""
        if self.events is not None:
            self._cursor = await asyncio.to_thread(self._log_head)
            # What changed between reading the deployment (the app's factory) and the head:
            # the first poll reads the store again.
            self._stale = self.deployments is not None
        self._routes = await self._build(self.deployment, previous=())
        gc.collect()
        _settle_heap()
        if self.events is not None:
            self._follower = asyncio.get_running_loop().create_task(
                self._follow(), name=f"follow {self.name}"
            )

    async def stop(self) -> None:
        """Stop following, answer what is queued, then close the sink (it writes out)."""
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self._routes is not None:
            await _close_all(self._routes.lanes)
        await asyncio.gather(*self._retiring)
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)

    def new_request_id(self) -> str:
        """A request id unique across workers and restarts, cheap to make."""
        return f"{self._id_prefix}-{next(self._ids)}"

    def admit(self) -> None:
        """Count a request in; ``Overloaded`` when ``max_inflight`` are already in."""
        if self.inflight >= self.settings.max_inflight:
            self.metrics.shed.labels(self.name, "overload").inc()
            raise Overloaded(
                f"the server has {self.inflight} requests in flight, its limit "
                f"(serve.max_inflight); retry shortly"
            )
        self.inflight += 1
        self.arriving += 1

    def release(self, *, arrived: bool) -> None:
        """Count a request out; ``arrived`` when it never reached ``queue`` (it failed before)."""
        self.inflight -= 1
        if arrived:
            self._arrived(None)

    def queue(
        self,
        decode: Decoder,
        *,
        key: str | None,
        request_id: str,
        arrived: float,
        version: str | None = None,
    ) -> tuple[Lane[Batcher], Job]:
        """Route, check and queue one request's rows: the lane that answers it, and its job.

        The caller has ``admit``-ted the request; its arriving count ends here,
        whether its rows were queued or refused (an unknown version, rows that
        do not fit the model's signature). ``answer`` awaits the job; between
        the two, the caller knows which variant a failure belongs to.
        """
        queued: Lane[Batcher] | None = None
        try:
            routes = self.routes
            lane = routes.choose(key) if version is None else routes.for_version(version)
            rows = decode(lane.model.schema)
            job = Job(
                rows=rows,
                request_id=request_id,
                arrived=arrived,
                time=self._time(),
                future=asyncio.get_running_loop().create_future(),
            )
            lane.queue.submit(job)
            queued = lane
        finally:
            self._arrived(queued)
        return lane, job

    async def answer(self, lane: Lane[Batcher], job: Job) -> Answer:
        """The outputs of a job ``queue`` queued, once predicted (the model's error, if any)."""
        outputs = await job.future
        return Answer(outputs=outputs, lane=lane, request_id=job.request_id)

    def _arrived(self, queued: Lane[Batcher] | None) -> None:
        """A request stopped arriving (its rows ``queued`` in that lane, or refused).

        When it was the last one arriving, rows waiting for more in another
        lane (or in any, when it was refused) have nothing left to wait for:
        they go now, not when their wait ends.
        """
        self.arriving -= 1
        routes = self._routes
        if self.arriving or routes is None:
            return
        if queued is not None and len(routes.answering) == 1:
            return  # the common case: its own lane flushes soon anyway
        for lane in routes.answering:
            if lane is not queued:
                lane.queue.arrivals_ended()

    def count(self, lane: Lane[Batcher] | None, status: int) -> None:
        """Count a request answered with an error status under its lane (``None``: none)."""
        labels = (self.name, "", "", "", str(status))
        if lane is not None:
            labels = (*_labels(self.name, lane), str(status))
        self.metrics.requests.labels(*labels).inc()
        self.metrics.errors.labels(*labels).inc()

    def record_failure(
        self,
        lane: Lane[Batcher] | None,
        *,
        request_id: str,
        status: int,
        message: str,
        arrived: float,
    ) -> None:
        """Log a failed request as an ``error`` row of the prediction log (not a 401)."""
        if self.sink is None or status == HTTPStatus.UNAUTHORIZED:
            return
        self.sink.append(
            PredictionBatch(
                deployment=self.name,
                model="" if lane is None else lane.model.name,
                model_version=0 if lane is None else lane.model.version,
                variant="" if lane is None else lane.variant.name,
                shadow=False,
                request_ids=[request_id],
                row_indexes=[0],
                times=[self._time()],
                latency_ms=[(time.perf_counter() - arrived) * 1000],
                inputs={},
                outputs=[],
                error=f"{status}: {message}"[:_MAX_ERROR],
            )
        )

    async def refresh(self) -> None:
        """Read the deployment and its aliases again; load and swap in what changed.

        A stored deployment that is gone stops being served (see the module).
        """
        async with self._refreshing:
            deployment = self.deployment
            if self.deployments is not None:
                try:
                    stored = await asyncio.to_thread(self.deployments.get_deployment, self.name)
                except NotFound:
                    self._withdraw()
                    return
                deployment = check_deployment(stored)
            old = () if self._routes is None else self._routes.lanes
            new = await self._build(deployment, previous=old)
            if self._removed is not None:
                _log.warning("deployment %s was applied again: serving it", self.name)
            self.deployment, self._routes, self._removed = deployment, new, None
            _settle_heap()
            kept = {id(lane.queue) for lane in new.lanes}
            self._retire([lane for lane in old if id(lane.queue) not in kept])

    def _retire(self, lanes: Sequence[Lane[Any]]) -> None:
        """Close lanes no route uses any more, without holding up the next change.

        An answering lane answers what it holds; a shadow's process predicts
        its queued copies and writes out its log at its idle priority, which
        on a busy machine takes a while: the follower reads the next change
        meanwhile (an alias moved right after a shadow was dropped).
        """
        if not lanes:
            return
        task = asyncio.get_running_loop().create_task(
            _close_all(lanes), name=f"retire lanes of {self.name}"
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _withdraw(self) -> None:
        """Stop serving a removed deployment: answer what is queued, refuse what comes."""
        if self._removed is not None:
            return
        self._removed = (
            f"deployment '{self.name}' was removed from the store, so this server no longer "
            f"serves it; apply it again with `mlcycle deploy {self.name} --model ...`"
        )
        _log.warning(
            "deployment %s was removed: answering 404 until it is applied again", self.name
        )
        old, self._routes = self._routes, None
        if old is not None:
            self._retire(old.lanes)

    async def _build(self, deployment: Deployment, *, previous: Sequence[Lane[Any]]) -> Routes:
        """Lanes for every variant: kept when its model version is unchanged, else loaded.

        A kept lane keeps its queue (and what waits in it) even when the
        variant's weight changed. Raises ``ValidationFailed`` when the
        variants' models predict different kinds of output or take a feature as
        different kinds (an alias moved), or a kind other than the deployment's
        prediction log holds.
        """
        current = {
            (lane.variant.name, lane.variant.shadow, lane.model.ref): lane for lane in previous
        }
        versions = [
            await asyncio.to_thread(self.registry.get, variant.model)
            for variant in deployment.variants
        ]
        refs = [version.ref.removeprefix("models:/") for version in versions]
        # An alias that moved to a model predicting another kind of output, or taking a feature
        # as another kind: its rows would be refused by the prediction log's table. Checked
        # from the stored signatures before any model loads, so a refused change, tried again
        # at later polls, loads nothing.
        schemas = {
            f"{variant.name} ({ref})": log_schema(version.signature)
            for variant, ref, version in zip(deployment.variants, refs, versions, strict=True)
        }
        check_variants(deployment.name, schemas)
        if self.sink is not None:  # also a single variant's alias that moved
            logged = await asyncio.to_thread(self.sink.logged_schema, deployment.name)
            check_logged(deployment.name, schemas, logged)
        answering: list[Lane[Batcher]] = []
        shadows: list[Lane[ShadowProcess]] = []
        try:
            for variant, ref in zip(deployment.variants, refs, strict=True):
                lane = current.get((variant.name, variant.shadow, ref))
                if lane is not None and lane.variant != variant:
                    lane = dataclasses.replace(lane, variant=variant)
                if variant.shadow:
                    shadows.append(lane or await self._open_shadow(deployment, variant))
                else:
                    answering.append(lane or await self._open_answering(deployment, variant))
        except BaseException:
            # Close what this build opened: a shadow's process would outlive the failed change.
            kept = {id(lane.queue) for lane in previous}
            built: list[Lane[Any]] = [*answering, *shadows]
            await _close_all([lane for lane in built if id(lane.queue) not in kept])
            raise
        return Routes(deployment=deployment, answering=tuple(answering), shadows=tuple(shadows))

    async def _open_answering(self, deployment: Deployment, variant: Variant) -> Lane[Batcher]:
        settings = self.settings
        model, tag = await self._load(deployment, variant)
        batcher = Batcher(
            model,
            max_rows=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            arriving=lambda: self.arriving,
            done=functools.partial(self._batch_done, tag),
            called=tag.metrics.batch_rows.observe,
            inline=model.runtime == "onnx",
        )
        return self._opened(Lane(variant=variant, model=model, queue=batcher, metrics=tag.metrics))

    async def _open_shadow(self, deployment: Deployment, variant: Variant) -> Lane[ShadowProcess]:
        if self.registry_opener is None:
            raise MlcycleError(
                f"deployment '{deployment.name}' has a shadow variant ({variant.name}), which "
                "predicts in a process of its own: give the server a registry_opener "
                "(functools.partial(mlcycle.workspace.open_registry, settings))"
            )
        if not isinstance(self.sink, PredictionLog):
            raise MlcycleError(
                f"deployment '{deployment.name}' has a shadow variant ({variant.name}), which "
                "takes its copies of the answered requests from the prediction log's writer: "
                "give the server a PredictionLog as its sink (workspace.prediction_log())"
            )
        model, tag = await self._load(deployment, variant)
        half = self.settings.max_inflight // 2
        shed = self.metrics.shed.labels(self.name, "shadow").inc
        shadow = ShadowProcess(
            model,
            opener=self.registry_opener,
            source=self.sink,
            deployment=deployment.name,
            max_rows=self.settings.max_batch_size,
            max_queue=self.settings.shadow_queue,
            done=functools.partial(self._copies_done, tag),
            # Past half of ``max_inflight`` requests in flight, copies are dropped before any
            # request is refused.
            shedding=lambda: self.inflight > half,
            shed=shed,
            clock=self._time,
            log=None
            if self.sink_opener is None
            else ShadowLog(self.sink_opener, deployment.name, variant.name),
            lag_bounds=bucket_bounds(tag.metrics.shadow_lag),
        )
        await shadow.start()
        return self._opened(Lane(variant=variant, model=model, queue=shadow, metrics=tag.metrics))

    async def _load(self, deployment: Deployment, variant: Variant) -> tuple[ServedModel, _Tag]:
        model = await asyncio.to_thread(
            load_model, self.registry, variant.model, max_rows=self.settings.max_rows
        )
        lane_metrics = self.metrics.lane(
            deployment.name, variant.name, model.name, model.version, shadow=variant.shadow
        )
        return model, _Tag(
            deployment=deployment.name, variant=variant, model=model, metrics=lane_metrics
        )

    def _opened(self, lane: LaneT) -> LaneT:
        self.metrics.loads.labels(*_labels(self.name, lane)).inc()
        _log.info(
            "deployment %s variant %s serves %s (%s%s)",
            self.name,
            lane.variant.name,
            lane.model.ref,
            lane.model.runtime,
            ", in its own process" if lane.variant.shadow else "",
        )
        return lane

    def _batch_done(
        self, tag: _Tag, jobs: Sequence[Job], rows: Rows, outputs: np.ndarray, now: float
    ) -> None:
        """Value metrics and the prediction log for the requests one predict call answered."""
        _observe_values(tag, outputs)
        if self.sink is not None:
            self.sink.append(_prediction_batch(tag, jobs, rows, outputs, now))

    def _copies_done(self, tag: _Tag, predicted: Tally) -> None:
        """A shadow's metrics, as its process added them up (it logged the copies too)."""
        for rows in predicted.calls:
            tag.metrics.batch_rows.observe(rows)
        if tag.metrics.shadow_lag is not None and predicted.lags is not None:
            add_observed(tag.metrics.shadow_lag, predicted.lags)
        if predicted.values is not None:
            add_observed(tag.metrics.values, predicted.values)

    def _log_head(self) -> int:
        """The position of the newest followed event: changes before it are already loaded."""
        assert self.events is not None, "only called when following"
        cursor = 0
        while page := self.events.read_events(since=cursor, types=FOLLOWED_EVENTS, limit=_PAGE):
            cursor = page[-1].position
        return cursor

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self._poll()
            except ValidationFailed as exc:  # a change it must not serve: said without a trace
                _log.error(
                    "deployment %s: a change is not served, it serves what it served: %s",
                    self.name,
                    exc,
                )
            except Exception:  # noqa: BLE001  (keep serving the loaded versions; retry next poll)
                _log.exception("deployment %s: following the event log failed", self.name)

    async def _poll(self) -> None:
        """Read the new events; refresh when one concerns this deployment, or a refresh failed.

        A refresh that failed (a model that would not load, the store out of
        reach) is tried again at the next poll, then after twice as long each
        time, up to ``_RETRY_MAX_S``: its events are already read, and the
        change must not be missed for good.
        """
        assert self.events is not None, "only called when following"
        while page := await asyncio.to_thread(
            self.events.read_events, since=self._cursor, types=FOLLOWED_EVENTS, limit=_PAGE
        ):
            self._stale = self._stale or any(self._concerns(event) for event in page)
            self._cursor = page[-1].position
        if not self._stale or time.monotonic() < self._retry_at:
            return
        try:
            await self.refresh()
        except Exception:
            self._retry_s = min(max(2 * self._retry_s, self.settings.poll_interval_s), _RETRY_MAX_S)
            self._retry_at = time.monotonic() + self._retry_s
            raise
        self._stale, self._retry_s = False, 0.0

    def _concerns(self, event: Event) -> bool:
        payload: dict[str, Any] = event.payload or {}  # Any: JSON values
        if event.type != "model.alias_moved":  # deployment.applied or deployment.removed
            return self.deployments is not None and payload.get("name") == self.name
        served = {
            variant.model.removeprefix("models:/").split("@")[0].split("/")[0]
            for variant in self.deployment.variants
        }
        return payload.get("name") in served


def _labels(deployment: str, lane: Lane[Any]) -> tuple[str, str, str, str]:
    return deployment, lane.variant.name, lane.model.name, str(lane.model.version)


@dataclass(frozen=True, slots=True)
class _Tag:
    """What a lane's batcher reports its predict calls under."""

    deployment: str
    variant: Variant
    model: ServedModel
    metrics: LaneMetrics


def _prediction_batch(
    tag: _Tag, jobs: Sequence[Job], rows: Rows, outputs: np.ndarray, now: float
) -> PredictionBatch:
    request_ids, indexes, times = row_columns(jobs, rows.count)
    latency = [(now - job.arrived) * 1000 for job in jobs]
    if rows.count != len(jobs):  # requests of several rows: a latency per row
        latency = [ms for job, ms in zip(jobs, latency, strict=True) for _ in range(job.rows.count)]
    return PredictionBatch(
        deployment=tag.deployment,
        model=tag.model.name,
        model_version=tag.model.version,
        variant=tag.variant.name,
        shadow=tag.variant.shadow,
        request_ids=request_ids,
        row_indexes=indexes,
        times=times,
        latency_ms=latency,
        inputs=logged_inputs(rows),
        outputs=outputs,
    )


async def _close_all(lanes: Sequence[Lane[Any]]) -> None:
    """Close every lane, answering ones first; one that fails to close is logged.

    A closing shadow takes no more copies, so it closes once the answering
    lanes have answered what they held: their last batches' copies still
    reach it (a replaced pair of variants would shed them otherwise).
    """
    answering = [lane for lane in lanes if not lane.variant.shadow]
    shadows = [lane for lane in lanes if lane.variant.shadow]
    for group in (answering, shadows):
        results = await asyncio.gather(
            *(lane.queue.close() for lane in group), return_exceptions=True
        )
        for lane, result in zip(group, results, strict=True):
            if isinstance(result, BaseException):
                _log.error("closing variant %s failed: %r", lane.variant.name, result)


def _observe_values(tag: _Tag, outputs: np.ndarray) -> None:
    """The lane's prediction value summary, for outputs that are single numbers."""
    if outputs.ndim == 1 and outputs.dtype.kind in "fiub":
        observe_many(tag.metrics.values, outputs.astype(np.float64, copy=False))


def _settle_heap() -> None:
    """Move every object alive now out of the garbage collector's sight (``gc.freeze``).

    A served process holds millions of long-lived objects (the modules of
    NumPy, pandas, Arrow and SQLAlchemy, the models); each full collection
    walks them all, stopping the event loop for 100 to 400 ms on this
    machine, which was the whole p99 of a single-row request. Frozen, they
    are never walked again; collections look only at objects made after, the
    requests' own. Called after the models load and after each swap of
    routes (a new model version), so what a swap loaded is frozen too.
    """
    gc.freeze()
