"""Spool segments: append-only Arrow IPC stream files the prediction log writes first.

Each segment belongs to one process, which holds an exclusive ``flock`` on
it from creation until the segment is rolled into the Delta table and
unlinked. The kernel drops the lock when the process dies (SIGKILL too), so
another process finds an orphan by taking the lock without waiting. A writer
killed mid-write leaves a torn last message; ``read_segment`` returns the
complete record batches before it and drops the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from mlcycle.ids import new_id

__all__ = ["SUFFIX", "Segment", "claim_orphans", "read_segment", "segment_schema"]

SUFFIX = ".arrows"


class Segment:
    """One open segment: a locked file and the stream writer appending to it."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{new_id()}-{os.getpid()}{SUFFIX}"
        self.id = self.path.stem
        self.opened = time.monotonic()
        self.schema = schema
        self.rows = 0
        # Locked under a name no other process looks for, then renamed: created under its
        # own name, it could be taken for an orphan (unlocked) before its lock was taken.
        hidden = folder / f".{self.path.name}.new"
        self._file: BinaryIO = hidden.open("xb")  # holds the lock; fsyncs
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        hidden.rename(self.path)
        # The stream writes through Arrow's own file, so a batch is written without the GIL:
        # through a Python file object, every buffer took it, stalling the serving loop.
        self._stream = pa.OSFile(str(self.path), "ab")
        self._writer = pa.ipc.new_stream(self._stream, schema)
        _sync_folder(folder)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` (not yet durable: see ``sync``)."""
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def sync(self) -> None:
        """Make what was written durable."""
        os.fsync(self._file.fileno())  # the file's data, whichever descriptor wrote it

    @property
    def size(self) -> int:
        """Bytes written so far."""
        written: int = self._stream.tell()
        return written

    def finish(self) -> None:
        """End the stream (the lock is kept until ``release``)."""
        self._writer.close()
        self.sync()

    def release(self, *, unlink: bool) -> None:
        """Delete the file when it was rolled over, then give up the lock."""
        if unlink:
            self.path.unlink(missing_ok=True)
        self._stream.close()
        self._file.close()


def read_segment(path: Path) -> pa.Table | None:
    """The complete record batches of a segment; ``None`` when it has none or is gone."""
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        return None
    with stream:
        try:
            reader = pa.ipc.open_stream(stream)
        except (pa.ArrowInvalid, OSError):
            return None  # the schema message itself is torn: nothing was written after it
        batches = []
        with contextlib.suppress(StopIteration, pa.ArrowInvalid, OSError):
            while True:
                batches.append(reader.read_next_batch())
        if not batches:
            return None
        return pa.Table.from_batches(batches, schema=reader.schema)


def segment_schema(path: Path) -> pa.Schema | None:
    """A segment's schema, read without its batches; ``None`` when it is gone or has none yet."""
    try:
        with path.open("rb") as stream:
            return pa.ipc.open_stream(stream).schema
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return None


@contextlib.contextmanager
def claim_orphans(folder: Path) -> Iterator[list[tuple[Path, BinaryIO]]]:
    """Segments under ``folder`` whose writer is gone, each locked by this process meanwhile."""
    claimed: list[tuple[Path, BinaryIO]] = []
    try:
        for path in sorted(folder.glob(f"*/*{SUFFIX}")):
            try:
                handle: BinaryIO = path.open("rb")
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()  # a live process writes it
                continue
            if os.fstat(handle.fileno()).st_nlink == 0:
                handle.close()  # rolled over and unlinked by its writer just now
                continue
            claimed.append((path, handle))
        yield claimed
    finally:
        for _path, handle in claimed:
            handle.close()


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
