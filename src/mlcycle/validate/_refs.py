"""Dataset references (``bike/3``) resolved through the data stage's public API.

Validation reads datasets but never writes them: a reference becomes the stored
profile of that version (for inference) or its rows (for a check), pinned to
the exact version so a concurrent registration cannot slip in between.
"""

from __future__ import annotations

import pyarrow as pa

from mlcycle.data import DatasetProfile, DatasetRegistry, current_registry, profile_table
from mlcycle.store import DatasetVersion

__all__ = ["profile_of", "table_of"]


def profile_of(
    ref: str, *, registry: DatasetRegistry | None = None
) -> tuple[DatasetProfile, DatasetVersion]:
    """The profile stored with version ``ref`` (computed from its rows if none was stored)."""
    datasets = registry if registry is not None else current_registry()
    version = datasets.get(ref)
    if version.profile_digest is not None and datasets.artifacts is not None:
        with datasets.artifacts.open(version.profile_digest) as stream:
            return DatasetProfile.from_json(stream.read()), version
    return profile_table(datasets.load_table(version.ref)), version


def table_of(
    ref: str, *, registry: DatasetRegistry | None = None
) -> tuple[pa.Table, DatasetVersion]:
    """The rows of version ``ref`` (recorded as the active run's input, as any load is)."""
    datasets = registry if registry is not None else current_registry()
    version = datasets.get(ref)
    return datasets.load_table(version.ref), version
