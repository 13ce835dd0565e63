"""The errors a request can meet, each mapped to one HTTP status by the server.

The core raises ``ValidationFailed`` (422) and ``NotFound`` (404); these
leaves add what only a server meets: a body that is not JSON (400), a body
over the limit (413) and a worker with too many requests in flight (503).
"""

from __future__ import annotations

from mlcycle.errors import MlcycleError, NotFound, ValidationFailed

__all__ = ["MalformedRequest", "Overloaded", "PayloadTooLarge", "status_of"]


class MalformedRequest(ValidationFailed):
    """A body that cannot be read at all: not JSON, or not the protocol's shape."""


class PayloadTooLarge(ValidationFailed):
    """A body over ``serve.max_body_bytes``."""


class Overloaded(MlcycleError):
    """More requests in flight than ``serve.max_inflight``: try again shortly."""


def status_of(error: MlcycleError) -> int:
    """The HTTP status an error answers with."""
    if isinstance(error, MalformedRequest):
        return 400
    if isinstance(error, PayloadTooLarge):
        return 413
    if isinstance(error, ValidationFailed):
        return 422
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Overloaded):
        return 503
    return 500
