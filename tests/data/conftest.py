"""The data stage's tests run on three store set-ups: what a backend changes, each test shows.

``sqlite-local`` is the default project (SQLite file, local artifacts),
``sqlite-s3`` keeps tables and blobs in a bucket on a real S3-compatible
server (moto on loopback), ``postgres-local`` keeps the metadata in a fresh
PostgreSQL database. Without those services the last two skip, unless
``MLCYCLE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlcycle.settings import DataSettings, S3Settings, Settings, StoreSettings
from mlcycle.workspace import Workspace

STORES = [
    "sqlite-local",
    pytest.param("sqlite-s3", marks=pytest.mark.s3),
    pytest.param("postgres-local", marks=pytest.mark.postgres),
]
"""The store set-ups, as ``params`` of a fixture or ``parametrize``."""


@dataclass(frozen=True)
class Stores:
    """Where a test's workspace keeps its metadata (``None``: SQLite) and artifacts."""

    metadata_url: str | None = None
    s3: tuple[str, str] | None = None
    """The ``(endpoint, bucket)`` of the artifact store, or ``None`` for local files."""

    def settings(
        self, home: str | Path, actor: str = "tester", *, data: DataSettings | None = None
    ) -> Settings:
        """Settings of a project in ``home`` on these stores."""
        store = StoreSettings(metadata_url=self.metadata_url)
        if self.s3 is not None:
            endpoint, bucket = self.s3
            store = StoreSettings(
                metadata_url=self.metadata_url,
                artifacts_url=f"s3://{bucket}/team",
                s3=S3Settings(endpoint_url=endpoint, region="us-east-1"),
            )
        return Settings(home=home, actor=actor, store=store, data=data or DataSettings())


def open_stores(request: pytest.FixtureRequest, kind: str) -> Stores:
    """The stores of set-up ``kind``, with their database or bucket made for this test."""
    if kind == "sqlite-s3":
        return Stores(
            s3=(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"))
        )
    if kind == "postgres-local":
        return Stores(metadata_url=request.getfixturevalue("postgres_url"))
    return Stores()


def table_files(ws: Workspace) -> list[str]:
    """Every file of the table area, relative to it, read straight from disk or the bucket."""
    url = ws.settings.artifacts_url
    if url.startswith("s3://"):
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client(
            "s3", endpoint_url=ws.settings.store.s3.endpoint_url, region_name="us-east-1"
        )
        root = f"{prefix}/tables/"
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
            keys.extend(item["Key"].removeprefix(root) for item in page.get("Contents", []))
        return sorted(keys)
    root_path = Path(url) / "tables"
    return sorted(str(p.relative_to(root_path)) for p in root_path.rglob("*") if p.is_file())


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest) -> Stores:
    """Each store set-up in turn."""
    return open_stores(request, request.param)


@pytest.fixture
def ws(tmp_path: Path, stores: Stores) -> Iterator[Workspace]:
    """A workspace on each store set-up in turn."""
    with Workspace.open(stores.settings(tmp_path)) as workspace:
        yield workspace
