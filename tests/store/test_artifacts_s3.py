"""The S3 artifact store against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from mlcycle.errors import BackendUnavailable, IntegrityError, UnsafePath, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.settings import S3Settings
from mlcycle.store import open_artifact_store
from mlcycle.store._artifacts_s3 import S3ArtifactStore
from mlcycle.store.testing import ArtifactStoreContract

pytestmark = pytest.mark.s3

MIB = 1024 * 1024
PREFIX = "team/artifacts"


@pytest.fixture(autouse=True)
def _quiet_moto() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3ArtifactStore:
    settings = S3Settings(endpoint_url=s3_endpoint, region="us-east-1")
    return S3ArtifactStore(url=f"s3://{s3_bucket}/{PREFIX}", s3=settings)


@pytest.fixture
def client(s3_endpoint: str) -> Any:  # Any: boto3 clients are untyped
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


class TestS3ArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def store(self, s3_store: S3ArtifactStore) -> S3ArtifactStore:
        return s3_store


def keys(client: Any, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def uploads(client: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


class GeneratedSource(io.RawIOBase):
    """``size`` deterministic bytes made on demand; ``on_read`` sees how far it got."""

    def __init__(self, size: int, on_read: Any = None) -> None:
        super().__init__()
        self.left, self.given, self.counter = size, 0, 0
        self.on_read = on_read

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.on_read is not None:
            self.on_read(self.given)
        take = min(self.left, MIB if size < 0 else size)
        self.left -= take
        self.given += take
        self.counter += 1
        return (hashlib.sha256(str(self.counter).encode()).digest() * (take // 32 + 1))[:take]


def sha256_of(source: GeneratedSource) -> Digest:
    hasher = hashlib.sha256()
    while chunk := source.read(MIB):
        hasher.update(chunk)
    return Digest("sha256:" + hasher.hexdigest())


# --- layout and deduplication ---------------------------------------------------------------


def test_blob_lands_under_its_digest_and_the_temporary_key_is_gone(
    s3_store: S3ArtifactStore, s3_bucket: str, client: Any
) -> None:
    digest = s3_store.put(io.BytesIO(b"hello"))
    hex_digest = digest.removeprefix("sha256:")
    key = f"{PREFIX}/blobs/sha256/{hex_digest[:2]}/{hex_digest[2:]}"
    assert keys(client, s3_bucket) == [key]
    assert s3_store.location(digest) == f"s3://{s3_bucket}/{key}"
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"hello"


def test_identical_content_is_stored_once(
    s3_store: S3ArtifactStore, s3_bucket: str, client: Any
) -> None:
    digests = {s3_store.put(io.BytesIO(b"twice" * 1000)) for _ in range(3)}
    assert len(digests) == 1
    assert len(keys(client, s3_bucket)) == 1


def test_large_blob_goes_up_in_parts_and_round_trips(
    s3_store: S3ArtifactStore, s3_bucket: str, client: Any
) -> None:
    in_flight: list[list[str]] = []

    def look(given: int) -> None:
        if given == 12 * MIB:  # one 8 MiB part is up, the upload is not complete
            in_flight.append(uploads(client, s3_bucket))
            assert keys(client, s3_bucket) == []

    size = 20 * MIB
    digest = s3_store.put(GeneratedSource(size, on_read=look))
    assert digest == sha256_of(GeneratedSource(size))
    assert len(in_flight) == 1
    assert [key.startswith(f"{PREFIX}/tmp/") for key in in_flight[0]] == [True]
    assert uploads(client, s3_bucket) == []
    assert keys(client, s3_bucket) == [s3_store.location(digest).split("/", 3)[3]]
    hasher, total = hashlib.sha256(), 0
    with s3_store.open(digest) as stream:
        for chunk in iter(lambda: stream.read(MIB), b""):
            hasher.update(chunk)
            total += len(chunk)
    assert (total, "sha256:" + hasher.hexdigest()) == (size, digest)


MEASURE_PUT = """
import hashlib, io, sys, tracemalloc
from mlcycle.settings import S3Settings
from mlcycle.store import open_artifact_store

store = open_artifact_store(sys.argv[2], s3=S3Settings(endpoint_url=sys.argv[1]))
size = int(sys.argv[3])

class Generated(io.RawIOBase):
    left, counter = size, 0
    def readable(self):
        return True
    def read(self, n=-1):
        take = min(self.left, n)
        self.left -= take
        self.counter += 1
        return (hashlib.sha256(str(self.counter).encode()).digest() * (take // 32 + 1))[:take]

store.exists("sha256:" + "0" * 64)  # the client is set up before measuring
tracemalloc.start()
store.put(Generated())
print(tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.slow
def test_put_holds_parts_not_the_whole_blob(s3_endpoint: str, s3_bucket: str) -> None:
    size = 40 * MIB
    measured = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(MEASURE_PUT),
            s3_endpoint,
            f"s3://{s3_bucket}/{PREFIX}",
            str(size),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    peak = int(measured.stdout.strip())
    assert peak < size * 3 // 4, f"put peaked at {peak / MIB:.1f} MiB for a {size // MIB} MiB blob"


def test_failing_source_aborts_the_upload_and_leaves_nothing(
    s3_store: S3ArtifactStore, s3_bucket: str, client: Any
) -> None:
    def fail(given: int) -> None:
        if given == 10 * MIB:
            assert len(uploads(client, s3_bucket)) == 1  # a part is already up
            raise ConnectionResetError("source dropped mid-stream")

    with pytest.raises(ConnectionResetError):
        s3_store.put(GeneratedSource(20 * MIB, on_read=fail))
    assert uploads(client, s3_bucket) == []
    assert keys(client, s3_bucket) == []


# --- reads verify ---------------------------------------------------------------------------


def test_overwritten_object_raises_integrity_error_naming_digest_and_url(
    s3_store: S3ArtifactStore, s3_bucket: str, client: Any
) -> None:
    digest = s3_store.put(io.BytesIO(b"model weights v1"))
    url = s3_store.location(digest)
    client.put_object(Bucket=s3_bucket, Key=url.split("/", 3)[3], Body=b"model weights v2")
    with s3_store.open(digest) as stream, pytest.raises(IntegrityError) as info:
        stream.read()
    assert digest in str(info.value)
    assert url in str(info.value)


def test_truncated_object_raises_integrity_error(
    s3_store: S3ArtifactStore, s3_bucket: str, client: Any
) -> None:
    digest = s3_store.put(io.BytesIO(b"y" * 10_000))
    client.put_object(
        Bucket=s3_bucket, Key=s3_store.location(digest).split("/", 3)[3], Body=b"y" * 9_999
    )
    with s3_store.open(digest) as stream, pytest.raises(IntegrityError, match=digest):
        stream.read()


# --- unreachable and misconfigured ----------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def unreachable() -> S3ArtifactStore:
    endpoint = f"http://127.0.0.1:{closed_port()}"  # nothing listens there
    settings = S3Settings(
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
        secret_access_key="testing",  # type: ignore[arg-type]
        connect_timeout_s=1,
        read_timeout_s=2,
        retries=0,
    )
    return S3ArtifactStore(url="s3://bucket/prefix", s3=settings)


@pytest.mark.timeout(60)  # a hang guard: each call gives up after about a second
@pytest.mark.parametrize("operation", ["exists", "open", "put"])
def test_unreachable_endpoint_is_backend_unavailable_naming_it(
    unreachable: S3ArtifactStore, operation: str
) -> None:
    digest = Digest("sha256:" + "1" * 64)
    calls = {
        "exists": lambda: unreachable.exists(digest),
        "open": lambda: unreachable.open(digest),
        "put": lambda: unreachable.put(io.BytesIO(b"data")),
    }
    with pytest.raises(BackendUnavailable) as info:
        calls[operation]()
    assert unreachable.endpoint in str(info.value)
    assert "MLCYCLE_STORE__S3__ENDPOINT_URL" in str(info.value)


@pytest.mark.timeout(60)  # a hang guard: the read timeout is one second
def test_silent_endpoint_times_out_as_backend_unavailable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections into the backlog, never answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = S3Settings(
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="testing",  # type: ignore[arg-type]
            secret_access_key="testing",  # type: ignore[arg-type]
            connect_timeout_s=1,
            read_timeout_s=1,
            retries=0,
        )
        store = S3ArtifactStore(url="s3://bucket/prefix", s3=settings)
        with pytest.raises(BackendUnavailable, match=endpoint):
            store.exists(Digest("sha256:" + "2" * 64))


def test_missing_bucket_on_put_names_the_bucket(s3_endpoint: str, s3_bucket: str) -> None:
    store = S3ArtifactStore(url="s3://no-such-bucket/x", s3=S3Settings(endpoint_url=s3_endpoint))
    with pytest.raises(BackendUnavailable, match="no-such-bucket"):
        store.put(io.BytesIO(b"data"))


# --- tables and options ---------------------------------------------------------------------


def test_table_uri_sits_under_the_prefix(s3_store: S3ArtifactStore, s3_bucket: str) -> None:
    assert s3_store.table_uri("datasets/bike") == f"s3://{s3_bucket}/{PREFIX}/tables/datasets/bike"


def test_storage_options_for_deltalake() -> None:
    settings = S3Settings(
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        access_key_id="AKIAEXAMPLE",  # type: ignore[arg-type]
        secret_access_key="s3cr3t",  # type: ignore[arg-type]
    )
    store = S3ArtifactStore(url="s3://bucket", s3=settings)
    assert store.storage_options() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
    }
    assert "s3cr3t" not in repr(store)


def test_storage_options_leave_out_what_is_not_set() -> None:
    store = S3ArtifactStore(
        url="s3://bucket/p", s3=S3Settings(endpoint_url="https://s3.example.com")
    )
    assert store.storage_options() == {"AWS_ENDPOINT_URL": "https://s3.example.com"}
    assert S3ArtifactStore(url="s3://bucket/p").storage_options() == {}


# --- opening by URL -------------------------------------------------------------------------


def test_open_artifact_store_picks_s3_for_s3_urls(s3_endpoint: str) -> None:
    store = open_artifact_store("s3://bucket/some/prefix/", s3=S3Settings(endpoint_url=s3_endpoint))
    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix, store.url) == (
        "bucket",
        "some/prefix",
        "s3://bucket/some/prefix",
    )


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("s3:///prefix-without-bucket", ValidationFailed, "s3://bucket/prefix"),
        ("s3://bucket/a?b=c", ValidationFailed, "s3://bucket/prefix"),
        ("s3://bucket/a/../../b", UnsafePath, "'..' segment"),
    ],
)
def test_bad_s3_urls_are_refused(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        open_artifact_store(url)
