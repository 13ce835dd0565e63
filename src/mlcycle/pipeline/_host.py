"""What a pipeline runs on: a workspace, seen through the attributes pipelines use.

``pipeline`` sits below ``workspace`` in the layers, so it names the workspace
by shape (a Protocol) and reaches the working directory's one by name when
called. While a step runs, ``active_host`` is the workspace its pipeline runs
on, so ``mc.data.load`` inside a step reads the right stores.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol, cast

from mlcycle.clock import Clock
from mlcycle.settings import Settings
from mlcycle.store import ArtifactStore, MetadataStore, PipelineLog
from mlcycle.track import Tracker

if TYPE_CHECKING:
    from mlcycle.data import DatasetRegistry
    from mlcycle.registry import ModelRegistry

__all__ = ["PipelineHost", "active_host", "default_host", "hosting", "pipeline_log"]


class PipelineHost(Protocol):
    """The stores, clock, tracker and registries a pipeline run works with (a ``Workspace``)."""

    settings: Settings
    metadata: MetadataStore
    artifacts: ArtifactStore
    clock: Clock
    tracker: Tracker
    actor: str

    @property
    def data(self) -> DatasetRegistry:
        """Versioned datasets."""
        ...

    @property
    def registry(self) -> ModelRegistry:
        """Registered models."""
        ...


_active: ContextVar[PipelineHost | None] = ContextVar("mlcycle_pipeline_host", default=None)


def active_host() -> PipelineHost | None:
    """The workspace of the pipeline whose step is running here, if any."""
    return _active.get()


@contextmanager
def hosting(host: PipelineHost) -> Iterator[None]:
    """Make ``host`` the active one while a step runs."""
    token = _active.set(host)
    try:
        yield
    finally:
        _active.reset(token)


def default_host() -> PipelineHost:
    """The workspace ``mc`` acts on (found from the working directory)."""
    root = importlib.import_module("mlcycle")
    return cast("PipelineHost", root.current_workspace())


def pipeline_log(host: PipelineHost) -> PipelineLog:
    """The host's metadata store as a ``PipelineLog`` (the SQL store is every catalog)."""
    return cast("PipelineLog", host.metadata)
