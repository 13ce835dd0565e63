"""What the store keeps about pipeline runs and the step runs they group.

A pipeline run is one execution of a DAG of steps (resumed in place, so its id
stays the same); a step run is one step of it, with what went in and came out
by digest, so a later run can reuse its outputs from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from mlcycle.ids import Digest, RunId

__all__ = ["PipelineRun", "PipelineStatus", "StepOutput", "StepRun", "StepStatus"]


class PipelineStatus(StrEnum):
    """Where a pipeline run is; ``running`` is the only status that may change by itself."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"


class StepStatus(StrEnum):
    """Where a step run is; ``completed`` and ``cached`` steps have stored outputs."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def done(self) -> bool:
        """Whether the step's outputs are stored (a resume reuses them)."""
        return self in {StepStatus.COMPLETED, StepStatus.CACHED}


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One stored step output: its digest, how it was serialised, and where its bytes are.

    A small JSON output keeps its text in ``inline``, in the step's record,
    instead of a blob in the artifact store; its digest is the one the
    artifact store would give the same bytes, so cache keys do not depend on
    where the bytes are kept.
    """

    digest: Digest
    serializer: str
    type: str
    size: int
    publisher: str | None = None
    inline: str | None = None

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The output as stored in JSON (``inline`` only when there is one)."""
        value: dict[str, Any] = {  # Any: JSON values
            "digest": self.digest,
            "serializer": self.serializer,
            "type": self.type,
            "size": self.size,
            "publisher": self.publisher,
        }
        if self.inline is not None:
            value["inline"] = self.inline
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> StepOutput:  # Any: JSON values
        """The output from its JSON form."""
        return cls(
            digest=Digest(value["digest"]),
            serializer=str(value["serializer"]),
            type=str(value["type"]),
            size=int(value["size"]),
            publisher=value.get("publisher"),
            inline=value.get("inline"),
        )


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """One execution of a pipeline: its parameters, datasets, code and outcome."""

    id: str
    pipeline: str
    target: str
    status: PipelineStatus
    params: dict[str, Any]  # Any: JSON values, every effective value
    param_sources: dict[str, str]
    datasets: dict[str, str]
    code_digest: Digest
    executor: str
    actor: str
    created_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None = None
    run_id: RunId | None = None
    error: str | None = None
    resumes: int = 0
    code_changed: bool = False

    @property
    def ref(self) -> str:
        """The lineage reference of this run, such as ``pipeline:01J...``."""
        return f"pipeline:{self.id}"


@dataclass(frozen=True, slots=True)
class StepRun:
    """One step of a pipeline run: inputs, outputs, code, timing, logs and the run it opened."""

    pipeline_run_id: str
    step: str
    position: int
    status: StepStatus
    upstream: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  # Any: JSON values
    inputs: dict[str, Digest] = field(default_factory=dict)
    outputs: dict[str, StepOutput] = field(default_factory=dict)
    code_digest: Digest | None = None
    cache_key: str | None = None
    cached_from: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    run_id: RunId | None = None
    logs: str = ""
    error: str | None = None
