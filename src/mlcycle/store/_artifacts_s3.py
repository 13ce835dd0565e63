"""The artifact store on S3 and S3-compatible servers, through s3fs.

The digest is known only once the last byte is read, so a blob is streamed to
a temporary key under ``tmp/`` (a multipart upload in 8 MiB parts once it
outgrows one part), then copied server-side to its digest key and the
temporary key deleted. S3 makes an object visible only when its upload or copy
completes, so no partial blob is ever readable under its digest. A bucket
lifecycle rule that aborts incomplete multipart uploads and expires ``tmp/``
after a day collects what crashed writers leave behind.

Every call is bounded by the connect and read timeouts and retry count of
``S3Settings``; an unreachable endpoint is ``BackendUnavailable`` within
seconds, never a hang.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import botocore.exceptions  # type: ignore[import-untyped]  # botocore ships no types
import s3fs

from mlcycle.errors import BackendUnavailable, NotFound, ValidationFailed
from mlcycle.ids import Digest, new_id
from mlcycle.settings import S3Settings
from mlcycle.store._artifacts import (
    TABLES_DIR,
    TMP_DIR,
    blob_key,
    check_artifact_name,
    check_digest,
    check_table_name,
    copy_hashing,
    open_source,
    verified_stream,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["PART_SIZE", "S3ArtifactStore"]

PART_SIZE = 8 * 1024 * 1024
"""Size of one multipart-upload part, and of one ranged read."""

_UNREACHABLE = (botocore.exceptions.BotoCoreError, TimeoutError)


class S3ArtifactStore:
    """Blobs and tables under ``s3://bucket/prefix`` on AWS S3 or an S3-compatible server."""

    def __init__(self, *, url: str, s3: S3Settings | None = None) -> None:
        self.bucket, self.prefix = _parse_url(url)
        self.settings = s3 or S3Settings()
        self.url = f"s3://{self._root}"
        self.endpoint = self.settings.endpoint_url or "the default AWS S3 endpoint"
        self._fs = _filesystem(self.settings)

    def __repr__(self) -> str:
        return f"S3ArtifactStore(url={self.url!r}, endpoint={self.endpoint!r})"

    @property
    def _root(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def put(self, source: BinaryIO) -> Digest:
        """Stream ``source`` to a temporary key, then copy it to its digest key."""
        tmp = f"{self._root}/{TMP_DIR}/{new_id()}"
        sink = self._fs.open(tmp, "wb", block_size=PART_SIZE)  # no request until a part is full
        try:
            hex_digest, _size = copy_hashing(source, _GuardedSink(sink, self._writing))
        except BaseException:
            _abandon(sink)
            raise
        final = f"{self._root}/{blob_key(hex_digest)}"
        with self._writing():
            sink.close()
            try:
                if not self._fs.exists(final):
                    self._fs.cp_file(tmp, final)
            finally:
                self._fs.rm_file(tmp)
        return Digest(f"sha256:{hex_digest}")

    def put_file(self, path: str | os.PathLike[str]) -> Digest:
        """Stream a local file in."""
        with open_source(path) as source:
            return self.put(source)

    def open(self, digest: Digest) -> BinaryIO:
        """A stream of the blob that raises ``IntegrityError`` at its end if the bytes changed."""
        key = self._key(digest)
        with self._errors():
            try:
                raw = self._fs.open(key, "rb", block_size=PART_SIZE, cache_type="readahead")
            except FileNotFoundError as exc:
                raise NotFound(f"no artifact {digest} in the store at {self.url}") from exc
        return verified_stream(
            raw, digest=digest, location=f"s3://{key}", size=raw.size, errors=self._errors
        )

    def exists(self, digest: Digest) -> bool:
        """Whether a blob with this digest is stored."""
        key = self._key(digest)
        with self._errors():
            return bool(self._fs.exists(key))

    def delete(self, digest: Digest) -> None:
        """Remove a blob (only erasure deletes blobs); a missing one is no error."""
        key = self._key(digest)
        with self._errors():
            self._fs.invalidate_cache(key)
            if self._fs.exists(key):
                self._fs.rm_file(key)
            self._fs.invalidate_cache(key)

    def location(self, digest: Digest) -> str:
        """The blob's ``s3://`` URL."""
        return f"s3://{self._key(digest)}"

    def table_uri(self, name: str) -> str:
        """The ``s3://`` URL of table ``name`` under ``tables/``."""
        return f"s3://{self._root}/{TABLES_DIR}/{check_table_name(name)}"

    def storage_options(self) -> dict[str, str]:
        """What deltalake (object_store) needs to reach the tables: endpoint, region, keys."""
        options: dict[str, str] = {}
        endpoint = self.settings.endpoint_url
        if endpoint:
            options["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.settings.region:
            options["AWS_REGION"] = self.settings.region
        for field, option in (
            ("access_key_id", "AWS_ACCESS_KEY_ID"),
            ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("session_token", "AWS_SESSION_TOKEN"),
        ):
            secret = getattr(self.settings, field)
            if secret is not None:
                options[option] = secret.get_secret_value()
        return options

    def delete_table(self, name: str) -> None:
        """Remove every object under table ``name``'s prefix (only erasure deletes tables)."""
        prefix = f"{self._root}/{TABLES_DIR}/{check_table_name(name)}"
        with self._errors():
            self._fs.invalidate_cache()
            if self._fs.exists(prefix):
                self._fs.rm(prefix, recursive=True)
            self._fs.invalidate_cache()

    def _key(self, digest: Digest) -> str:
        return f"{self._root}/{blob_key(check_digest(digest))}"

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Errors of a write: those of any call, and a missing bucket."""
        try:
            with self._errors():
                yield
        except FileNotFoundError as exc:
            raise BackendUnavailable(
                f"cannot write to {self.url} at {self.endpoint}: {exc}. "
                f"Create the bucket '{self.bucket}' or fix store.artifacts_url"
            ) from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn connection failures and refusals into ``BackendUnavailable`` naming the endpoint."""
        try:
            yield
        except _UNREACHABLE as exc:
            raise BackendUnavailable(
                f"cannot reach the S3 endpoint {self.endpoint} for {self.url}: {exc}. "
                "Check store.s3.endpoint_url (MLCYCLE_STORE__S3__ENDPOINT_URL), the network "
                "and that the server is running"
            ) from exc
        except PermissionError as exc:
            raise BackendUnavailable(
                f"the S3 endpoint {self.endpoint} refused access to {self.url}: {exc}. "
                "Check the credentials (MLCYCLE_STORE__S3__ACCESS_KEY_ID or AWS_ACCESS_KEY_ID)"
            ) from exc


class _GuardedSink:
    """Writes to an upload, with the store's error translation around each request."""

    def __init__(self, sink: Any, guard: Callable[[], AbstractContextManager[None]]) -> None:
        self._sink = sink  # Any: an s3fs S3File, untyped
        self._guard = guard

    def write(self, data: ReadableBuffer, /) -> int:
        with self._guard():
            written: int = self._sink.write(data)
            return written


def _abandon(sink: Any) -> None:  # Any: an s3fs S3File, untyped
    """Abort an unfinished upload so that nothing of it ever becomes visible."""
    # Aborting is best effort: the original error matters more, and the bucket's
    # lifecycle rule collects an upload that could not be aborted.
    with contextlib.suppress(Exception):
        sink.discard()
    sink.closed = True  # closing would complete the upload


def _parse_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket or parts.query or parts.fragment:
        raise ValidationFailed(
            f"S3 artifact store URL {url!r} is not of the form s3://bucket/prefix"
        )
    if prefix:
        check_artifact_name(prefix)
    return bucket, prefix


def _filesystem(settings: S3Settings) -> Any:  # Any: s3fs is untyped
    def secret(field: str) -> str | None:
        value = getattr(settings, field)
        return None if value is None else str(value.get_secret_value())

    client_kwargs = {"region_name": settings.region} if settings.region else {}
    fs = s3fs.S3FileSystem(
        endpoint_url=settings.endpoint_url,
        key=secret("access_key_id"),
        secret=secret("secret_access_key"),
        token=secret("session_token"),
        client_kwargs=client_kwargs,
        config_kwargs={
            "connect_timeout": settings.connect_timeout_s,
            "read_timeout": settings.read_timeout_s,
            "retries": {"max_attempts": settings.retries + 1, "mode": "standard"},
        },
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    # s3fs would retry timeouts on top of botocore's retries, multiplying the wait; one
    # s3fs attempt leaves the retrying to botocore, bounded by the settings.
    fs.retries = 1
    return fs
