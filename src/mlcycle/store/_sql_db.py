"""The SQL engine under the metadata store: connecting, SQLite tuning, retries and migrations.

Every read and write goes through ``Database.read``/``Database.write``, which
run a function in one transaction and retry it when the database is busy, so
"database is locked" never reaches the user. SQLite write transactions start
with ``BEGIN IMMEDIATE``: taking the write lock up front avoids the deadlock of
two readers both trying to upgrade to writers.
"""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from mlcycle.errors import BackendUnavailable, ValidationFailed, WorkspaceError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "VERSION_TABLE", "Database", "from_epoch", "to_epoch"]

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "mlcycle_alembic_version"  # Optuna, on the same database, owns the default name
CONNECT_TIMEOUT_S = 5
_MIGRATION_LOCK = 0x6D6C_6379_6D69_6772  # pg_advisory_xact_lock key: "mlcymigr"
_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_MARKERS = ("database is locked", "database table is locked", "database is busy")
_SQLITE_FILE_PROBLEMS = (
    "unable to open database file",
    "readonly database",
    "disk I/O error",
    "not a database",
    "malformed",
    "database or disk is full",
)
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_MAX_BACKOFF_S = 0.5
_MIN_RETRY_S = 10.0


def to_epoch(moment: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    """A timezone-aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


class Database:
    """One SQL database: an engine, transactions with retry, and schema migrations."""

    def __init__(
        self, url: str, *, busy_timeout_s: float = 30.0, retry_for_s: float | None = None
    ) -> None:
        self.url = _normalise(url)
        self.display = self.url.render_as_string(hide_password=True)
        self.busy_timeout_s = busy_timeout_s
        # Each attempt already waits busy_timeout_s inside SQLite; retries cover the rest.
        self.retry_for_s = retry_for_s or max(_MIN_RETRY_S, 4 * busy_timeout_s)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._create_engine()

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            return _sqlite_engine(self.url, busy_timeout_s=self.busy_timeout_s)
        try:
            return create_engine(
                self.url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "mlcycle"},
            )
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise BackendUnavailable(
                f"cannot open {self.display}: its driver is missing ({exc}); "
                "install it with `pip install 'mlcycle[postgres]'`"
            ) from exc

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one read transaction (a consistent snapshot)."""
        return self._transact(work, begin="DEFERRED")

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, retried as a whole while the database is busy."""
        return self._transact(work, begin="IMMEDIATE")

    def _transact(self, work: Callable[[Connection], T], *, begin: str) -> T:
        started = time.monotonic()
        for attempt in itertools.count(1):
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(mlcycle_sqlite_begin=begin)
                    with conn.begin():
                        return work(conn)
            except DBAPIError as exc:
                waited = time.monotonic() - started
                if not _is_transient(exc) or waited > self.retry_for_s:
                    translated = self._translate(exc, waited=waited)
                    if translated is None:
                        raise
                    raise translated from exc
            backoff = min(_MAX_BACKOFF_S, 0.005 * 2 ** min(attempt, 10))
            time.sleep(random.uniform(0.5, 1.0) * backoff)  # noqa: S311  (jitter, not security)
        raise AssertionError("unreachable: the loop returns or raises")

    def _translate(self, exc: DBAPIError, *, waited: float) -> Exception | None:
        message = str(exc.orig)
        if _is_transient(exc):
            return BackendUnavailable(
                f"{self.display} stayed busy for {waited:.1f} s ({message}); another process "
                "holds a long write transaction: let it finish, or raise store.busy_timeout_s"
            )
        if self.is_sqlite and any(marker in message for marker in _SQLITE_FILE_PROBLEMS):
            return WorkspaceError(
                f"cannot use the metadata database {self.url.database}: {message}; "
                "check that the file is a mlcycle database and its folder is writable"
            )
        sqlstate = getattr(exc.orig, "sqlstate", None) or "08"  # none: no connection yet
        reachable = self.is_sqlite or not sqlstate.startswith(("08", "57P"))
        if isinstance(exc, OperationalError) and not reachable:
            return BackendUnavailable(
                f"cannot reach the metadata database at {self.display}: {message.strip()}; "
                "start the server or fix store.metadata_url (MLCYCLE_STORE__METADATA_URL)"
            )
        return None

    def check(self) -> None:
        """Fail fast with a clear error when the database cannot be opened."""
        if self.is_sqlite:
            _check_sqlite_file(self.url)
        self.read(lambda conn: conn.execute(select(1)).scalar_one())

    def revision(self) -> str | None:
        """The schema revision the database is at (``None`` when it has no schema yet)."""
        return self.read(_current_revision)

    def upgrade(self) -> str:
        """Apply every migration the database lacks; returns the revision it is at."""
        from alembic.script import ScriptDirectory  # noqa: PLC0415  (alembic loads only on open)

        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        if head is None:
            raise AssertionError("the migrations directory has no revisions")
        if self.revision() == head:
            return head
        return self.write(self._upgrade)

    def _upgrade(self, conn: Connection) -> str:
        from alembic import command  # noqa: PLC0415  (alembic loads only on open)
        from alembic.util import CommandError  # noqa: PLC0415

        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        config = _alembic_config()
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise WorkspaceError(
                f"the metadata database {self.display} is at schema revision "
                f"{_current_revision(conn)!r}, which this mlcycle does not know ({exc}); "
                "upgrade mlcycle to the version that wrote it"
            ) from exc
        revision = _current_revision(conn)
        if revision is None:
            raise AssertionError("alembic left no revision behind")
        return revision

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _normalise(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValidationFailed(
            f"{url!r} is not a database URL ({exc}); use sqlite:///path/to/mlcycle.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from exc
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415  (alembic loads only on open)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415  (loads only on open)

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _is_transient(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    if any(marker in message for marker in _BUSY_MARKERS):
        return True
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


def _sqlite_engine(url: URL, *, busy_timeout_s: float) -> Engine:
    memory = url.database in {None, "", ":memory:"}
    if not memory:
        _prepare_sqlite_folder(Path(str(url.database)))
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
        **({"poolclass": StaticPool} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection: Any, _record: Any) -> None:  # Any: the DB-API connection
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("mlcycle_sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _prepare_sqlite_folder(path: Path) -> None:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot create the workspace folder {folder} for {path}: {exc.strerror}; "
            "choose a writable project folder or set store.metadata_url"
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WorkspaceError(
            f"the workspace folder {folder} is not writable, so {path.name} cannot be "
            "written there; fix its permissions or set store.metadata_url"
        )


def _check_sqlite_file(url: URL) -> None:
    """Refuse, without writing a byte, a file that is not a readable SQLite database."""
    if url.database in {None, "", ":memory:"}:
        return
    path = Path(str(url.database))
    if path.is_dir():
        raise WorkspaceError(f"{path} is a folder, not a metadata database; remove it")
    try:
        with path.open("rb") as stream:
            header = stream.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WorkspaceError(f"cannot read the metadata database {path}: {exc.strerror}") from exc
    if header and header != _SQLITE_HEADER:
        raise _not_a_database(path, "it does not start with the SQLite header")
    probe = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise _not_a_database(path, str(exc)) from exc
    finally:
        probe.close()


def _not_a_database(path: Path, reason: str) -> WorkspaceError:
    return WorkspaceError(
        f"{path} is not a usable SQLite metadata database ({reason}); it was left untouched. "
        "Move it away (mlcycle then creates a new one) or restore it from a backup"
    )
