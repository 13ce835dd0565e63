"""The metadata contract on PostgreSQL, and a clear, fast error when the server is away."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, insert, text

from mlcycle.errors import BackendUnavailable
from mlcycle.store import MetadataStore, open_metadata_store, upgrade_metadata
from mlcycle.store._schema import runs
from mlcycle.store.testing import MetadataStoreContract

pytestmark = pytest.mark.postgres


class TestPostgresMetadataStore(MetadataStoreContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[MetadataStore]:
        store = open_metadata_store(postgres_url)
        yield store
        store.close()


def test_plain_postgresql_urls_use_psycopg(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    assert upgrade_metadata(plain) == "0011"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_server_is_reported_fast_without_the_password() -> None:
    url = f"postgresql+psycopg://ana:s3cr3t-pw@127.0.0.1:{_closed_port()}/mlcycle"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        open_metadata_store(url)
    assert time.monotonic() - started < 60  # a hang guard, not a timing assertion
    message = str(caught.value)
    assert "s3cr3t-pw" not in message
    assert "ana:***@127.0.0.1" in message
    assert "MLCYCLE_STORE__METADATA_URL" in message


def test_a_search_after_a_bulk_load_refreshes_planner_statistics(postgres_url: str) -> None:
    store = open_metadata_store(postgres_url)
    experiment = store.ensure_experiment("bulk", actor="a")
    engine = create_engine(postgres_url)
    rows = [
        {
            "id": f"R{index:06d}",
            "experiment_id": experiment.id,
            "name": "r",
            "status": "finished",
            "start_time": 0.0,
            "heartbeat_at": 0.0,
            "actor": "a",
        }
        for index in range(2000)
    ]
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE runs SET (autovacuum_enabled = false)"))  # only we analyze
        conn.execute(insert(runs), rows)
    last_analyze = text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'runs'")
    deadline = time.monotonic() + 60  # statistics reach pg_stat_* within about a second
    analyzed = None
    while analyzed is None and time.monotonic() < deadline:
        assert len(store.search_runs(experiments=["bulk"], limit=5)) == 5
        with engine.connect() as conn:
            analyzed = conn.execute(last_analyze).scalar()
        time.sleep(0.2)
    engine.dispose()
    store.close()
    assert analyzed is not None
