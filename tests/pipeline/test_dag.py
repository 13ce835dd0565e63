"""Steps and pipelines: plain calls outside, a DAG inside, and build-time errors that name names."""

from __future__ import annotations

import pytest

import mlcycle
from mlcycle import pipeline, step
from mlcycle.errors import ValidationFailed
from mlcycle.pipeline import Pipeline, Step


@step
def add(a: int, b: int = 1) -> int:
    return a + b


@step(retries=2, retry_delay=5.0, cache=False)
def double(x: int) -> int:
    return 2 * x


def test_a_step_outside_a_pipeline_is_an_ordinary_call() -> None:
    assert add(1, 2) == 3
    assert double(4) == 8
    assert isinstance(double, Step)
    assert (double.options.retries, double.options.retry_delay, double.options.cache) == (
        2,
        5.0,
        False,
    )


def test_step_calls_in_a_pipeline_build_the_dag() -> None:
    @pipeline
    def chain(x: int = 1) -> None:
        first = add(x)
        add(double(first), b=x)

    graph = chain.build({"x": 3})
    order = graph.order()
    assert [node.name for node in order] == ["add", "double", "add_2"]
    assert graph.nodes["add_2"].inputs == {"a": "double"}
    assert graph.nodes["add_2"].params == {"b": 3}
    assert graph.nodes["double"].upstream == ("add",)


def test_from_mlcycle_import_step_and_pipeline_decorate() -> None:
    from mlcycle import pipeline as imported_pipeline
    from mlcycle import step as imported_step

    @imported_step
    def one() -> int:
        return 1

    @imported_pipeline
    def plain() -> None:
        one()

    @imported_pipeline(name="renamed")
    def other() -> None:
        one()

    assert isinstance(plain, Pipeline)
    assert other.name == "renamed"
    assert mlcycle.step is imported_step


def test_a_missing_argument_names_the_step_and_the_argument() -> None:
    @pipeline
    def broken() -> None:
        add()  # type: ignore[call-arg]

    with pytest.raises(
        ValidationFailed, match=r"step 'add' in pipeline 'broken' is missing argument 'a'"
    ):
        broken.build({})


def test_a_cycle_names_the_steps_on_it() -> None:
    @pipeline
    def looping() -> None:
        first = add(1)
        second: object = double(first)
        first.after(second)  # type: ignore[attr-defined]

    with pytest.raises(ValidationFailed, match=r"cycle: add -> double -> add"):
        looping.build({})


def test_arguments_must_be_step_outputs_or_json() -> None:
    @pipeline
    def odd() -> None:
        add(object())  # type: ignore[arg-type]

    with pytest.raises(ValidationFailed, match=r"step 'add' argument 'a' is a builtins.object"):
        odd.build({})


def test_branching_on_an_output_while_building_is_refused() -> None:
    @pipeline
    def branching() -> None:
        if add(1):
            add(2)

    with pytest.raises(ValidationFailed, match="output of step 'add' is not known"):
        branching.build({})


def test_a_pipeline_needs_steps_and_plain_parameters() -> None:
    @pipeline
    def empty() -> None:
        pass

    with pytest.raises(ValidationFailed, match="calls no steps"):
        empty.build({})
    with pytest.raises(ValidationFailed, match=r"keyword of Pipeline\.run"):

        @pipeline
        def reserved(executor: str = "x") -> None:
            pass

    with pytest.raises(ValidationFailed, match="ordinary named parameter"):

        @pipeline
        def starred(*values: int) -> None:
            pass

    with pytest.raises(ValidationFailed, match="must not be negative"):
        step(retries=-1)(add.fn)
