"""The local artifact store: the shared contract, layout, corruption, crashes and name checks."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import IntegrityError, NotFound, UnsafePath, ValidationFailed, WorkspaceError
from mlcycle.ids import Digest
from mlcycle.store import (
    LocalArtifactStore,
    check_artifact_name,
    check_table_name,
    open_artifact_store,
)
from mlcycle.store.testing import ArtifactStoreContract

MIB = 1024 * 1024


class TestLocalArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalArtifactStore:
        return LocalArtifactStore(root=tmp_path / "artifacts")


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(root=tmp_path / "artifacts")


def blob_files(store: LocalArtifactStore) -> list[Path]:
    return sorted(store.iter_blobs())


def read_all(store: LocalArtifactStore, digest: Digest) -> bytes:
    with store.open(digest) as stream:
        return stream.read()


def tmp_files(store: LocalArtifactStore) -> list[Path]:
    return sorted((store.root / "tmp").iterdir())


class GeneratedSource(io.RawIOBase):
    """``size`` deterministic bytes made on demand, never all at once."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.left = size
        self.counter = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        take = min(self.left, MIB if size < 0 else size)
        self.left -= take
        self.counter += 1
        return (hashlib.sha256(str(self.counter).encode()).digest() * (take // 32 + 1))[:take]


def digest_of_generated(size: int) -> str:
    hasher, source = hashlib.sha256(), GeneratedSource(size)
    while chunk := source.read(MIB):
        hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


# --- layout and deduplication ---------------------------------------------------------------


def test_blob_is_stored_under_its_fanned_out_digest(store: LocalArtifactStore) -> None:
    digest = store.put(io.BytesIO(b"hello"))
    hex_digest = digest.removeprefix("sha256:")
    path = store.root / "blobs" / "sha256" / hex_digest[:2] / hex_digest[2:]
    assert blob_files(store) == [path]
    assert path.read_bytes() == b"hello"
    assert store.location(digest) == str(path)
    assert not stat.S_IMODE(path.stat().st_mode) & 0o222  # blobs are read-only
    assert tmp_files(store) == []


def test_identical_content_is_stored_once(store: LocalArtifactStore) -> None:
    digests = {store.put(io.BytesIO(b"twice" * 1000)) for _ in range(3)}
    assert len(digests) == 1
    assert len(blob_files(store)) == 1
    assert tmp_files(store) == []


def test_tables_live_beside_blobs_not_among_them(store: LocalArtifactStore) -> None:
    uri = store.table_uri("datasets/bike-hourly")
    assert Path(uri) == store.root / "tables" / "datasets" / "bike-hourly"
    assert store.storage_options() == {}


def test_a_damaged_copy_is_replaced_when_the_content_is_stored_again(
    store: LocalArtifactStore,
) -> None:
    digest = store.put(io.BytesIO(b"precious content"))
    path = Path(store.location(digest))
    path.chmod(0o644)
    path.write_bytes(b"precious")  # truncated behind the store's back
    assert store.put(io.BytesIO(b"precious content")) == digest
    assert read_all(store, digest) == b"precious content"


# --- reads verify ---------------------------------------------------------------------------


def corrupt(store: LocalArtifactStore, digest: Digest, data: bytes) -> Path:
    path = Path(store.location(digest))
    path.chmod(0o644)
    path.write_bytes(data)
    return path


def test_flipped_byte_raises_integrity_error_naming_digest_and_path(
    store: LocalArtifactStore,
) -> None:
    digest = store.put(io.BytesIO(b"model weights v1"))
    path = corrupt(store, digest, b"model weights v2")
    with store.open(digest) as stream, pytest.raises(IntegrityError) as info:
        stream.read()
    assert digest in str(info.value)
    assert str(path) in str(info.value)


def test_reading_exactly_the_size_still_verifies(store: LocalArtifactStore) -> None:
    digest = store.put(io.BytesIO(b"abcdef" * 1000))
    corrupt(store, digest, b"abcdeX" * 1000)
    with store.open(digest) as stream, pytest.raises(IntegrityError):
        stream.read(6000)


def test_truncated_blob_raises_integrity_error(store: LocalArtifactStore) -> None:
    digest = store.put(io.BytesIO(b"x" * 5000))
    corrupt(store, digest, b"x" * 4999)
    with store.open(digest) as stream, pytest.raises(IntegrityError, match=digest):
        b"".join(iter(lambda: stream.read(1000), b""))


def test_intact_blob_read_in_small_pieces_passes(store: LocalArtifactStore) -> None:
    blob = os.urandom(3 * MIB + 17)
    digest = store.put(io.BytesIO(blob))
    with store.open(digest) as stream:
        assert b"".join(iter(lambda: stream.read(4096), b"")) == blob


# --- streaming ------------------------------------------------------------------------------


def test_put_and_open_stream_without_holding_the_blob(store: LocalArtifactStore) -> None:
    size = 24 * MIB
    tracemalloc.start()
    try:
        digest = store.put(GeneratedSource(size))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with store.open(digest) as stream:
            total = sum(len(chunk) for chunk in iter(lambda: stream.read(MIB), b""))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == digest_of_generated(size)
    assert total == size
    assert put_peak < 6 * MIB
    assert read_peak < 6 * MIB


# --- crashes --------------------------------------------------------------------------------

SLOW_WRITER = """
import sys, time
from pathlib import Path
from mlcycle.store import LocalArtifactStore

store = LocalArtifactStore(root=Path(sys.argv[1]))
marker = Path(sys.argv[2])

class Stalls:
    calls = 0
    def read(self, size=-1):
        self.calls += 1
        if self.calls == 4:
            marker.write_text("streaming")
        if self.calls > 4:
            time.sleep(600)
        return b"z" * size

store.put(Stalls())
"""

BUSY_WRITER = """
import io, os, random, sys
from pathlib import Path
from mlcycle.store import LocalArtifactStore

store = LocalArtifactStore(root=Path(sys.argv[1]))
while True:
    store.put(io.BytesIO(os.urandom(random.randint(1, 3 * 1024 * 1024))))
"""


def run_writer(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args])


def wait_for(condition: object, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
    while not condition():  # type: ignore[operator]
        assert process.poll() is None, "the writer exited early"
        assert time.monotonic() < deadline, "the writer never got going"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_mid_stream_leaves_no_blob(tmp_path: Path) -> None:
    root, marker = tmp_path / "artifacts", tmp_path / "marker"
    writer = run_writer(SLOW_WRITER, str(root), str(marker))
    try:
        wait_for(marker.exists, writer)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    store = LocalArtifactStore(root=root)
    assert blob_files(store) == []
    partial = tmp_files(store)
    assert len(partial) == 1  # the write was really in flight
    assert partial[0].stat().st_size >= 3 * MIB
    for size in (3 * MIB, 4 * MIB):
        assert not store.exists(Digest("sha256:" + hashlib.sha256(b"z" * size).hexdigest()))
    assert read_all(store, store.put(io.BytesIO(b"z" * 3 * MIB))) == b"z" * 3 * MIB


@pytest.mark.slow
def test_sigkill_during_busy_writes_leaves_only_complete_blobs(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root=root)
    writer = run_writer(BUSY_WRITER, str(root))
    try:
        wait_for(lambda: len(blob_files(store)) >= 5, writer)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    blobs = blob_files(store)
    assert len(blobs) >= 5
    for path in blobs:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.parent.name + path.name


# --- bad input ------------------------------------------------------------------------------


def test_failed_put_leaves_no_temporary_file(store: LocalArtifactStore) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError("disk image unreadable")

    with pytest.raises(OSError, match="disk image unreadable"):
        store.put(Broken())
    assert tmp_files(store) == []
    assert blob_files(store) == []


def test_text_mode_source_is_refused(store: LocalArtifactStore) -> None:
    with pytest.raises(ValidationFailed, match="binary mode"):
        store.put(io.StringIO("text"))  # type: ignore[arg-type]


def test_put_file_of_a_folder_is_refused(store: LocalArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="it is a folder"):
        store.put_file(str(tmp_path))


def test_missing_blob_names_digest(store: LocalArtifactStore) -> None:
    digest = Digest("sha256:" + "0" * 64)
    with pytest.raises(NotFound, match=digest):
        store.open(digest)


def test_vanished_tmp_folder_comes_back(store: LocalArtifactStore) -> None:
    (store.root / "tmp").rmdir()
    assert read_all(store, store.put(io.BytesIO(b"data"))) == b"data"


def test_unwritable_tmp_is_a_workspace_error_naming_the_store(store: LocalArtifactStore) -> None:
    (store.root / "tmp").rmdir()
    (store.root / "tmp").write_text("a file where the folder should be")
    with pytest.raises(WorkspaceError, match=str(store.root)):
        store.put(io.BytesIO(b"data"))
    assert repr(store) == f"LocalArtifactStore(root={str(store.root)!r})"


def test_store_under_a_file_is_a_workspace_error(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a folder")
    with pytest.raises(WorkspaceError, match="plain-file"):
        LocalArtifactStore(root=tmp_path / "plain-file" / "artifacts")


# --- opening by URL -------------------------------------------------------------------------


def test_open_by_path_and_file_url(tmp_path: Path) -> None:
    by_path = open_artifact_store(str(tmp_path / "a"))
    by_url = open_artifact_store((tmp_path / "b").as_uri())
    assert isinstance(by_path, LocalArtifactStore)
    assert isinstance(by_url, LocalArtifactStore)
    assert by_path.root == tmp_path / "a"
    assert by_url.root == tmp_path / "b"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("file://otherhost/data", "must be local"),
        ("", "empty"),
    ],
)
def test_unsupported_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        open_artifact_store(url)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../../etc/passwd", "'..' segment"),
        ("reports/../../secret", "'..' segment"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/system32", "drive letter"),
        ("c:evil", "drive letter"),
        ("dir\\file", "backslash"),
        ("..\\..\\boot.ini", "backslash"),
        ("na\x00me", "NUL"),
        ("line\nbreak", "control character"),
        ("bell\x07", "control character"),
        ("", "empty"),
        ("x" * 1001, "longer than 1000"),
        ("a//b", "empty segment"),
        ("folder/", "empty segment"),
        ("./report.html", "'.' segment"),
    ],
)
def test_unsafe_artifact_names_are_refused_naming_name_and_rule(name: str, rule: str) -> None:
    with pytest.raises(UnsafePath) as info:
        check_artifact_name(name)
    assert repr(name)[:60] in str(info.value)
    assert rule in str(info.value)


def test_a_name_that_is_not_text_is_refused() -> None:
    with pytest.raises(UnsafePath, match="not a string"):
        check_artifact_name(b"bytes-name")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["report.html", "plots/loss curve.png", "a/b/c.parquet", "..hidden", "x" * 1000, "é"]
)
def test_safe_artifact_names_pass_unchanged(name: str) -> None:
    assert check_artifact_name(name) == name


@given(st.text(max_size=60))
def test_an_accepted_name_never_leaves_the_root(name: str) -> None:
    try:
        checked = check_artifact_name(name)
    except UnsafePath:
        return
    joined = posixpath.normpath(posixpath.join("/store/root", checked))
    assert joined.startswith("/store/root/")
    assert "\\" not in checked
    assert "\x00" not in checked


@pytest.mark.parametrize(
    ("name", "rule"),
    [("bike hourly", "' '"), ("ds;drop", "';'"), ("é", "'é'"), ("../up", "'..' segment")],
)
def test_table_names_allow_only_plain_characters(name: str, rule: str) -> None:
    with pytest.raises(UnsafePath, match=f"table name.*{rule}"):
        check_table_name(name)
    assert check_table_name("features/v1.2_daily-x") == "features/v1.2_daily-x"
