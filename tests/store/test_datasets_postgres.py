"""The dataset catalog contract on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mlcycle.store import SqlMetadataStore, open_metadata_store
from mlcycle.store.testing import DatasetCatalogContract

pytestmark = pytest.mark.postgres


class TestPostgresDatasetCatalog(DatasetCatalogContract):
    @pytest.fixture
    def catalog(self, postgres_url: str) -> Iterator[SqlMetadataStore]:
        store = open_metadata_store(postgres_url)
        yield store
        store.close()


@pytest.fixture
def english_postgres_url(postgres_url: str) -> Iterator[str]:
    """A second database whose default collation is ICU English, as many servers have."""
    import psycopg
    from tests.conftest import POSTGRES_ADMIN_URL

    name = postgres_url.rsplit("/", 1)[1] + "_en"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' "
            "LOCALE 'C.UTF-8'"
        )
        try:
            yield postgres_url.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_datasets_list_in_code_point_order_under_an_english_collation(
    english_postgres_url: str,
) -> None:
    names = ["b", "B", "a-1", "a_1", "a.1", "A", "a1", "0a"]
    store = open_metadata_store(english_postgres_url)
    try:
        for name in names:
            store.ensure_dataset(name, actor="tester", time=datetime.now(UTC))
        assert [d.name for d in store.list_datasets()] == sorted(names)
    finally:
        store.close()
