"""Pipelines: plain-Python steps in a DAG, cached, recorded, resumable, on several executors.

``@step`` functions called inside a ``@pipeline`` function build the DAG;
``.run(**params)`` resolves the parameters (datasets to versions), records
the run and its steps, and runs each step inside a tracking run, storing its
output by type. A crashed or failed run resumes with ``resume(run_id)``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

from mlcycle.pipeline._code import code_digest, environment_digest
from mlcycle.pipeline._dag import Graph, Node, Step, StepHandle, StepOptions, step
from mlcycle.pipeline._executors import EXECUTORS, Executor, LocalExecutor, open_executor
from mlcycle.pipeline._host import PipelineHost, active_host
from mlcycle.pipeline._logs import LOG_LIMIT
from mlcycle.pipeline._outputs import INLINE_LIMIT, load_output, store_output
from mlcycle.pipeline._pipeline import Pipeline, pipeline, resume
from mlcycle.pipeline._runner import PipelineResult, reap_stale_pipelines
from mlcycle.pipeline._steps import OUTPUT, StepError
from mlcycle.pipeline._target import load_target

__all__ = [
    "EXECUTORS",
    "INLINE_LIMIT",
    "LOG_LIMIT",
    "OUTPUT",
    "Executor",
    "Graph",
    "LocalExecutor",
    "Node",
    "Pipeline",
    "PipelineHost",
    "PipelineResult",
    "Step",
    "StepError",
    "StepHandle",
    "StepOptions",
    "active_host",
    "code_digest",
    "environment_digest",
    "load_output",
    "load_target",
    "open_executor",
    "pipeline",
    "reap_stale_pipelines",
    "resume",
    "step",
    "store_output",
]


class _CallableModule(types.ModuleType):
    """``from mlcycle import pipeline`` gives this package, so it decorates when called."""

    def __call__(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None
    ) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
        """``@pipeline`` or ``@pipeline(name=...)``, as ``mlcycle.pipeline.pipeline``."""
        if fn is None:
            return pipeline(name=name)
        return pipeline(fn, name=name)


sys.modules[__name__].__class__ = _CallableModule
