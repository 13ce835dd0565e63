"""Contract test suites every store backend must pass (pytest test classes to subclass)."""

from __future__ import annotations

from mlcycle.store.testing._alerts import AlertLogContract
from mlcycle.store.testing._artifacts import ArtifactStoreContract
from mlcycle.store.testing._datasets import DatasetCatalogContract
from mlcycle.store.testing._deployments import DeploymentCatalogContract
from mlcycle.store.testing._metadata import MetadataStoreContract
from mlcycle.store.testing._models import ModelCatalogContract
from mlcycle.store.testing._monitor import MonitorResultLogContract
from mlcycle.store.testing._pipelines import PipelineLogContract
from mlcycle.store.testing._schedules import ScheduleCatalogContract

__all__ = [
    "AlertLogContract",
    "ArtifactStoreContract",
    "DatasetCatalogContract",
    "DeploymentCatalogContract",
    "MetadataStoreContract",
    "ModelCatalogContract",
    "MonitorResultLogContract",
    "PipelineLogContract",
    "ScheduleCatalogContract",
]
