"""Dataset names, version records and write leases in SQL (the ``DatasetCatalog``).

Version numbers are handed out inside the transaction that records the
version: SQLite has one writer at a time, and on PostgreSQL the event-log
advisory lock is taken first, so two processes recording at once get
consecutive numbers, never the same one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, update

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.store._keys import check_name
from mlcycle.store._records import Dataset, DatasetVersion
from mlcycle.store._schema import dataset_versions, datasets, lineage_edges
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import EVENT_LOCK, append_event, check_ref, inserted

__all__ = [
    "DatasetsMixin",
    "check_dataset_actor",
    "check_dataset_name",
    "check_dataset_text",
    "check_table_path",
]

_MAX_ACTOR = 256
"""The ``actor`` columns' length: PostgreSQL refuses longer ones, SQLite would keep them."""
_TABLE_PATH = re.compile(r"datasets/[A-Za-z0-9_.\-/]{1,500}")
_OPERATIONS = frozenset({"create", "append", "overwrite", "rollback"})
_VALIDATIONS = frozenset({"passed", "skipped", None})


def check_dataset_name(name: str) -> str:
    """``name`` if it can name a dataset, else ``ValidationFailed`` naming the rule.

    >>> check_dataset_name("bike-hourly")
    'bike-hourly'
    """
    return check_name(name, kind="dataset", example="'bike' or 'bike-hourly'")


def check_dataset_actor(actor: str) -> str:
    """``actor`` if every backend can record it as who made a dataset version, else refused.

    >>> check_dataset_actor("ana")
    'ana'
    """
    if not isinstance(actor, str) or not 0 < len(actor) <= _MAX_ACTOR or "\x00" in actor:
        raise ValidationFailed(
            f"actor {actor[:80] if isinstance(actor, str) else actor!r:.90} must be 1 to "
            f"{_MAX_ACTOR} characters without NUL; set actor in mlcycle.toml or "
            "MLCYCLE_ACTOR to another name; nothing was written"
        )
    return actor


def check_dataset_text(value: str | None, what: str, *, limit: int | None = None) -> None:
    """Refuse text PostgreSQL cannot keep (NUL, or over ``limit``), on every backend alike."""
    if value is None:
        return
    if "\x00" in value:
        raise ValidationFailed(
            f"{what} {value[:80]!r} contains a NUL character, which the metadata store "
            "cannot keep; remove it"
        )
    if limit is not None and len(value) > limit:
        raise ValidationFailed(
            f"{what} {value[:80]!r}... has {len(value)} characters; the most is {limit}"
        )


def check_table_path(path: str) -> str:
    """``path`` if it can name a dataset's table (``datasets/...``), else ``ValidationFailed``."""
    if not isinstance(path, str) or not _TABLE_PATH.fullmatch(path) or ".." in path.split("/"):
        raise ValidationFailed(
            f"table path {path!r} must be 'datasets/' and up to 500 letters, digits, "
            "'_', '.', '-' or '/'"
        )
    return path


def _dataset(row: Any) -> Dataset:  # Any: a result row
    return Dataset(
        name=row.name,
        created_at=from_epoch(row.created_at),
        actor=row.actor,
        time_column=row.time_column,
        key=tuple(orjson.loads(row.key)),
        description=row.description,
        table_path=row.table_path,
    )


def _version(row: Any) -> DatasetVersion:  # Any: a result row
    columns = orjson.loads(row.columns)
    return DatasetVersion(
        name=row.name,
        version=int(row.version),
        rows=int(row.rows),
        columns=[name for name, _ in columns],
        types=[type_ for _, type_ in columns],
        digest=Digest(row.digest),
        created_at=from_epoch(row.created_at),
        source=row.source,
        actor=row.actor,
        delta_version=int(row.delta_version),
        operation=row.operation,
        profile_digest=Digest(row.profile_digest) if row.profile_digest else None,
        policy=orjson.loads(row.policy),
        description=row.description,
    )


def _require_dataset(conn: Connection, name: str) -> Dataset:
    row = conn.execute(select(datasets).where(datasets.c.name == name)).one_or_none()
    if row is None:
        raise NotFound(
            f"no dataset '{name}'; register it with mc.data.register({name!r}, source) "
            "or list datasets with `mlcycle data list`"
        )
    return _dataset(row)


def _latest(conn: Connection, name: str) -> DatasetVersion | None:
    query = (
        select(dataset_versions)
        .where(dataset_versions.c.name == name)
        .order_by(dataset_versions.c.version.desc())
        .limit(1)
    )
    row = conn.execute(query).one_or_none()
    return None if row is None else _version(row)


def _check_record(record: DatasetVersion) -> None:
    if record.operation not in _OPERATIONS:
        raise ValidationFailed(
            f"dataset operation {record.operation!r} must be one of {sorted(_OPERATIONS)}"
        )
    if record.rows < 0 or record.delta_version < 0:
        raise ValidationFailed(
            f"a version of '{record.name}' needs rows ({record.rows}) and delta_version "
            f"({record.delta_version}) that are not negative"
        )
    check_dataset_actor(record.actor)
    check_dataset_text(record.source, "source")
    check_dataset_text(record.description, "description")
    if len(record.columns) != len(record.types):
        raise ValidationFailed(
            f"a version of '{record.name}' has {len(record.columns)} columns "
            f"but {len(record.types)} types"
        )


class DatasetsMixin:
    """``DatasetCatalog`` in SQL."""

    _db: Database

    def ensure_dataset(
        self,
        name: str,
        *,
        actor: str,
        time: datetime,
        time_column: str | None = None,
        key: Sequence[str] = (),
        description: str | None = None,
    ) -> Dataset:
        """Return dataset ``name``, creating it (and a ``dataset.created`` event) if new."""
        check_dataset_name(name)
        check_dataset_actor(actor)
        check_dataset_text(time_column, "time column name", limit=_MAX_ACTOR)
        check_dataset_text(description, "description")
        row = {
            "name": name,
            "created_at": to_epoch(time),
            "actor": actor,
            "time_column": time_column,
            "key": orjson.dumps(list(key)).decode(),
            "description": description,
            "lock_owner": None,
            "lock_until": None,
        }

        def work(conn: Connection) -> Dataset:
            if inserted(conn, datasets, row):
                append_event(
                    conn,
                    "dataset.created",
                    subject=f"data:/{name}",
                    actor=actor,
                    time=time,
                    payload={"name": name, "time_column": time_column, "key": list(key)},
                )
            return _require_dataset(conn, name)

        return self._db.write(work)

    def get_dataset(self, name: str) -> Dataset:
        """Raise ``NotFound`` naming the dataset when there is none."""
        return self._db.read(lambda conn: _require_dataset(conn, name))

    def list_datasets(self) -> list[Dataset]:
        """Every dataset, by name in code-point order (not a PostgreSQL collation's order)."""
        found = self._db.read(
            lambda conn: [_dataset(row) for row in conn.execute(select(datasets))]
        )
        return sorted(found, key=lambda dataset: dataset.name)

    def add_dataset_version(
        self,
        record: DatasetVersion,
        *,
        inputs: Sequence[tuple[str, str]] = (),
        release_lock: str | None = None,
        validation: str | None = None,
    ) -> DatasetVersion:
        """Record the next version of ``record.name``, its event and lineage, in one transaction."""
        _check_record(record)
        if validation not in _VALIDATIONS:
            raise ValidationFailed(f"validation {validation!r} must be 'passed', 'skipped' or None")
        for source, kind in inputs:
            check_ref(source, "lineage source")
            if not kind or len(kind) > 64:
                raise ValidationFailed(f"lineage kind {kind!r} must have 1 to 64 characters")

        def work(conn: Connection) -> DatasetVersion:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(EVENT_LOCK)))
            _require_dataset(conn, record.name)
            latest = _latest(conn, record.name)
            number = 1 if latest is None else latest.version + 1
            stored = _insert_version(conn, record, number)
            _record_version_links(conn, stored, inputs, validation)
            if release_lock is not None:
                _release(conn, record.name, release_lock)
            return stored

        return self._db.write(work)

    def get_dataset_version(self, name: str, version: int) -> DatasetVersion:
        """Raise ``NotFound`` naming the dataset and its latest version when there is none."""
        query = select(dataset_versions).where(
            (dataset_versions.c.name == name) & (dataset_versions.c.version == version)
        )

        def work(conn: Connection) -> DatasetVersion:
            row = conn.execute(query).one_or_none()
            if row is not None:
                return _version(row)
            _require_dataset(conn, name)
            latest = _latest(conn, name)
            newest = "it has no versions yet" if latest is None else f"latest is {latest.version}"
            raise NotFound(f"dataset '{name}' has no version {version} ({newest})")

        return self._db.read(work)

    def latest_dataset_version(self, name: str) -> DatasetVersion | None:
        """The newest version of dataset ``name`` (``None`` before the first one)."""

        def work(conn: Connection) -> DatasetVersion | None:
            _require_dataset(conn, name)
            return _latest(conn, name)

        return self._db.read(work)

    def list_dataset_versions(self, name: str) -> list[DatasetVersion]:
        """Every version of dataset ``name``, oldest first."""
        query = (
            select(dataset_versions)
            .where(dataset_versions.c.name == name)
            .order_by(dataset_versions.c.version)
        )

        def work(conn: Connection) -> list[DatasetVersion]:
            _require_dataset(conn, name)
            return [_version(row) for row in conn.execute(query)]

        return self._db.read(work)

    def lock_dataset(self, name: str, *, owner: str, now: datetime, ttl_s: float) -> str | None:
        """Take the write lease of ``name`` for ``ttl_s`` seconds; else return its holder."""
        seconds = to_epoch(now)
        free = (
            datasets.c.lock_owner.is_(None)
            | (datasets.c.lock_owner == owner)
            | (datasets.c.lock_until < seconds)
        )
        take = (
            update(datasets)
            .where((datasets.c.name == name) & free)
            .values(lock_owner=owner, lock_until=seconds + ttl_s)
        )

        def work(conn: Connection) -> str | None:
            _require_dataset(conn, name)
            conn.execute(take)
            holder = conn.execute(
                select(datasets.c.lock_owner).where(datasets.c.name == name)
            ).scalar_one()
            return None if holder == owner else str(holder)

        return self._db.write(work)

    def unlock_dataset(self, name: str, *, owner: str) -> None:
        """Give the lease back if ``owner`` holds it."""
        self._db.write(lambda conn: _release(conn, name, owner))

    def rewrite_dataset(
        self,
        name: str,
        *,
        versions: Sequence[DatasetVersion],
        table_path: str,
        owner: str,
        actor: str,
        time: datetime,
        payload: dict[str, Any],  # Any: JSON values
    ) -> list[DatasetVersion]:
        """Replace version records and the table location of ``name``, as an erasure does.

        In one transaction, while ``owner`` holds the lease: each of ``versions``
        (matched by number) gets its new rows, digest, Delta commit, profile and
        policy; the dataset's table moves to ``table_path``; a ``dataset.erased``
        event carries ``payload``. Version numbers, times and sources stay.
        """
        check_table_path(table_path)
        check_dataset_actor(actor)
        for record in versions:
            _check_record(record)

        def work(conn: Connection) -> list[DatasetVersion]:
            holder = conn.execute(
                select(datasets.c.lock_owner).where(datasets.c.name == name)
            ).scalar_one_or_none()
            _require_dataset(conn, name)
            if holder != owner:
                raise ValidationFailed(
                    f"rewriting dataset '{name}' needs its write lease, held by {holder!r}, "
                    f"not {owner!r}; take it with lock_dataset first"
                )
            for record in versions:
                found = conn.execute(
                    update(dataset_versions)
                    .where(
                        (dataset_versions.c.name == name)
                        & (dataset_versions.c.version == record.version)
                    )
                    .values(
                        rows=record.rows,
                        digest=record.digest,
                        delta_version=record.delta_version,
                        profile_digest=record.profile_digest,
                        policy=orjson.dumps(record.policy, option=orjson.OPT_SORT_KEYS).decode(),
                    )
                )
                if found.rowcount != 1:
                    raise NotFound(f"dataset '{name}' has no version {record.version}")
            conn.execute(
                update(datasets).where(datasets.c.name == name).values(table_path=table_path)
            )
            append_event(
                conn,
                "dataset.erased",
                subject=f"data:/{name}",
                actor=actor,
                time=time,
                payload=payload,
            )
            query = (
                select(dataset_versions)
                .where(dataset_versions.c.name == name)
                .order_by(dataset_versions.c.version)
            )
            return [_version(row) for row in conn.execute(query)]

        return self._db.write(work)


def _release(conn: Connection, name: str, owner: str) -> None:
    conn.execute(
        update(datasets)
        .where((datasets.c.name == name) & (datasets.c.lock_owner == owner))
        .values(lock_owner=None, lock_until=None)
    )


def _insert_version(conn: Connection, record: DatasetVersion, number: int) -> DatasetVersion:
    row = {
        "name": record.name,
        "version": number,
        "rows": record.rows,
        "columns": orjson.dumps(list(zip(record.columns, record.types, strict=True))).decode(),
        "digest": record.digest,
        "created_at": to_epoch(record.created_at),
        "source": record.source,
        "actor": record.actor,
        "delta_version": record.delta_version,
        "operation": record.operation,
        "profile_digest": record.profile_digest,
        "policy": orjson.dumps(record.policy, option=orjson.OPT_SORT_KEYS).decode(),
        "description": record.description,
    }
    conn.execute(dataset_versions.insert(), row)
    return _version(
        conn.execute(
            select(dataset_versions).where(
                (dataset_versions.c.name == record.name) & (dataset_versions.c.version == number)
            )
        ).one()
    )


def _record_version_links(
    conn: Connection,
    stored: DatasetVersion,
    inputs: Sequence[tuple[str, str]],
    validation: str | None,
) -> None:
    append_event(
        conn,
        "dataset.version_created",
        subject=stored.ref,
        actor=stored.actor,
        time=stored.created_at,
        payload={
            "name": stored.name,
            "version": stored.version,
            "rows": stored.rows,
            "digest": stored.digest,
            "source": stored.source,
            "operation": stored.operation,
            "delta_version": stored.delta_version,
            "validation": validation,
        },
    )
    for source, kind in inputs:
        values = {"source": source, "target": stored.ref, "kind": kind}
        edge = {**values, "created_at": to_epoch(stored.created_at), "actor": stored.actor}
        if inserted(conn, lineage_edges, edge):
            append_event(
                conn,
                "lineage.edge_added",
                subject=stored.ref,
                actor=stored.actor,
                time=stored.created_at,
                payload=values,
            )
