"""``mc.data.register(...)`` and friends: the dataset API on the working directory's workspace.

The workspace sits above ``data`` in the layers, so these functions reach it
by name when called (``importlib``), never by an import at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mlcycle.data._datasets import Check, DatasetRegistry, Mode
from mlcycle.data._sources import CsvFile, SqlQuery

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from mlcycle.data._diff import DatasetDiff
    from mlcycle.data._erase import Erasure
    from mlcycle.data._policy import PolicyFinding
    from mlcycle.store import Dataset, DatasetVersion

__all__ = [
    "csv",
    "current_registry",
    "diff",
    "erase",
    "get",
    "history",
    "list_datasets",
    "load",
    "load_table",
    "policy",
    "register",
    "rollback",
    "scan",
    "sql",
]


def current_registry() -> DatasetRegistry:
    """The dataset registry of the workspace ``mc`` acts on."""
    root = importlib.import_module("mlcycle")
    registry: DatasetRegistry = root.current_workspace().data
    return registry


def sql(query: str, url: str) -> SqlQuery:
    """A SQL query on the database at SQLAlchemy ``url``, to register as a dataset."""
    return SqlQuery(query=query, url=url)


def csv(path: str | Path, *, delimiter: str = ",") -> CsvFile:
    """A CSV file (or glob) with another delimiter, such as ``;`` or a tab."""
    return CsvFile(path=path, delimiter=delimiter)


def register(
    name: str,
    source: object,
    *,
    mode: Mode = "append",
    time_column: str | None = None,
    key: Sequence[str] | None = None,
    schema: Literal["merge"] | None = None,
    description: str | None = None,
    check: Check | None = None,
    validate: bool | None = None,
) -> DatasetVersion:
    """Register ``source`` as a new version of dataset ``name`` (see ``DatasetRegistry``).

    ``validate=True`` refuses rows that break ``schemas/<name>.yaml``; nothing is
    written. ``None`` follows the ``data.validate_on_register`` setting; ``False`` skips.
    """
    return current_registry().register(
        name,
        source,
        mode=mode,
        time_column=time_column,
        key=key,
        schema=schema,
        description=description,
        check=check,
        validate=validate,
    )


def load(
    ref: str,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
    columns: Sequence[str] | None = None,
    start: object = None,
    end: object = None,
) -> pd.DataFrame:
    """A dataset version as a pandas DataFrame: ``load("bike")``, ``load("bike/3")``."""
    return current_registry().load(
        ref, version=version, as_of=as_of, columns=columns, start=start, end=end
    )


def load_table(
    ref: str,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
    columns: Sequence[str] | None = None,
    start: object = None,
    end: object = None,
) -> pa.Table:
    """A dataset version as a pyarrow Table."""
    return current_registry().load_table(
        ref, version=version, as_of=as_of, columns=columns, start=start, end=end
    )


def scan(
    ref: str,
    *,
    version: int | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = 65_536,
) -> tuple[DatasetVersion, pa.Schema, Iterator[pa.RecordBatch]]:
    """A dataset version as pyarrow batches, in row order (see ``DatasetRegistry.scan``)."""
    return current_registry().scan(ref, version=version, columns=columns, batch_rows=batch_rows)


def get(ref: str, *, version: int | None = None, as_of: datetime | None = None) -> DatasetVersion:
    """The version record ``ref`` names (``bike``, ``bike/3``, ``data:/bike@latest``)."""
    return current_registry().get(ref, version=version, as_of=as_of)


def history(name: str) -> list[DatasetVersion]:
    """Every version of dataset ``name``, oldest first."""
    return current_registry().history(name)


def diff(name: str, old: int, new: int) -> DatasetDiff:
    """What changed from version ``old`` to ``new``."""
    return current_registry().diff(name, old, new)


def rollback(name: str, version: int) -> DatasetVersion:
    """A new version with the content of ``version``."""
    return current_registry().rollback(name, version)


def policy(ref: str | DatasetVersion) -> list[PolicyFinding]:
    """The personal-data and deny-list findings recorded on a version (``bike/3``)."""
    return current_registry().policy(ref)


def erase(name: str, *, where: str, reason: str) -> Erasure:
    """Remove the rows matching ``where`` from every version of ``name`` (see ``DatasetRegistry``).

    ``mc.data.erase("customers", where="email = 'ana@example.com'", reason="GDPR request 17")``
    """
    return current_registry().erase(name, where=where, reason=reason)


def list_datasets() -> list[Dataset]:
    """Every dataset, by name."""
    return current_registry().list()
