"""Every error mlcycle raises on purpose, so callers can catch by meaning.

The tree::

    MlcycleError
    ├── NotFound (LookupError)          an id, name or version that does not exist
    ├── AlreadyExists                   a name or version that is already taken
    ├── Conflict                        a concurrent change got there first; read again and retry
    │   └── AliasConflict               an alias moved between reading it and moving it
    ├── ValidationFailed (ValueError)   input that breaks a rule; the message names the rule
    │   ├── QuerySyntaxError            a ``where`` expression that does not parse
    │   ├── ImmutableValue              a param logged again with another value
    │   ├── SchemaFileError             a schema file that does not parse; names file and line
    │   ├── GateFailed                  a promotion refused by failed validation gates
    │   └── Untrusted                   a model or artifact that would run code on load, untrusted
    ├── IntegrityError                  stored content that no longer matches its digest
    ├── UnsafePath                      an artifact name that would escape its store
    ├── BackendUnavailable              a database or object store that cannot be reached
    ├── PipelineFailed                  a pipeline run stopped at a failed step; resume it by id
    └── WorkspaceError                  a workspace that cannot be opened or written

HTTP status codes are chosen by exception class in ``serve`` and ``ui``; the
core never knows about HTTP.
"""

from __future__ import annotations

__all__ = [
    "AliasConflict",
    "AlreadyExists",
    "BackendUnavailable",
    "Conflict",
    "GateFailed",
    "ImmutableValue",
    "IntegrityError",
    "MlcycleError",
    "NotFound",
    "PipelineFailed",
    "QuerySyntaxError",
    "SchemaFileError",
    "UnsafePath",
    "Untrusted",
    "ValidationFailed",
    "WorkspaceError",
]


class MlcycleError(Exception):
    """Root of every error mlcycle raises on purpose."""


class NotFound(MlcycleError, LookupError):
    """An id, name or version that does not exist."""


class AlreadyExists(MlcycleError):
    """A name or version that is already taken."""


class Conflict(MlcycleError):
    """A concurrent change got there first; read the current state again and retry."""


class AliasConflict(Conflict):
    """An alias that moved between reading it and moving it."""


class ValidationFailed(MlcycleError, ValueError):
    """Input that breaks a rule; the message names the rule and the fix."""


class GateFailed(ValidationFailed):
    """A promotion refused because validation gates failed; ``results`` holds them (JSON)."""

    def __init__(self, message: str, *, results: dict[str, object]) -> None:
        super().__init__(message)
        self.results = results


class Untrusted(ValidationFailed):
    """Content that would run code when loaded (pickle, a type outside the allow-list).

    Loading it needs ``trust=True`` or its publisher in ``registry.trusted_publishers``.
    """


class QuerySyntaxError(ValidationFailed):
    """A query expression that does not parse; ``column`` points at the offending token."""

    def __init__(self, message: str, *, expression: str, column: int) -> None:
        pointer = " " * (column - 1) + "^"
        super().__init__(f"{message}\n  {expression}\n  {pointer}")
        self.expression = expression
        self.column = column


class ImmutableValue(ValidationFailed):
    """A value that was recorded once and may not change, such as a run's param."""


class SchemaFileError(ValidationFailed):
    """A schema file edited into something invalid; ``source`` and ``line`` say where."""

    def __init__(self, message: str, *, source: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.line = line


class IntegrityError(MlcycleError):
    """Stored content that no longer matches the digest it was stored under."""


class UnsafePath(ValidationFailed):
    """An artifact or table name that would escape the store it names a place in."""


class BackendUnavailable(MlcycleError):
    """A database or object store that cannot be reached or opened."""


class WorkspaceError(MlcycleError):
    """A workspace that cannot be found, created or written."""


class PipelineFailed(MlcycleError):
    """A pipeline run stopped at a failed step; ``run_id`` is what to resume."""

    def __init__(self, message: str, *, run_id: str, step: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.step = step
