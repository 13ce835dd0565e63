"""The monitor result log contract on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.store import SqlMetadataStore, open_metadata_store
from mlcycle.store.testing import MonitorResultLogContract


class TestSqliteMonitorResultLog(MonitorResultLogContract):
    @pytest.fixture
    def catalog(self, tmp_path: Path) -> Iterator[SqlMetadataStore]:
        store = open_metadata_store(f"sqlite:///{tmp_path}/mlcycle.db")
        yield store
        store.close()
