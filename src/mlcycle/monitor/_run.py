"""``ws.monitor.run``: score every complete window of a deployment's prediction log, once.

Windows sit on a fixed grid (multiples of the window length since the Unix
epoch, so ``1d`` windows run from midnight UTC), which makes a window the
same in every process and every run: a window already stored is skipped, so
running twice stores nothing twice. The prediction log is read once for the
whole range, the labels once, and each model version's reference (its
training data version, cached by ``Monitor.reference``) once per run.

Prediction drift compares a window's outputs with the outputs of the first
window the same model version answered on this deployment (the registry keeps
no predictions on training data); that first window's outputs are stored in
the artifact store and found again through a lineage edge, like the data
references.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.monitor._alerts import MonitorResult
from mlcycle.monitor._reference import FORMAT, ReferenceStats
from mlcycle.monitor._rules import parse_duration
from mlcycle.monitor._sources import Sources
from mlcycle.monitor._window import (
    ModelFacts,
    WindowResult,
    latency,
    performance,
    score_window,
)
from mlcycle.serve import FeedbackLog, aware_utc, log_table_name, read_predictions
from mlcycle.settings import MonitorSettings

if TYPE_CHECKING:
    from mlcycle.data import DatasetRegistry
    from mlcycle.monitor._monitor import Monitor

__all__ = ["run_windows", "window_length"]

MAX_WINDOWS = 100_000
_OUTPUTS_KEY = "monitor-outputs:"
_TARGET = "monitor-reference:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_length(text: str | None, config: MonitorSettings) -> timedelta:
    """The window length ``text`` (or the config's) names; at least one second."""
    length = parse_duration(text if text is not None else config.window)
    if length < timedelta(seconds=1):
        raise ValidationFailed(f"the window {text!r} is shorter than a second; use 1h or 1d")
    return length


def run_windows(
    monitor: Monitor,
    sources: Sources,
    deployment: str,
    *,
    window: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[WindowResult]:
    """Score and store every complete, unstored window of ``deployment`` in ``[since, until)``.

    ``since`` defaults to the end of the latest stored window, else the first
    logged prediction, so a regular run reads only the log it has not scored.
    """
    config = sources.monitors.get(deployment, MonitorSettings())
    length = window_length(window, config)
    end = aware_utc(until) if until is not None else monitor.clock.now().astimezone(UTC)
    start = aware_utc(since) if since is not None else _last_end(sources, deployment, end)
    log = read_predictions(
        spool_dir=sources.spool_dir,
        tables=sources.tables,
        deployment=deployment,
        since=start,
        until=end,
        errors=True,
        ordered=False,
    )
    if log.num_rows == 0 and (start is None or not _has_log(sources, deployment)):
        if not _known(sources, deployment) and not _has_log(sources, deployment):
            raise NotFound(_unknown(sources, deployment))
        return []  # nothing logged yet
    micros = log.column("time").cast(pa.int64()).to_numpy()
    if micros.size > 1 and bool(np.any(np.diff(micros) < 0)):  # spool parts, several writers
        order = np.argsort(micros, kind="stable")
        log, micros = log.take(pa.array(order)), micros[order]
    step = int(length.total_seconds() * 1e6)
    first = _grid(start, step, up=True) if start is not None else (int(micros[0]) // step) * step
    last = _grid(end, step, up=False) - step
    if (last - first) // step >= MAX_WINDOWS:
        raise ValidationFailed(
            f"{(last - first) // step + 1:,} windows of {length} from {_moment(first):%Y-%m-%d} "
            f"to {end:%Y-%m-%d}, over the limit of {MAX_WINDOWS:,} per run; choose a longer "
            "window or a later since"
        )
    stored = set(sources.results.monitor_windows(deployment, since=_moment(first), until=end))
    labels = FeedbackLog(
        tables=sources.tables, spool_dir=sources.spool_dir, clock=monitor.clock
    ).read(deployment)
    scorer = _Scorer(monitor, sources, deployment, config)
    scored: list[WindowResult] = []
    for low in range(first, last + 1, step):
        window_start, window_end = _moment(low), _moment(low + step)
        if (window_start, window_end) in stored:
            continue
        lo, hi = np.searchsorted(micros, [low, low + step], side="left")
        result = scorer.score(log.slice(int(lo), int(hi - lo)), window_start, window_end, labels)
        if sources.results.record_monitor_window(
            deployment,
            window_start=window_start,
            window_end=window_end,
            values=result.values,
            recorded_at=monitor.clock.now(),
        ):
            scored.append(result)
    if scored and sources.alerts is not None:
        sources.alerts().evaluate(
            [MonitorResult(deployment, r.window_end, r.values) for r in scored]
        )
    return scored


class _Scorer:
    """Scores the windows of one run, with each model version's facts looked up once."""

    def __init__(
        self, monitor: Monitor, sources: Sources, deployment: str, config: MonitorSettings
    ) -> None:
        self.monitor = monitor
        self.sources = sources
        self.deployment = deployment
        self.config = config
        self.models: dict[tuple[str, int], ModelFacts] = {}

    def score(
        self, rows: pa.Table, start: datetime, end: datetime, labels: pa.Table
    ) -> WindowResult:
        failed = _failed(rows)
        rows = rows.filter(pc.invert(failed)) if failed is not None else rows
        answered = rows.filter(pc.invert(rows.column("shadow")))
        values: dict[str, float | None] = {"rows": float(answered.num_rows)}
        values["error_rate"] = _error_rate(answered, failed)
        if answered.num_rows == 0:
            values["labelled_rows"] = 0.0
            return WindowResult(self.deployment, start, end, values, 0, None)
        facts = self._facts(answered)
        if facts.outputs is None:
            model, version = _key_of(facts.ref)
            own = pc.and_(
                pc.equal(answered.column("model"), model),
                pc.equal(answered.column("model_version"), version),
            )
            self._keep_outputs(facts, answered.filter(own))
        found, report = score_window(
            answered,
            end=end,
            model=facts,
            config=self.config,
            labels=labels,
            features=self._features(answered, facts),
        )
        values.update(found)
        values.update(self._shadows(rows, labels))
        return WindowResult(self.deployment, start, end, values, answered.num_rows, report)

    def _features(self, rows: pa.Table, facts: ModelFacts) -> list[str]:
        logged = [field.name for field in rows.column("inputs").type]
        if self.config.features is not None:
            missing = [name for name in self.config.features if name not in logged]
            if missing:
                raise ValidationFailed(
                    f"feature(s) {missing} of [monitors.{self.deployment}] features are not "
                    f"in the prediction log of '{self.deployment}' (its inputs are {logged}); "
                    "fix `features` in mlcycle.toml"
                )
            return list(self.config.features)
        wanted = list(facts.inputs) or logged
        return [name for name in wanted if name in logged]

    def _shadows(self, rows: pa.Table, labels: pa.Table) -> dict[str, float | None]:
        shadows = rows.filter(rows.column("shadow"))
        values: dict[str, float | None] = {}
        for variant in sorted(set(shadows.column("variant").to_pylist())):
            part = shadows.filter(pc.equal(shadows.column("variant"), variant))
            prefix = f"shadow.{variant}."
            values[f"{prefix}rows"] = float(part.num_rows)
            values.update(latency(part, prefix))
            facts = self._facts(part)
            values.update(
                performance(part, labels, task=facts.task, config=self.config, prefix=prefix)
            )
        return values

    def _facts(self, rows: pa.Table) -> ModelFacts:
        key = _most_rows(rows)
        if key not in self.models:
            self.models[key] = self._lookup(*key)
        return self.models[key]

    def _lookup(self, model: str, version: int) -> ModelFacts:
        ref = f"models:/{model}/{version}"
        try:
            found = self.sources.registry().get(ref)
        except NotFound:
            return ModelFacts(ref, None, None, {}, self.config.task, None, None)
        inputs = {
            spec["name"]: (str(spec.get("type", "")), bool(spec.get("nullable", False)))
            for spec in found.signature.get("inputs", ())
        }
        task = self.config.task or self.sources.registry().settings.gates_for(model).task
        reference, created = None, None
        if found.dataset_versions:
            data: DatasetRegistry = self.monitor.data
            dataset = data.get(found.dataset_versions[0].removeprefix("data:/"))
            created = dataset.created_at
            reference = self.monitor.reference(dataset.ref.removeprefix("data:/"))
        outputs = self._stored_outputs(ref)
        return ModelFacts(ref, found.created_at, created, inputs, task, reference, outputs)

    def _keep_outputs(self, facts: ModelFacts, rows: pa.Table) -> None:
        """Keep this window's outputs as the version's prediction reference for later windows."""
        built = ReferenceStats.from_frame(
            pa.table({"output": rows.column("output")}),
            source=f"outputs of the first window of {facts.ref} on {self.deployment}",
        )
        buffer = io.BytesIO()
        built.write(buffer)
        buffer.seek(0)
        digest = self.monitor.artifacts.put(buffer)
        self.monitor.lineage.add_edge(
            self._outputs_key(facts.ref),
            f"{_TARGET}{digest}",
            kind=FORMAT,
            actor=self.monitor.actor,
            time=self.monitor.clock.now(),
        )
        self.models[_key_of(facts.ref)] = replace(facts, outputs=built)

    def _stored_outputs(self, ref: str) -> ReferenceStats | None:
        for edge in reversed(self.monitor.lineage.edges_from(self._outputs_key(ref))):
            if edge.kind == FORMAT and edge.target.startswith(_TARGET):
                digest = Digest(edge.target.removeprefix(_TARGET))
                with contextlib.suppress(NotFound), self.monitor.artifacts.open(digest) as stream:
                    return ReferenceStats.read(stream, digest=digest)
        return None

    def _outputs_key(self, ref: str) -> str:
        return f"{_OUTPUTS_KEY}{self.deployment}:{ref}"


def _most_rows(rows: pa.Table) -> tuple[str, int]:
    """The model and version that answered most of ``rows`` (usually every one)."""
    model, version = rows.column("model"), rows.column("model_version")
    names = pc.value_counts(model)
    name = names.field("values")[int(np.argmax(names.field("counts")))].as_py()
    versions = pc.value_counts(version.filter(pc.equal(model, name)))
    return str(name), int(
        versions.field("values")[int(np.argmax(versions.field("counts")))].as_py()
    )


def _key_of(ref: str) -> tuple[str, int]:
    name, version = ref.removeprefix("models:/").rsplit("/", 1)
    return name, int(version)


def _failed(rows: pa.Table) -> pa.ChunkedArray | None:
    if "error" not in rows.column_names:
        return None
    return pc.is_valid(rows.column("error"))


def _error_rate(answered: pa.Table, failed: pa.ChunkedArray | None) -> float | None:
    errors = 0 if failed is None else int(pc.sum(failed).as_py() or 0)
    requests = int(pc.sum(pc.equal(answered.column("row_index"), 0)).as_py() or 0)
    total = requests + errors
    return None if total == 0 else errors / total


def _last_end(sources: Sources, deployment: str, until: datetime) -> datetime | None:
    stored = sources.results.monitor_windows(deployment, until=until)
    return max((window_end for _start, window_end in stored), default=None)


def _known(sources: Sources, deployment: str) -> bool:
    try:
        sources.deployments.get_deployment(deployment)
    except NotFound:
        return False
    return True


def _has_log(sources: Sources, deployment: str) -> bool:
    """Whether anything was ever logged for ``deployment`` (spooled here, or a Delta table)."""
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)

    if (sources.spool_dir / deployment).is_dir():
        return True
    uri = sources.tables.table_uri(log_table_name(deployment))
    return bool(DeltaTable.is_deltatable(uri, sources.tables.storage_options() or None))


def _unknown(sources: Sources, deployment: str) -> str:
    names = [d.name for d in sources.deployments.list_deployments()]
    listed = ", ".join(names) if names else "none yet"
    return (
        f"no deployment '{deployment}' and no prediction log for it (the deployments are: "
        f"{listed}); check the name with `mlcycle deployments list`"
    )


def _grid(moment: datetime, step: int, *, up: bool) -> int:
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return (-(-micros // step) if up else micros // step) * step


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
