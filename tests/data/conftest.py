"""The data stage's tests run on a local table area and on S3 (moto on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.settings import S3Settings, Settings, StoreSettings
from mlcycle.workspace import Workspace


def area_settings(home: str | Path, actor: str, s3: tuple[str, str] | None) -> Settings:
    """Settings whose artifact store is local, or the S3 bucket ``s3 = (endpoint, bucket)``."""
    if s3 is None:
        return Settings(home=home, actor=actor)
    endpoint, bucket = s3
    return Settings(
        home=home,
        actor=actor,
        store=StoreSettings(
            artifacts_url=f"s3://{bucket}/team",
            s3=S3Settings(endpoint_url=endpoint, region="us-east-1"),
        ),
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def area(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """``None`` for a local table area, else the S3 ``(endpoint, bucket)`` to use."""
    if request.param == "local":
        return None
    return request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")


@pytest.fixture
def ws(tmp_path: Path, area: tuple[str, str] | None) -> Iterator[Workspace]:
    """A workspace on each table area in turn."""
    with Workspace.open(area_settings(tmp_path, "tester", area)) as workspace:
        yield workspace
