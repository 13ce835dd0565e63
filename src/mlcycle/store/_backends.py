"""Which class serves which storage URL: one table of schemes, extended by entry points.

Backends are plain classes named by dotted path, imported only when their
scheme is used, so an optional driver is needed only by whoever uses it. A
third party adds a backend without forking by declaring an entry point in the
``mlcycle.backends`` group named ``<kind>.<scheme>``, for example
``metadata.https = "mlcycle_rest:RestMetadataStore"``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    from mlcycle.store._protocols import MetadataStore

__all__ = ["BACKENDS", "backend_class", "open_metadata_store", "upgrade_metadata"]

ENTRY_POINT_GROUP = "mlcycle.backends"
BACKENDS: dict[str, dict[str, str]] = {
    "metadata": {
        "sqlite": "mlcycle.store._sql:SqlMetadataStore",
        "sqlite+pysqlite": "mlcycle.store._sql:SqlMetadataStore",
        "postgresql": "mlcycle.store._sql:SqlMetadataStore",
        "postgresql+psycopg": "mlcycle.store._sql:SqlMetadataStore",
        "postgres": "mlcycle.store._sql:SqlMetadataStore",
    },
}


def _scheme(url: str) -> str:
    scheme, sep, _rest = url.partition("://")
    return scheme.lower() if sep else "file"


def backend_class(kind: str, url: str) -> Any:  # Any: the class a backend table names
    """The class registered for ``url``'s scheme among the ``kind`` backends."""
    scheme = _scheme(url)
    target = BACKENDS.get(kind, {}).get(scheme)
    if target is None:
        for entry in entry_points(group=ENTRY_POINT_GROUP, name=f"{kind}.{scheme}"):
            return entry.load()
        known = ", ".join(sorted(BACKENDS.get(kind, {})))
        raise ValidationFailed(
            f"no {kind} backend for the scheme '{scheme}' in {url!r}; use one of {known}, "
            f"or install a package that provides the entry point '{kind}.{scheme}'"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def open_metadata_store(url: str, *, busy_timeout_s: float = 30.0) -> MetadataStore:
    """Open the metadata store at ``url``, applying pending migrations.

    >>> import tempfile
    >>> store = open_metadata_store(f"sqlite:///{tempfile.mkdtemp()}/mlcycle.db")
    >>> store.list_experiments()
    []
    >>> store.close()
    """
    store: MetadataStore = backend_class("metadata", url).open(url, busy_timeout_s=busy_timeout_s)
    return store


def upgrade_metadata(url: str, *, busy_timeout_s: float = 30.0) -> str:
    """Bring the metadata schema at ``url`` up to date; returns the revision it is at."""
    revision: str = backend_class("metadata", url).upgrade(url, busy_timeout_s=busy_timeout_s)
    return revision
