"""Metadata and artifact stores: the Protocols every stage talks to, and their backends."""

from __future__ import annotations

from mlcycle.store._artifacts import (
    LocalArtifactStore,
    check_artifact_name,
    check_table_name,
    open_artifact_store,
)
from mlcycle.store._backends import open_metadata_store, upgrade_metadata
from mlcycle.store._keys import check_key
from mlcycle.store._lineage import LineageTree, ancestry
from mlcycle.store._protocols import (
    ArtifactIndex,
    ArtifactStore,
    DatasetCatalog,
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
    Dataset,
    DatasetVersion,
    Environment,
    Event,
    Experiment,
    LineageEdge,
    MetricPoint,
    PointTuple,
    Run,
    RunEnd,
    RunError,
    RunStart,
    RunStatus,
    RunValues,
    WriteBatch,
    WriteOperation,
)
from mlcycle.store._sql import SqlMetadataStore
from mlcycle.store._sql_datasets import check_dataset_name

__all__ = [
    "ArtifactIndex",
    "ArtifactRecord",
    "ArtifactStore",
    "Dataset",
    "DatasetCatalog",
    "DatasetVersion",
    "Environment",
    "EnvironmentCatalog",
    "Event",
    "EventLog",
    "Experiment",
    "ExperimentCatalog",
    "LineageEdge",
    "LineageGraph",
    "LineageTree",
    "LocalArtifactStore",
    "MetadataStore",
    "MetricLog",
    "MetricPoint",
    "PointTuple",
    "Run",
    "RunEnd",
    "RunError",
    "RunLog",
    "RunStart",
    "RunStatus",
    "RunValues",
    "SqlMetadataStore",
    "TableArea",
    "WriteBatch",
    "WriteOperation",
    "ancestry",
    "check_artifact_name",
    "check_dataset_name",
    "check_key",
    "check_table_name",
    "open_artifact_store",
    "open_metadata_store",
    "upgrade_metadata",
]
