"""Steps and pipelines: plain functions whose calls, inside a pipeline, build a DAG.

Outside a pipeline a step is an ordinary function call. Inside one (while
the pipeline function is being built) a call binds its arguments, checks
them, and returns a ``StepHandle`` standing for the output, so the calls
made in the pipeline body become the graph's nodes and the handles its edges.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

import orjson

from mlcycle.errors import ValidationFailed

__all__ = ["Graph", "Node", "Step", "StepHandle", "StepOptions", "building", "step"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How a step runs: retries with exponential backoff, caching, and the pickle opt-in."""

    retries: int = 0
    retry_delay: float = 1.0
    cache: bool = True
    pickle: bool = False
    name: str | None = None


class Step(Generic[P, R]):
    """A function made a pipeline step by ``@step``; called outside a pipeline, it just runs."""

    def __init__(self, fn: Callable[P, R], options: StepOptions) -> None:
        if options.retries < 0 or options.retry_delay < 0:
            raise ValidationFailed(
                f"step '{fn.__name__}': retries and retry_delay must not be negative"
            )
        self.fn = fn
        self.options = options
        self.name = options.name or fn.__name__
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        graph = _building.get()
        if graph is None:
            return self.fn(*args, **kwargs)
        handle: Any = graph.add(self, args, kwargs)  # Any: a handle stands in for R while building
        return handle  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Step({self.name!r})"


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *,
    retries: int = 0,
    retry_delay: float = 1.0,
    cache: bool = True,
    pickle: bool = False,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    retries: int = 0,
    retry_delay: float = 1.0,
    cache: bool = True,
    pickle: bool = False,
    name: str | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a pipeline step: ``@step`` or ``@step(retries=2, retry_delay=5.0)``.

    ``retries`` re-runs a failing step after ``retry_delay * 2**n`` seconds;
    ``cache=False`` always runs it; ``pickle=True`` lets it return objects no
    safe serializer handles (loading them back then needs trust).

    >>> @step
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> double(21)
    42
    """
    options = StepOptions(
        retries=retries, retry_delay=retry_delay, cache=cache, pickle=pickle, name=name
    )
    if fn is not None:
        return Step(fn, options)
    return lambda function: Step(function, options)


class StepHandle:
    """The output of a step called inside a pipeline, passed to later steps as an argument."""

    __slots__ = ("graph", "node")

    def __init__(self, graph: Graph, node: str) -> None:
        self.graph = graph
        self.node = node

    def after(self, *others: StepHandle) -> StepHandle:
        """Run this step only after ``others`` even though it takes none of their outputs."""
        for other in others:
            self.graph.nodes[self.node].after.add(other.node)
        return self

    def __repr__(self) -> str:
        return f"StepHandle({self.node!r})"

    def __bool__(self) -> bool:
        raise ValidationFailed(
            f"the output of step '{self.node}' is not known while the pipeline is built; "
            "branch on parameters, or move the decision into a step"
        )


@dataclass(slots=True)
class Node:
    """One step call: its bound arguments (handles for other steps' outputs) and ordering."""

    name: str
    step: Step[..., Any]
    arguments: dict[str, Any]  # Any: literal values or StepHandles
    after: set[str] = field(default_factory=set)

    @property
    def inputs(self) -> dict[str, str]:
        """Argument name to the node whose output it takes."""
        return {k: v.node for k, v in self.arguments.items() if isinstance(v, StepHandle)}

    @property
    def params(self) -> dict[str, Any]:  # Any: JSON values
        """The literal (non-step) arguments, as recorded and cached on."""
        return {k: v for k, v in self.arguments.items() if not isinstance(v, StepHandle)}

    @property
    def upstream(self) -> tuple[str, ...]:
        """Every node this one waits for, sorted."""
        return tuple(sorted({*self.inputs.values(), *self.after}))


@dataclass
class Graph:
    """The DAG a pipeline body built: nodes in the order they were called."""

    pipeline: str
    nodes: dict[str, Node] = field(default_factory=dict)

    def add(
        self, step: Step[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StepHandle:
        """Bind a step call's arguments and add it as a node; errors name step and argument."""
        name = self._unique(step.name)
        arguments = _bind(step, name, self.pipeline, args, kwargs)
        for key, value in arguments.items():
            if isinstance(value, StepHandle):
                if value.graph is not self:
                    raise ValidationFailed(
                        f"step '{name}' argument '{key}' is the output of a step of another "
                        f"pipeline build; pass outputs only within pipeline '{self.pipeline}'"
                    )
            else:
                _check_literal(value, step=name, argument=key)
        self.nodes[name] = Node(name=name, step=step, arguments=arguments)
        return StepHandle(self, name)

    def _unique(self, base: str) -> str:
        if base not in self.nodes:
            return base
        number = 2
        while f"{base}_{number}" in self.nodes:
            number += 1
        return f"{base}_{number}"

    def order(self) -> list[Node]:
        """The nodes in a topological order (call order where free); a cycle is an error."""
        done: list[Node] = []
        seen: set[str] = set()
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in seen:
                return
            if name in visiting:
                cycle = [*visiting[visiting.index(name) :], name]
                raise ValidationFailed(
                    f"pipeline '{self.pipeline}' has a cycle: {' -> '.join(cycle)}; "
                    f"step '{name}' cannot wait for itself"
                )
            visiting.append(name)
            for upstream in self.nodes[name].upstream:
                visit(upstream)
            visiting.pop()
            seen.add(name)
            done.append(self.nodes[name])

        for name in self.nodes:
            visit(name)
        return done


def _bind(
    step: Step[..., Any], name: str, pipeline: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:  # Any: argument values
    try:
        bound = step.signature.bind(*args, **kwargs)
    except TypeError as exc:
        missing = [
            p.name
            for p in step.signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in {p.VAR_POSITIONAL, p.VAR_KEYWORD}
            and p.name not in kwargs
        ][len(args) :]
        what = f"is missing argument '{missing[0]}'" if missing else f"is called wrongly ({exc})"
        raise ValidationFailed(
            f"step '{name}' in pipeline '{pipeline}' {what}; pass it when calling "
            f"{step.fn.__name__}() in the pipeline"
        ) from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _check_literal(value: object, *, step: str, argument: str) -> None:
    try:
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise ValidationFailed(
            f"step '{step}' argument '{argument}' is a {kind}: a step takes the outputs of "
            "other steps or JSON-able parameters (recorded and cached on); produce it in a "
            "step and pass that step's output"
        ) from None


_building: ContextVar[Graph | None] = ContextVar("mlcycle_pipeline_graph", default=None)


@contextmanager
def building(pipeline: str) -> Iterator[Graph]:
    """While open, step calls add nodes to the returned graph instead of running."""
    graph = Graph(pipeline)
    token = _building.set(graph)
    try:
        yield graph
    finally:
        _building.reset(token)


def literal_params(values: Mapping[str, Any]) -> dict[str, Any]:  # Any: JSON values
    """``values`` as JSON would give them back (tuples become lists)."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(dict(values)))
    return loaded
