"""Monitoring on a workspace: reference statistics of dataset versions, cached where they live.

A window is scored against the reference of the dataset version the model was
trained on, so that reference is prepared once per version, not per window:
the sorted columns and category counts are written to the artifact store, and
a lineage edge from ``data-content:<dataset digest>`` to
``monitor-reference:<blob digest>`` finds them again from any process. The key
is the content digest, so a version with the same rows (a rollback, say)
reuses the same reference. The last references read are also kept in memory.

An erasure changes the digest of every version it rewrites, so the old
references would never be read again, but they hold the erased values:
``forget`` deletes them (the workspace wires it to the data registry's
``on_erase``), and the next run builds the reference from the erased rows.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from mlcycle.data import DatasetProfile, DatasetRegistry
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.monitor._drift import drift
from mlcycle.monitor._reference import FORMAT, ReferenceStats
from mlcycle.monitor._report import DriftReport, TestName
from mlcycle.store import ArtifactStore, LineageGraph

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    import pandas as pd

    from mlcycle.clock import Clock
    from mlcycle.monitor._frames import FrameLike
    from mlcycle.monitor._sources import Sources
    from mlcycle.monitor._window import WindowResult

__all__ = ["CACHE_KIND", "Monitor"]

CACHE_KIND = FORMAT  # the edge kind names the format: a new format never reads an old blob
_KEY = "data-content:"
_TARGET = "monitor-reference:"
_IN_MEMORY = 2  # sorted references are large (8 bytes per value): keep only the latest few


class Monitor:
    """Drift of windows against stored dataset versions, with their references cached.

    >>> import tempfile, pandas as pd
    >>> from mlcycle.settings import Settings
    >>> from mlcycle.workspace import Workspace
    >>> with tempfile.TemporaryDirectory() as home, Workspace.open(Settings(home=home)) as ws:
    ...     _ = ws.data.register("bike", pd.DataFrame({"temp": [0.1 * i for i in range(100)]}))
    ...     ws.monitor.drift("bike", pd.DataFrame({"temp": [5.0] * 50})).drifted
    True
    """

    def __init__(
        self,
        *,
        data: DatasetRegistry,
        artifacts: ArtifactStore,
        lineage: LineageGraph,
        clock: Clock,
        actor: str,
        sources: Sources | None = None,
    ) -> None:
        self.data = data
        self.sources = sources
        self.artifacts = artifacts
        self.lineage = lineage
        self.clock = clock
        self.actor = actor
        self._memory: OrderedDict[str, ReferenceStats] = OrderedDict()
        self._lock = threading.Lock()

    def reference(self, ref: str, *, exact: bool = True) -> ReferenceStats:
        """The reference statistics of dataset version ``ref`` (``bike``, ``bike/3``).

        Built from every row on first use and kept in the artifact store;
        ``exact=False`` reads the version's stored profile instead (numbers
        from its sorted sample of up to 10,000 values; nothing is written).
        """
        version = self.data.get(ref)
        if not exact:
            return self._from_profile(version.ref, version.profile_digest)
        key = f"{_KEY}{version.digest}"
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
        if found is None:
            found = self._stored(key) or self._build(key, version.ref)
            with self._lock:
                self._memory[key] = found
                while len(self._memory) > _IN_MEMORY:
                    self._memory.popitem(last=False)
        return ReferenceStats(
            rows=found.rows, columns=found.columns, source=version.ref, digest=found.digest
        )

    def forget(self, digests: Iterable[str]) -> list[str]:
        """Delete the references cached for the dataset contents ``digests``.

        Every edge from ``data-content:<digest>`` to a reference goes (of any
        format), and each blob with it unless another edge still points at it.
        Returns the digests of the blobs deleted.
        """
        deleted = []
        for content in digests:
            key = f"{_KEY}{content}"
            with self._lock:
                self._memory.pop(key, None)
            for edge in self.lineage.edges_from(key):
                if not edge.target.startswith(_TARGET):
                    continue
                self.lineage.remove_edge(
                    key, edge.target, kind=edge.kind, actor=self.actor, time=self.clock.now()
                )
                if not self.lineage.edges_into(edge.target):
                    blob = edge.target.removeprefix(_TARGET)
                    self.artifacts.delete(Digest(blob))
                    deleted.append(blob)
        return deleted

    def drift(
        self,
        reference: str | ReferenceStats | FrameLike,
        current: FrameLike,
        *,
        columns: Sequence[str] | None = None,
        numeric_test: TestName = "ks",
        categorical_test: TestName = "chi2",
        tests: Mapping[str, TestName] | None = None,
        threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        categorical: Sequence[str] = (),
        drift_share: float = 0.5,
    ) -> DriftReport:
        """:func:`mlcycle.monitor.drift`, with dataset references read from this workspace."""
        if isinstance(reference, str):
            reference = self.reference(reference)
        return drift(
            reference,
            current,
            columns=columns,
            numeric_test=numeric_test,
            categorical_test=categorical_test,
            tests=tests,
            threshold=threshold,
            thresholds=thresholds,
            categorical=categorical,
            drift_share=drift_share,
        )

    def run(
        self,
        deployment: str,
        *,
        window: str | None = None,
        until: datetime | None = None,
        since: datetime | None = None,
    ) -> list[WindowResult]:
        """Score, store and alert on every complete unstored window of ``deployment``.

        ``window`` defaults to ``[monitors.<deployment>] window`` (else ``1d``);
        ``until`` to the workspace clock's now. Returns the windows scored now
        (none when every window was stored already, or nothing was logged yet).
        Raises ``NotFound`` for a deployment with neither a record nor a log.
        """
        from mlcycle.monitor._run import run_windows  # noqa: PLC0415  (serve loads on use)

        return run_windows(
            self, self._sources(), deployment, window=window, since=since, until=until
        )

    def results(
        self,
        deployment: str,
        *,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pd.DataFrame:
        """Stored results in long format: ``window_start, window_end, metric, value``."""
        import pandas as pd  # noqa: PLC0415  (with the data)

        points = self._sources().results.read_monitor_results(
            deployment, metrics=metrics, since=since, until=until
        )
        return pd.DataFrame(
            {
                "window_start": pd.to_datetime([p.window_start for p in points], utc=True),
                "window_end": pd.to_datetime([p.window_end for p in points], utc=True),
                "metric": pd.Series([p.metric for p in points], dtype=object),
                "value": pd.Series([p.value for p in points], dtype="float64"),
            }
        )

    def report(self, deployment: str, out_dir: str | Path) -> Path:
        """Write ``monitor-<deployment>.html`` (offline, with plots) and ``.json``.

        Both end with the age-quality curve (``age_quality``) when a monitored
        window has labels, and say why not otherwise.
        """
        from mlcycle.monitor._results import write_report  # noqa: PLC0415

        return write_report(self._sources(), self.clock, deployment, out_dir)

    def age_quality(
        self, deployment: str, *, model: str | None = None, window: str | None = None
    ) -> pd.DataFrame:
        """Every registered version of the model scored on the latest labelled window.

        Columns: ``version, registered_at, age_days, rows, note`` and the task's
        metrics. ``window`` (``7d``) scores the labelled predictions of that
        period up to now instead; ``model`` defaults to the one serving there.
        """
        from mlcycle.monitor._results import age_quality  # noqa: PLC0415

        return age_quality(self._sources(), self.clock, deployment, model=model, window=window)

    def _sources(self) -> Sources:
        if self.sources is None:
            raise ValidationFailed(
                "this Monitor was built without a workspace's stores; use ws.monitor"
            )
        return self.sources

    def _stored(self, key: str) -> ReferenceStats | None:
        for edge in reversed(self.lineage.edges_from(key)):
            if edge.kind != CACHE_KIND or not edge.target.startswith(_TARGET):
                continue
            digest = edge.target.removeprefix(_TARGET)
            try:
                with self.artifacts.open(digest) as stream:  # type: ignore[arg-type]
                    return ReferenceStats.read(stream, digest=digest)
            except NotFound:
                continue  # the blob is gone (erased): build it again
        return None

    def _build(self, key: str, ref: str) -> ReferenceStats:
        built = ReferenceStats.from_frame(self.data.load_table(ref), source=ref)
        buffer = io.BytesIO()
        built.write(buffer)
        buffer.seek(0)
        digest = self.artifacts.put(buffer)
        self.lineage.add_edge(
            key, f"{_TARGET}{digest}", kind=CACHE_KIND, actor=self.actor, time=self.clock.now()
        )
        return ReferenceStats(rows=built.rows, columns=built.columns, source=ref, digest=digest)

    def _from_profile(self, ref: str, digest: str | None) -> ReferenceStats:
        if digest is None:
            raise NotFound(
                f"{ref} has no stored profile; use the exact reference (exact=True), "
                "which reads the rows"
            )
        with self.artifacts.open(digest) as stream:  # type: ignore[arg-type]
            profile = DatasetProfile.from_json(stream.read())
        return ReferenceStats.from_profile(profile, source=f"{ref} (profile sample)")
