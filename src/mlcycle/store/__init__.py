"""Metadata and artifact stores: the Protocols every stage talks to, and their backends."""

from __future__ import annotations

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
    "MetadataStore",
    "MetricLog",
    "MetricPoint",
    "Run",
    "RunError",
    "RunLog",
    "RunStatus",
    "TableArea",
]
