"""``@pipeline``: a function whose step calls build a DAG, run with ``.run(**params)``.

>>> from mlcycle.pipeline import pipeline, step
>>> @step
... def add(a: int, b: int) -> int:
...     return a + b
>>> @pipeline
... def sums(x: int = 1):
...     add(add(x, 2), 3)
>>> [node.name for node in sums.build({"x": 1}).order()]
['add', 'add_2']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from mlcycle.data import DatasetRef
from mlcycle.errors import ValidationFailed
from mlcycle.pipeline._dag import Graph, building
from mlcycle.pipeline._host import PipelineHost, default_host
from mlcycle.pipeline._params import ResolvedParams, coerce, param_specs, resolve_params
from mlcycle.pipeline._runner import PipelineResult, resume_run, start_run
from mlcycle.pipeline._target import target_of
from mlcycle.store import StepRun

__all__ = ["Pipeline", "pipeline"]


class Pipeline:
    """A pipeline function: its parameters, the DAG it builds, and runs of it."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.specs = param_specs(fn, self.name)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r})"

    def target(self, *, root: Path) -> str:
        """Where to find this pipeline again: ``FILE.py:NAME``, relative to ``root`` if under it."""
        return target_of(inspect.getsourcefile(self.fn), self.fn.__name__, root=root)

    def build(self, values: Mapping[str, Any]) -> Graph:  # Any: parameter values
        """Call the pipeline function with ``values``; its step calls become the DAG.

        Raises ``ValidationFailed`` naming the step and argument for a missing
        argument, and the steps on a cycle.
        """
        with building(self.name) as graph:
            self.fn(**values)
        if not graph.nodes:
            raise ValidationFailed(
                f"pipeline '{self.name}' calls no steps; call functions decorated with @step "
                "in its body"
            )
        graph.order()
        return graph

    def resolve(
        self,
        *,
        config: Mapping[str, Any],  # Any: TOML values
        overrides: Mapping[str, tuple[Any, str]],  # Any: values with their source
        resolve_dataset: Callable[[DatasetRef], str],
    ) -> ResolvedParams:
        """Every effective parameter value (see ``resolve_params``)."""
        return resolve_params(
            self.specs,
            pipeline=self.name,
            config=config,
            overrides=overrides,
            resolve_dataset=resolve_dataset,
        )

    def resolved(self, recorded: Mapping[str, Any]) -> ResolvedParams:  # Any: JSON values
        """The parameters a run recorded, to rebuild its DAG exactly (datasets stay pinned)."""
        return self.resolve(
            config={},
            overrides={k: (v, "recorded") for k, v in recorded.items()},
            resolve_dataset=str,
        )

    def parse_params(self, pairs: Mapping[str, str]) -> dict[str, Any]:  # Any: typed values
        """Command-line ``name=text`` values, typed by the parameters' annotations."""
        typed: dict[str, Any] = {}
        for name, text in pairs.items():
            if name not in self.specs:
                known = ", ".join(self.specs) or "none"
                raise ValidationFailed(
                    f"pipeline '{self.name}' has no parameter '{name}'; its parameters are: {known}"
                )
            typed[name] = coerce(self.specs[name], text, pipeline=self.name)
        return typed

    def run(
        self,
        *,
        workspace: PipelineHost | None = None,
        executor: str = "local",
        no_cache: bool = False,
        trust: bool = False,
        progress: Callable[[StepRun], None] | None = None,
        **params: Any,  # Any: parameter values
    ) -> PipelineResult:
        """Run the pipeline with ``params`` over its defaults and ``mlcycle.toml``.

        ``executor`` is ``local``, ``process`` or ``dask://host:port``;
        ``no_cache`` runs every step; ``trust`` lets pickled outputs load;
        ``progress`` is called with each step's record as its state changes.
        Raises ``PipelineFailed`` (with the run id to resume) when a step fails.
        """
        return start_run(
            self,
            host=workspace if workspace is not None else default_host(),
            overrides={k: (v, "run") for k, v in params.items()},
            executor=executor,
            no_cache=no_cache,
            trust=trust,
            progress=progress,
        )

    def run_from_cli(
        self,
        pairs: Mapping[str, str],
        *,
        workspace: PipelineHost,
        executor: str = "local",
        no_cache: bool = False,
        trust: bool = False,
        progress: Callable[[StepRun], None] | None = None,
    ) -> PipelineResult:
        """Run with command-line ``name=text`` parameters (recorded as coming from ``cli``)."""
        return start_run(
            self,
            host=workspace,
            overrides={k: (v, "cli") for k, v in self.parse_params(pairs).items()},
            executor=executor,
            no_cache=no_cache,
            trust=trust,
            progress=progress,
        )

    def resume(
        self,
        run_id: str,
        *,
        workspace: PipelineHost | None = None,
        allow_changed_code: bool = False,
        trust: bool = False,
        executor: str | None = None,
        progress: Callable[[StepRun], None] | None = None,
    ) -> PipelineResult:
        """Run the steps of ``run_id`` that did not complete (see ``mlcycle.pipeline.resume``)."""
        return resume_run(
            self,
            run_id,
            host=workspace if workspace is not None else default_host(),
            allow_changed_code=allow_changed_code,
            trust=trust,
            executor=executor,
            progress=progress,
        )


@overload
def pipeline(fn: Callable[..., Any], /, *, name: str | None = None) -> Pipeline: ...
@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...
def pipeline(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make a function a pipeline: its parameters are the pipeline's, its step calls the DAG."""
    if fn is not None:
        return Pipeline(fn, name=name)
    return lambda function: Pipeline(function, name=name)


def resume(
    run_id: str,
    *,
    workspace: PipelineHost | None = None,
    allow_changed_code: bool = False,
    trust: bool = False,
    executor: str | None = None,
    progress: Callable[[StepRun], None] | None = None,
) -> PipelineResult:
    """Resume pipeline run ``run_id``, loading its pipeline from the target it recorded.

    Only the steps that did not complete run; the others' stored outputs are
    reused. A run whose code changed is refused unless ``allow_changed_code``.
    """
    host = workspace if workspace is not None else default_host()
    return resume_run(
        None,
        run_id,
        host=host,
        allow_changed_code=allow_changed_code,
        trust=trust,
        executor=executor,
        progress=progress,
    )
