"""Metadata and artifact stores: the Protocols every stage talks to, and their backends."""

from __future__ import annotations

from mlcycle.store._artifacts import (
    LocalArtifactStore,
    check_artifact_name,
    check_table_name,
    open_artifact_store,
)
from mlcycle.store._protocols import (
    ArtifactIndex,
    ArtifactStore,
    EnvironmentCatalog,
    EventLog,
    ExperimentCatalog,
    LineageGraph,
    MetadataStore,
    MetricLog,
    RunLog,
    TableArea,
)
from mlcycle.store._records import (
    ArtifactRecord,
    Environment,
    Event,
    Experiment,
    LineageEdge,
    MetricPoint,
    Run,
    RunError,
    RunStatus,
)

__all__ = [
    "ArtifactIndex",
    "ArtifactRecord",
    "ArtifactStore",
    "Environment",
    "EnvironmentCatalog",
    "Event",
    "EventLog",
    "Experiment",
    "ExperimentCatalog",
    "LineageEdge",
    "LineageGraph",
    "LocalArtifactStore",
    "MetadataStore",
    "MetricLog",
    "MetricPoint",
    "Run",
    "RunError",
    "RunLog",
    "RunStatus",
    "TableArea",
    "check_artifact_name",
    "check_table_name",
    "open_artifact_store",
]
