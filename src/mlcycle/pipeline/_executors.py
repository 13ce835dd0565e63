"""Executors: where the steps of a run execute (``local``, ``process``, ``dask://host:port``).

An executor gets the run's context and its nodes in DAG order, and must run
every node that is not done yet after the nodes it waits for. The address
is checked before the run is recorded, so a bad one leaves nothing running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mlcycle.errors import ValidationFailed
from mlcycle.pipeline._steps import execute_node

if TYPE_CHECKING:
    from mlcycle.pipeline._dag import Node
    from mlcycle.pipeline._steps import RunContext

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "open_executor"]

EXECUTORS = "local, process (or process:N for N workers) or dask://HOST:PORT"


class Executor(Protocol):
    """Runs the steps of one pipeline run."""

    address: str

    def execute(self, context: RunContext, order: list[Node]) -> None:
        """Run every node not done yet, each after what it waits for; raise ``StepError``."""
        ...

    def close(self) -> None:
        """Release workers or connections."""
        ...


class LocalExecutor:
    """Steps one after another in this process; outputs stay in memory between steps."""

    address = "local"

    def execute(self, context: RunContext, order: list[Node]) -> None:
        """Run the nodes in order, stopping at the first failure."""
        for node in order:
            if not context.records[node.name].status.done:
                execute_node(context, node)

    def close(self) -> None:
        """Nothing to release."""


def open_executor(address: str) -> Executor:
    """The executor ``address`` names; ``ValidationFailed`` lists the known ones."""
    if address == "local":
        return LocalExecutor()
    if address == "process" or address.startswith("process:"):
        from mlcycle.pipeline._parallel import ProcessExecutor  # noqa: PLC0415  (rarely used)

        return ProcessExecutor.open(address)
    if address.startswith(("dask://", "tcp://")):
        from mlcycle.pipeline._parallel import DaskExecutor  # noqa: PLC0415  (optional extra)

        return DaskExecutor.open(address)
    raise ValidationFailed(f"unknown executor {address!r}; the executors are {EXECUTORS}")
