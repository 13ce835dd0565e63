"""The content-addressed artifact store: names checked, digests made on the way in, verified out.

Every store has one layout under its root::

    blobs/sha256/<2 hex>/<62 hex>   immutable content, named by its sha256
    tables/<name>/                  mutable tables (Delta), never content-addressed
    tmp/                            writes in flight; never read as content

A blob appears under its digest only once all of its bytes are written and
synced (a temporary file renamed into place), so a crash leaves at most an
orphan in ``tmp/``. Reads hash the bytes as they stream and raise
``IntegrityError`` at the end if they no longer match the name.

This module holds what every backend shares and the local backend; the S3
backend lives in ``_artifacts_s3`` and is imported only for ``s3://`` URLs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from mlcycle.errors import IntegrityError, NotFound, UnsafePath, ValidationFailed, WorkspaceError
from mlcycle.ids import Digest
from mlcycle.settings import S3Settings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from mlcycle.store._artifacts_s3 import S3ArtifactStore

__all__ = [
    "CHUNK_SIZE",
    "LocalArtifactStore",
    "check_artifact_name",
    "check_digest",
    "check_table_name",
    "open_artifact_store",
    "open_source",
]

CHUNK_SIZE = 1024 * 1024
"""How much of a source is read, hashed and written at a time."""

MAX_NAME_LENGTH = 1000
BLOBS_DIR = "blobs/sha256"
TABLES_DIR = "tables"
TMP_DIR = "tmp"

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_DRIVE = re.compile(r"[A-Za-z]:")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.\-/]+")


def check_artifact_name(name: str) -> str:
    """Return ``name`` if it is a safe relative name inside a store, else raise ``UnsafePath``.

    A safe name is relative, uses ``/`` between segments, has no empty, ``.``
    or ``..`` segment, no backslash, NUL or control character, no drive letter
    and at most 1000 characters.

    >>> check_artifact_name("reports/summary.html")
    'reports/summary.html'
    >>> check_artifact_name("../../etc/passwd")
    Traceback (most recent call last):
    ...
    mlcycle.errors.UnsafePath: artifact name '../../etc/passwd' is unsafe: it has a '..' segment, \
which would leave the store; use a relative name such as 'reports/summary.html'
    """
    rule = _broken_rule(name)
    if rule is not None:
        raise UnsafePath(
            f"artifact name {name!r} is unsafe: {rule}; "
            "use a relative name such as 'reports/summary.html'"
        )
    return name


def check_table_name(name: str) -> str:
    """Return ``name`` if it is a safe table name, else raise ``UnsafePath``.

    Table names follow the artifact-name rules and use only letters, digits and
    ``_ . - /``.

    >>> check_table_name("datasets/bike-hourly")
    'datasets/bike-hourly'
    """
    rule = _broken_rule(name)
    if rule is None and not _TABLE_NAME.fullmatch(name):
        bad = sorted({ch for ch in name if not _TABLE_NAME.fullmatch(ch)})
        rule = f"it has the characters {''.join(bad)!r}; only A-Z a-z 0-9 _ . - / are allowed"
    if rule is not None:
        raise UnsafePath(
            f"table name {name!r} is unsafe: {rule}; use a name such as 'datasets/bike-hourly'"
        )
    return name


_NAME_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda name: not name, "it is empty"),
    (lambda name: len(name) > MAX_NAME_LENGTH, f"it is longer than {MAX_NAME_LENGTH} characters"),
    (lambda name: "\x00" in name, "it contains a NUL character"),
    (
        lambda name: any(unicodedata.category(ch) == "Cc" for ch in name),
        "it contains a control character",
    ),
    (lambda name: "\\" in name, "it contains a backslash; separate folders with '/'"),
    (lambda name: bool(_DRIVE.match(name)), "it starts with a Windows drive letter"),
    (lambda name: name.startswith("/"), "it is an absolute path"),
    (
        lambda name: ".." in name.split("/"),
        "it has a '..' segment, which would leave the store",
    ),
    (lambda name: "." in name.split("/"), "it has a '.' segment"),
    (lambda name: "" in name.split("/"), "it has an empty segment ('//' or a trailing '/')"),
)


def _broken_rule(name: object) -> str | None:
    """The first naming rule ``name`` breaks, in words, or ``None``."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    return next((rule for broken, rule in _NAME_RULES if broken(name)), None)


def check_digest(digest: str) -> str:
    """Return the 64 hex digits of a ``sha256:<hex>`` digest, or raise ``ValidationFailed``.

    >>> check_digest("sha256:" + "ab" * 32)[:8]
    'abababab'
    """
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ValidationFailed(
            f"{digest!r} is not an artifact digest; expected 'sha256:' followed by "
            "64 lowercase hex digits, as put() returns"
        )
    return match.group(1)


def blob_key(hex_digest: str) -> str:
    """The blob's path relative to the store root, fanned out by its first two hex digits."""
    return f"{BLOBS_DIR}/{hex_digest[:2]}/{hex_digest[2:]}"


class _Sink(Protocol):
    def write(self, data: ReadableBuffer, /) -> int | None: ...


def copy_hashing(source: BinaryIO, sink: _Sink) -> tuple[str, int]:
    """Copy ``source`` to ``sink`` in chunks; return the sha256 hex digest and the size."""
    hasher = hashlib.sha256()
    size = 0
    while True:
        chunk: object = source.read(CHUNK_SIZE)
        if not chunk:
            return hasher.hexdigest(), size
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise ValidationFailed(
                f"artifact source {source!r} gave {type(chunk).__name__}, not bytes; "
                "open files in binary mode ('rb')"
            )
        hasher.update(chunk)
        sink.write(bytes(chunk))
        size += len(chunk)


class _Readable(Protocol):
    def readinto(self, buffer: WriteableBuffer, /) -> int | None: ...

    def close(self) -> None: ...


class _VerifiedReader(io.RawIOBase):
    """A raw stream that hashes what passes through and checks it against the digest.

    The check runs when the stored size has been read and again at end of
    file, so callers that read exactly the size are covered too.
    """

    def __init__(
        self,
        raw: _Readable,
        *,
        digest: Digest,
        location: str,
        size: int | None,
        errors: Callable[[], AbstractContextManager[None]],
    ) -> None:
        super().__init__()
        self._raw = raw
        self._expected = check_digest(digest)
        self._digest = digest
        self._location = location
        self._size = size
        self._errors = errors
        self._hasher = hashlib.sha256()
        self._seen = 0
        self._checked_at = -1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        with self._errors():
            count = self._raw.readinto(buffer) or 0
        if count:
            with memoryview(buffer) as view:
                self._hasher.update(view[:count])
            self._seen += count
        if count == 0 or self._seen == self._size:
            self._check()
        return count

    def _check(self) -> None:
        if self._checked_at == self._seen:
            return
        actual = self._hasher.hexdigest()
        if actual != self._expected:
            raise IntegrityError(
                f"artifact {self._digest} at {self._location} is corrupt: its {self._seen} bytes "
                f"hash to sha256:{actual}. The stored copy changed after it was written; "
                "restore it from a backup or store the artifact again"
            )
        self._checked_at = self._seen

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def verified_stream(
    raw: _Readable,
    *,
    digest: Digest,
    location: str,
    size: int | None,
    errors: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> BinaryIO:
    """Wrap ``raw`` so that reading it to the end proves it still matches ``digest``."""
    reader = _VerifiedReader(raw, digest=digest, location=location, size=size, errors=errors)
    return io.BufferedReader(reader, buffer_size=CHUNK_SIZE)


def open_source(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a local file to store, with errors that name it."""
    try:
        return Path(path).open("rb")
    except FileNotFoundError as exc:
        raise NotFound(f"cannot store {os.fspath(path)!r}: no such file") from exc
    except IsADirectoryError as exc:
        raise ValidationFailed(
            f"cannot store {os.fspath(path)!r}: it is a folder; store its files one by one"
        ) from exc


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it; done once, before any blob is written.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; skipped where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalArtifactStore:
    """Blobs and tables in a local folder.

    >>> import io, tempfile
    >>> store = LocalArtifactStore(root=Path(tempfile.mkdtemp()))
    >>> digest = store.put(io.BytesIO(b"hello"))
    >>> digest
    'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
    >>> store.open(digest).read()
    b'hello'
    """

    def __init__(self, *, root: Path) -> None:
        self.root = Path(root).absolute()
        self._tmp = self.root / TMP_DIR
        try:
            for folder in (self.root / BLOBS_DIR, self.root / TABLES_DIR, self._tmp):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the artifact store at {self.root}: {exc.strerror}; "
                "choose a writable folder (store.artifacts_url)"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalArtifactStore(root={str(self.root)!r})"

    def put(self, source: BinaryIO) -> Digest:
        """Stream ``source`` into a temporary file, then rename it to its digest."""
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)  # back if someone cleaned it away
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        except OSError as exc:
            raise WorkspaceError(
                f"cannot write to the artifact store at {self.root}: {exc.strerror} in "
                f"{self._tmp}; make that folder writable, or set store.artifacts_url to a "
                "store you can write to"
            ) from exc
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb", buffering=0) as sink:
                hex_digest, size = copy_hashing(source, sink)
                if not self._stored(hex_digest, size):
                    os.fsync(sink.fileno())  # only bytes that will be published need the sync
            self._publish(tmp, hex_digest, size)
        finally:
            tmp.unlink(missing_ok=True)
        return Digest(f"sha256:{hex_digest}")

    def _stored(self, hex_digest: str, size: int) -> bool:
        """Whether these bytes are stored already (the same digest and size)."""
        with contextlib.suppress(FileNotFoundError):
            return (self.root / blob_key(hex_digest)).stat().st_size == size
        return False

    def _publish(self, tmp: Path, hex_digest: str, size: int) -> None:
        final = self.root / blob_key(hex_digest)
        if self._stored(hex_digest, size):
            return  # stored before: the same bytes are kept once
        tmp.chmod(0o444 & ~_umask())
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(final)
        _fsync_dir(final.parent)

    def put_file(self, path: str | os.PathLike[str]) -> Digest:
        """Stream a local file in."""
        with open_source(path) as source:
            return self.put(source)

    def open(self, digest: Digest) -> BinaryIO:
        """A stream of the blob that raises ``IntegrityError`` at its end if the bytes changed."""
        path = self._path(digest)
        try:
            raw = path.open("rb", buffering=0)
        except FileNotFoundError as exc:
            raise NotFound(f"no artifact {digest} in the store at {self.root}") from exc
        return verified_stream(
            raw, digest=digest, location=str(path), size=os.fstat(raw.fileno()).st_size
        )

    def exists(self, digest: Digest) -> bool:
        """Whether a blob with this digest is stored."""
        return self._path(digest).is_file()

    def delete(self, digest: Digest) -> None:
        """Remove a blob (only erasure deletes blobs); a missing one is no error."""
        self._path(digest).unlink(missing_ok=True)

    def location(self, digest: Digest) -> str:
        """The blob's file path."""
        return str(self._path(digest))

    def table_uri(self, name: str) -> str:
        """The folder of table ``name`` under ``tables/``, as an absolute path."""
        return str(self.root / TABLES_DIR / check_table_name(name))

    def storage_options(self) -> dict[str, str]:
        """Nothing: local tables need no options."""
        return {}

    def delete_table(self, name: str) -> None:
        """Remove the folder of table ``name`` (only erasure deletes tables)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.table_uri(name))

    def _path(self, digest: Digest) -> Path:
        return self.root / blob_key(check_digest(digest))

    def iter_blobs(self) -> Iterator[Path]:
        """Every stored blob file, for tools that check or collect the store."""
        return (path for path in (self.root / BLOBS_DIR).rglob("*") if path.is_file())


def open_artifact_store(
    url: str, *, s3: S3Settings | None = None
) -> LocalArtifactStore | S3ArtifactStore:
    """Open the artifact store at ``url``: a local path, a ``file://`` URL or ``s3://bucket/prefix``.

    The S3 backend (and s3fs) is imported only when an ``s3://`` URL is used.

    >>> import tempfile
    >>> open_artifact_store(tempfile.mkdtemp()).storage_options()
    {}
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"s3", "s3a"}:
        from mlcycle.store._artifacts_s3 import S3ArtifactStore  # noqa: PLC0415 - s3fs is slow

        return S3ArtifactStore(url=url, s3=s3)
    if scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ValidationFailed(
                f"artifact store URL {url!r} names the host {parts.netloc!r}; "
                "file:// URLs must be local (file:///path)"
            )
        return LocalArtifactStore(root=Path(unquote(parts.path)))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ValidationFailed(
            f"artifact store URL {url!r} has the unsupported scheme {scheme!r}; "
            "use a local path, file:///path or s3://bucket/prefix"
        )
    if not url:
        raise ValidationFailed("the artifact store URL is empty; set store.artifacts_url")
    return LocalArtifactStore(root=Path(url))
