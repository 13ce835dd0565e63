"""The monitor result log contract on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlcycle.store import SqlMetadataStore, open_metadata_store
from mlcycle.store.testing import MonitorResultLogContract

pytestmark = pytest.mark.postgres


class TestPostgresMonitorResultLog(MonitorResultLogContract):
    @pytest.fixture
    def catalog(self, postgres_url: str) -> Iterator[SqlMetadataStore]:
        store = open_metadata_store(postgres_url)
        yield store
        store.close()
