"""Shared fixtures: real PostgreSQL databases, a real S3-compatible server, settings per test.

PostgreSQL and the S3 server are real services on loopback. Without them a test
that needs one is skipped, unless ``MLCYCLE_REQUIRE_SERVICES=1`` (as ``.ci/run``
sets), in which case it fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlcycle.ids import new_id
from mlcycle.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get("MLCYCLE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("MLCYCLE_REQUIRE_SERVICES") == "1"


def service_missing(what: str) -> None:
    """Skip the test, or fail it when CI requires every service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is not available and MLCYCLE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh project in a temporary folder (SQLite + local artifacts)."""
    return Settings(home=tmp_path, actor="tester")


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can create files in, root included (``chattr +i`` when running as root)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    with unwritable(folder):
        yield folder


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder`` made so nobody can create files in it until the block ends (root included)."""
    if os.geteuid() == 0:
        locked = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if locked.returncode != 0:
            service_missing(f"chattr +i (refused: {locked.stderr.decode().strip()})")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o500)
        try:
            yield folder
        finally:
            folder.chmod(0o700)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the postgres extra is always installed by make
        service_missing("psycopg (the [postgres] extra)")
        raise
    name = f"mlcycle_t_{new_id().lower()}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}")
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+psycopg://"
        )
        yield f"{base}/{name}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a real S3-compatible server (moto's standalone server) on loopback."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - moto is in the dev group
        service_missing("moto[server]")
        raise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the S3 server; credentials are set in the environment."""
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    name = f"b-{new_id().lower()}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool]], None]:
    """Poll a condition until true; the timeout only guards against a hang."""

    def wait(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout_s} s")
            time.sleep(0.02)

    return wait
