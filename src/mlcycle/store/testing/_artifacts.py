"""The contract every artifact store backend must pass, as a pytest test class.

A backend's test module subclasses it and provides a ``store`` fixture that
returns a fresh, empty store (an object that is both ``ArtifactStore`` and
``TableArea``)::

    class TestLocalArtifactStore(ArtifactStoreContract):
        @pytest.fixture
        def store(self, tmp_path: Path) -> LocalArtifactStore:
            return LocalArtifactStore(root=tmp_path)
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import NotFound, UnsafePath, ValidationFailed
from mlcycle.ids import Digest

__all__ = ["ArtifactStoreContract", "read_all"]

_MIB = 1024 * 1024
_SHARED_STORE = settings(
    max_examples=15,
    deadline=None,
    # One store serves every example; content addressing makes that harmless. Each
    # backend's subclass runs these same methods, which is what the contract is for.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


def read_all(store: Any, digest: Digest) -> bytes:
    """Read a blob to its end (which verifies it) and close the stream."""
    with store.open(digest) as stream:
        data: bytes = stream.read()
        return data


def _sha256(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


class _FailingSource(io.RawIOBase):
    """A source that yields ``good`` bytes, then fails as a dropped connection would."""

    def __init__(self, good: bytes) -> None:
        super().__init__()
        self._left = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._left.read(size)
        if not chunk:
            raise ConnectionResetError("source dropped mid-stream")
        return chunk


class ArtifactStoreContract:
    """What every artifact store does; subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Any:  # Any: ArtifactStore + TableArea, provided by subclasses
        raise NotImplementedError("subclasses of ArtifactStoreContract provide a store fixture")

    @_SHARED_STORE
    @given(blob=st.binary(max_size=4096))
    def test_put_then_open_round_trips(self, store: Any, blob: bytes) -> None:
        digest = store.put(io.BytesIO(blob))
        assert read_all(store, digest) == blob

    @_SHARED_STORE
    @given(blob=st.binary(max_size=1024))
    def test_digest_is_sha256_of_content_and_stable(self, store: Any, blob: bytes) -> None:
        first = store.put(io.BytesIO(blob))
        second = store.put(io.BytesIO(bytes(blob)))
        assert first == second == _sha256(blob)
        assert store.exists(first)

    def test_same_content_has_one_location(self, store: Any) -> None:
        a = store.put(io.BytesIO(b"same bytes"))
        b = store.put(io.BytesIO(b"same bytes"))
        c = store.put(io.BytesIO(b"other bytes"))
        assert a == b != c
        assert store.location(a) == store.location(b) != store.location(c)

    def test_location_names_the_digest_under_blobs(self, store: Any) -> None:
        digest = store.put(io.BytesIO(b"where"))
        hex_digest = digest.removeprefix("sha256:")
        assert store.location(digest).endswith(f"blobs/sha256/{hex_digest[:2]}/{hex_digest[2:]}")

    def test_empty_blob(self, store: Any) -> None:
        digest = store.put(io.BytesIO(b""))
        assert digest == _sha256(b"")
        assert read_all(store, digest) == b""

    def test_blob_larger_than_a_chunk_round_trips_in_pieces(self, store: Any) -> None:
        blob = bytes(range(256)) * (3 * _MIB // 256) + b"tail"
        digest = store.put(io.BytesIO(blob))
        pieces = []
        with store.open(digest) as stream:
            while piece := stream.read(100_000):
                pieces.append(piece)
        assert b"".join(pieces) == blob

    def test_put_file_streams_a_local_file(self, store: Any, tmp_path: Path) -> None:
        path = tmp_path / "report.html"
        path.write_bytes(b"<html>report</html>")
        digest = store.put_file(str(path))
        assert digest == _sha256(b"<html>report</html>")
        assert read_all(store, digest) == b"<html>report</html>"

    def test_put_file_of_a_missing_file_names_it(self, store: Any, tmp_path: Path) -> None:
        missing = tmp_path / "nope.bin"
        with pytest.raises(NotFound, match=r"nope\.bin"):
            store.put_file(str(missing))

    def test_failing_source_leaves_no_blob(self, store: Any) -> None:
        good = b"x" * (2 * _MIB + 5)
        with pytest.raises(ConnectionResetError):
            store.put(_FailingSource(good))
        assert not store.exists(_sha256(good))
        assert not store.exists(_sha256(good[: 2 * _MIB]))
        digest = store.put(io.BytesIO(good))  # the store is still usable
        assert read_all(store, digest) == good

    def test_delete_removes_only_that_blob(self, store: Any) -> None:
        gone = store.put(io.BytesIO(b"erase me"))
        kept = store.put(io.BytesIO(b"keep me"))
        store.delete(gone)
        store.delete(gone)  # already gone: no error
        assert not store.exists(gone)
        with pytest.raises(NotFound):
            store.open(gone)
        with store.open(kept) as stream:
            assert stream.read() == b"keep me"

    def test_missing_digest_is_not_found_naming_it(self, store: Any) -> None:
        digest = _sha256(b"never stored")
        assert not store.exists(digest)
        with pytest.raises(NotFound, match=digest):
            store.open(digest)

    @pytest.mark.parametrize(
        "bad",
        ["", "sha256:", "sha256:xyz", "md5:" + "a" * 32, "sha256:" + "A" * 64, "a" * 64,
         "sha256:" + "a" * 63, "sha256:../../" + "a" * 58],
    )  # fmt: skip
    def test_malformed_digest_is_refused(self, store: Any, bad: str) -> None:
        for call in (store.open, store.exists, store.location, store.delete):
            with pytest.raises(ValidationFailed, match="not an artifact digest"):
                call(Digest(bad))

    def test_concurrent_puts_of_the_same_content_agree(self, store: Any) -> None:
        blob = b"raced" * 100_000
        digests: list[Digest] = []

        def put() -> None:
            digests.append(store.put(io.BytesIO(blob)))

        threads = [threading.Thread(target=put) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert digests == [_sha256(blob)] * 4
        assert read_all(store, digests[0]) == blob

    def test_table_uri_is_under_tables_beside_the_blobs(self, store: Any) -> None:
        uri = store.table_uri("datasets/bike-hourly")
        assert uri.endswith("/tables/datasets/bike-hourly")
        digest = store.put(io.BytesIO(b"blob"))
        blob_root = store.location(digest).split("/blobs/")[0]
        assert uri.split("/tables/")[0] == blob_root

    @pytest.mark.parametrize(
        "bad", ["../escape", "/abs", "a/../../b", "a\\b", "", "a b", "na\x00me", "C:/x", "a//b"]
    )
    def test_unsafe_table_names_are_refused(self, store: Any, bad: str) -> None:
        with pytest.raises(UnsafePath, match="table name"):
            store.table_uri(bad)

    def test_storage_options_are_strings(self, store: Any) -> None:
        options = store.storage_options()
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in options.items())

    def test_delete_table_removes_only_that_table(self, store: Any) -> None:
        import pyarrow as pa  # noqa: PLC0415  (only this test writes tables)
        from deltalake import DeltaTable, write_deltalake  # noqa: PLC0415
        from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

        options = store.storage_options() or None
        rows = pa.table({"x": [1, 2, 3]})
        for name in ("datasets/gone", "datasets/gone-not", "datasets/_rewritten/gone/g1"):
            write_deltalake(store.table_uri(name), rows, storage_options=options)
        store.delete_table("datasets/gone")
        with pytest.raises(TableNotFoundError):
            DeltaTable(store.table_uri("datasets/gone"), storage_options=options)
        for kept in ("datasets/gone-not", "datasets/_rewritten/gone/g1"):
            assert DeltaTable(store.table_uri(kept), storage_options=options).version() == 0
        store.delete_table("datasets/gone")  # already gone: no error
        store.delete_table("datasets/never-there")
        with pytest.raises(UnsafePath, match="table name"):
            store.delete_table("../escape")
