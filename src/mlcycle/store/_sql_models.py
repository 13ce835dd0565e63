"""Registered models, their versions and aliases with every move, in SQL (the ``ModelCatalog``).

Version numbers and alias moves are decided inside the transaction that
records them, after the event-log lock (PostgreSQL) or the single writer lock
(SQLite) is held. So two processes promoting at once are serialised: each move
reads the alias as the other left it, the history keeps both in the order they
took effect, and an ``expect_from`` check sees the true current version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, delete, func, select, update

from mlcycle.errors import AliasConflict, NotFound, ValidationFailed
from mlcycle.ids import Digest, RunId
from mlcycle.store._keys import check_name
from mlcycle.store._records import AliasMove, ModelVersion, RegisteredModel
from mlcycle.store._schema import (
    alias_moves,
    lineage_edges,
    model_aliases,
    model_versions,
    registered_models,
)
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import EVENT_LOCK, append_event, check_ref, inserted

__all__ = ["ALIAS_KINDS", "LATEST_ALIAS", "ModelsMixin", "check_alias", "check_model_name"]

_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
LATEST_ALIAS = "latest"
"""Reserved: ``name@latest`` always means the highest version, so it cannot be moved."""
ALIAS_KINDS = frozenset({"promote", "rollback", "remove"})
_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def check_model_name(name: str) -> str:
    """``name`` if it can name a model, else ``ValidationFailed`` naming the rule.

    >>> check_model_name("bike-demand")
    'bike-demand'
    """
    return check_name(name, kind="model", example="'bike-demand'")


def check_alias(alias: str) -> str:
    """``alias`` if it can name an alias (``latest`` is reserved), else ``ValidationFailed``."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise ValidationFailed(
            f"alias {alias!r} must be 1 to 64 letters, digits, '_' or '-', starting with a "
            "letter (such as 'production', 'staging' or 'challenger')"
        )
    if alias == LATEST_ALIAS:
        raise ValidationFailed(
            "the alias 'latest' is reserved: it always names the highest version; "
            "choose another alias"
        )
    return alias


def _dumps(value: object) -> str:
    try:
        return orjson.dumps(value, option=_JSON).decode()
    except TypeError as exc:
        raise ValidationFailed(f"{value!r} is not JSON-able: {exc}") from exc


def _metrics(text: str) -> dict[str, float]:
    """JSON has no NaN: a NaN metric was stored as null."""
    return {key: math.nan if value is None else float(value) for key, value in orjson.loads(text)}


def _version(row: Any) -> ModelVersion:  # Any: a result row
    evaluation = None if row.evaluation is None else orjson.loads(row.evaluation)
    return ModelVersion(
        name=row.name,
        version=int(row.version),
        flavor=row.flavor,
        digest=Digest(row.digest),
        signature=orjson.loads(row.signature),
        run_id=None if row.run_id is None else RunId(row.run_id),
        dataset_versions=tuple(orjson.loads(row.dataset_versions)),
        code_version=row.code_version,
        created_at=from_epoch(row.created_at),
        actor=row.actor,
        size=int(row.size),
        safe=bool(row.safe),
        files={role: Digest(digest) for role, digest in orjson.loads(row.files).items()},
        metrics=_metrics(row.metrics),
        tags=orjson.loads(row.tags),
        params=orjson.loads(row.params),
        description=row.description,
        limitations=row.limitations,
        evaluation=evaluation,
    )


def _move(row: Any) -> AliasMove:  # Any: a result row
    return AliasMove(
        name=row.name,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        kind=row.kind,
        actor=row.actor,
        time=from_epoch(row.time),
        reason=row.reason,
        forced=bool(row.forced),
        gates=None if row.gates is None else orjson.loads(row.gates),
        position=int(row.position),
    )


def _require_model(conn: Connection, name: str) -> RegisteredModel:
    row = conn.execute(
        select(registered_models).where(registered_models.c.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"no model '{name}'; register it with mc.registry.register({name!r}, model) "
            "or list models with `mlcycle models list`"
        )
    aliases = conn.execute(
        select(model_aliases.c.alias, model_aliases.c.version)
        .where(model_aliases.c.name == name)
        .order_by(model_aliases.c.alias)
    )
    return RegisteredModel(
        name=row.name,
        created_at=from_epoch(row.created_at),
        actor=row.actor,
        description=row.description,
        aliases={alias: int(version) for alias, version in aliases},
    )


def _latest_number(conn: Connection, name: str) -> int | None:
    query = select(func.max(model_versions.c.version)).where(model_versions.c.name == name)
    found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)


def _get_version(conn: Connection, name: str, version: int) -> ModelVersion:
    row = conn.execute(
        select(model_versions).where(
            (model_versions.c.name == name) & (model_versions.c.version == version)
        )
    ).one_or_none()
    if row is not None:
        return _version(row)
    _require_model(conn, name)
    latest = _latest_number(conn, name)
    newest = "it has no versions yet" if latest is None else f"latest is {latest}"
    raise NotFound(f"model '{name}' has no version {version} ({newest})")


def _current_alias(conn: Connection, name: str, alias: str) -> int | None:
    query = select(model_aliases.c.version).where(
        (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
    )
    found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)


def _check_version_record(record: ModelVersion) -> None:
    check_model_name(record.name)
    if not record.flavor or len(record.flavor) > 64:
        raise ValidationFailed(f"flavor {record.flavor!r} must have 1 to 64 characters")
    if record.size < 0:
        raise ValidationFailed(f"model size {record.size} must not be negative")
    for ref in record.dataset_versions:
        check_ref(ref, "dataset version")


def _version_row(record: ModelVersion, number: int) -> dict[str, Any]:  # Any: column values
    return {
        "name": record.name,
        "version": number,
        "flavor": record.flavor,
        "digest": record.digest,
        "signature": _dumps(record.signature),
        "run_id": record.run_id,
        "dataset_versions": _dumps(list(record.dataset_versions)),
        "code_version": record.code_version,
        "created_at": to_epoch(record.created_at),
        "actor": record.actor,
        "size": record.size,
        "safe": record.safe,
        "files": _dumps(dict(record.files)),
        "metrics": _dumps(list(record.metrics.items())),
        "tags": _dumps(dict(record.tags)),
        "params": _dumps(dict(record.params)),
        "description": record.description,
        "limitations": record.limitations,
        "evaluation": None if record.evaluation is None else _dumps(record.evaluation),
    }


def _serialise(conn: Connection) -> None:
    """Take the event-log lock first, so what this transaction reads stays true until commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(EVENT_LOCK)))


class ModelsMixin:
    """``ModelCatalog`` in SQL."""

    _db: Database

    def ensure_model(
        self, name: str, *, actor: str, time: datetime, description: str | None = None
    ) -> RegisteredModel:
        """Return model ``name``, creating it (and a ``model.created`` event) if new."""
        check_model_name(name)
        row = {"name": name, "created_at": to_epoch(time), "actor": actor}

        def work(conn: Connection) -> RegisteredModel:
            if inserted(conn, registered_models, {**row, "description": description}):
                append_event(
                    conn,
                    "model.created",
                    subject=f"models:/{name}",
                    actor=actor,
                    time=time,
                    payload={"name": name},
                )
            return _require_model(conn, name)

        return self._db.write(work)

    def get_model(self, name: str) -> RegisteredModel:
        """Raise ``NotFound`` naming the model when there is none."""
        return self._db.read(lambda conn: _require_model(conn, name))

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        query = select(registered_models.c.name).order_by(registered_models.c.name)
        return self._db.read(
            lambda conn: [_require_model(conn, name) for name in conn.execute(query).scalars()]
        )

    def add_model_version(
        self, record: ModelVersion, *, inputs: Sequence[tuple[str, str]] = ()
    ) -> ModelVersion:
        """Record the next version of ``record.name``, its event and lineage, in one transaction."""
        _check_version_record(record)
        for source, kind in inputs:
            check_ref(source, "lineage source")
            if not kind or len(kind) > 64:
                raise ValidationFailed(f"lineage kind {kind!r} must have 1 to 64 characters")

        def work(conn: Connection) -> ModelVersion:
            _serialise(conn)
            _require_model(conn, record.name)
            number = (_latest_number(conn, record.name) or 0) + 1
            conn.execute(model_versions.insert(), _version_row(record, number))
            stored = _get_version(conn, record.name, number)
            _record_version_links(conn, stored, inputs)
            return stored

        return self._db.write(work)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        """Raise ``NotFound`` naming the model and its latest version when there is none."""
        return self._db.read(lambda conn: _get_version(conn, name, version))

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of model ``name``, oldest first."""
        query = (
            select(model_versions)
            .where(model_versions.c.name == name)
            .order_by(model_versions.c.version)
        )

        def work(conn: Connection) -> list[ModelVersion]:
            _require_model(conn, name)
            return [_version(row) for row in conn.execute(query)]

        return self._db.read(work)

    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        time: datetime,
        evaluation: dict[str, Any] | None = None,  # Any: JSON values
        tags: dict[str, str] | None = None,
        description: str | None = None,
        limitations: str | None = None,
    ) -> ModelVersion:
        """Set the given fields of a version (tags merged), with its event; returns it as stored."""
        values: dict[str, Any] = {}  # Any: column values
        if evaluation is not None:
            values["evaluation"] = _dumps(evaluation)
        if description is not None:
            values["description"] = description
        if limitations is not None:
            values["limitations"] = limitations
        key = (model_versions.c.name == name) & (model_versions.c.version == version)

        def work(conn: Connection) -> ModelVersion:
            current = _get_version(conn, name, version)
            if tags is not None:
                values["tags"] = _dumps({**current.tags, **{k: str(v) for k, v in tags.items()}})
            if values:
                conn.execute(update(model_versions).where(key).values(**values))
            changed = sorted(values)
            append_event(
                conn,
                "model.evaluated" if evaluation is not None else "model.version_updated",
                subject=current.ref,
                actor=actor,
                time=time,
                payload={"name": name, "version": version, "changed": changed},
            )
            return _get_version(conn, name, version)

        return self._db.write(work)

    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        kind: str,
        actor: str,
        time: datetime,
        reason: str | None = None,
        forced: bool = False,
        gates: dict[str, Any] | None = None,  # Any: JSON values
        expect_from: int | Literal["any"] | None = "any",
    ) -> AliasMove:
        """Point ``alias`` at ``to_version`` (``None`` removes it), with its history and event."""
        check_alias(alias)
        if kind not in ALIAS_KINDS:
            raise ValidationFailed(f"alias move kind {kind!r} must be one of {sorted(ALIAS_KINDS)}")
        gates_text = None if gates is None else _dumps(gates)

        def work(conn: Connection) -> AliasMove:
            _serialise(conn)
            _require_model(conn, name)
            if to_version is not None:
                _get_version(conn, name, to_version)
            current = _current_alias(conn, name, alias)
            if expect_from not in ("any", current):
                raise AliasConflict(
                    f"alias '{alias}' of model '{name}' names {_describe(current)}, not "
                    f"{_describe(expect_from)} as expected: another move got there first; "
                    "read the alias again and retry"
                )
            _set_alias(conn, name, alias, to_version, time)
            move = AliasMove(
                name=name,
                alias=alias,
                from_version=current,
                to_version=to_version,
                kind=kind,
                actor=actor,
                time=from_epoch(to_epoch(time)),
                reason=reason,
                forced=forced,
                gates=None if gates_text is None else orjson.loads(gates_text),
            )
            event = append_event(
                conn,
                "model.alias_moved",
                subject=f"models:/{name}@{alias}",
                actor=actor,
                time=time,
                payload=_move_payload(move),
            )
            row = {**_move_payload(move), "time": to_epoch(time), "gates": gates_text}
            conn.execute(alias_moves.insert(), {**row, "position": event.position})
            return replace(move, position=event.position)

        return self._db.write(work)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of ``name``'s aliases (or of one alias), oldest first."""
        query = select(alias_moves).where(alias_moves.c.name == name)
        if alias is not None:
            query = query.where(alias_moves.c.alias == alias)
        query = query.order_by(alias_moves.c.position)

        def work(conn: Connection) -> list[AliasMove]:
            _require_model(conn, name)
            return [_move(row) for row in conn.execute(query)]

        return self._db.read(work)


def _describe(version: int | Literal["any"] | None) -> str:
    return "no version" if version is None else f"version {version}"


def _set_alias(conn: Connection, name: str, alias: str, to: int | None, time: datetime) -> None:
    key = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
    conn.execute(delete(model_aliases).where(key))
    if to is not None:
        conn.execute(
            model_aliases.insert(),
            {"name": name, "alias": alias, "version": to, "updated_at": to_epoch(time)},
        )


def _move_payload(move: AliasMove) -> dict[str, Any]:  # Any: JSON values
    return {
        "name": move.name,
        "alias": move.alias,
        "from_version": move.from_version,
        "to_version": move.to_version,
        "kind": move.kind,
        "actor": move.actor,
        "reason": move.reason,
        "forced": move.forced,
        "gates": move.gates,
    }


def _record_version_links(
    conn: Connection, stored: ModelVersion, inputs: Sequence[tuple[str, str]]
) -> None:
    append_event(
        conn,
        "model.version_created",
        subject=stored.ref,
        actor=stored.actor,
        time=stored.created_at,
        payload={
            "name": stored.name,
            "version": stored.version,
            "flavor": stored.flavor,
            "digest": stored.digest,
            "run_id": stored.run_id,
            "dataset_versions": list(stored.dataset_versions),
            "code_version": stored.code_version,
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
