"""Deployments in SQL (the ``DeploymentCatalog``): the applied state servers follow.

A change and its ``deployment.applied`` event commit together, so a server
that reads the event always finds the revision it names (or a later one).
Writes take the event log's lock first on PostgreSQL, so two processes
applying at once get consecutive revisions; SQLite has one writer anyway.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, get_args

import orjson
from sqlalchemy import Connection, delete, func, insert, select, update

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.store._keys import check_name
from mlcycle.store._records import Deployment, TrafficPolicy, Variant
from mlcycle.store._schema import deployments
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_events import EVENT_LOCK, append_event

__all__ = [
    "TRAFFIC_POLICIES",
    "DeploymentsMixin",
    "check_deployment_name",
    "deployment_payload",
]

TRAFFIC_POLICIES: tuple[str, ...] = get_args(TrafficPolicy)
_MAX_MODEL = 1000
_MAX_COLUMN = 256


def check_deployment_name(name: str) -> str:
    """``name`` if it can name a deployment, else ``ValidationFailed`` naming the rule.

    >>> check_deployment_name("bike-demand")
    'bike-demand'
    """
    return check_name(name, kind="deployment", example="'bike-demand'")


def _check_variant(name: str, variant: Variant) -> None:
    if not isinstance(variant, Variant):
        raise ValidationFailed(f"deployment '{name}': {variant!r} is not a Variant")
    check_name(variant.name, kind=f"variant of deployment '{name}'", example="'canary'")
    model = variant.model
    if not isinstance(model, str) or not model.strip() or len(model) > _MAX_MODEL:
        raise ValidationFailed(
            f"variant '{variant.name}' of deployment '{name}' needs a model reference such as "
            f"'bike-demand@production' or 'bike-demand/3' (found {model!r})"
        )
    weight = variant.weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise ValidationFailed(
            f"variant '{variant.name}' of deployment '{name}' has weight {weight!r}; "
            "give a finite number"
        )
    if weight < 0:
        raise ValidationFailed(
            f"variant '{variant.name}' of deployment '{name}' has a negative weight ({weight}); "
            "weights are shares of the traffic, 0 or more"
        )


def _check_columns(name: str, deployment: Deployment) -> None:
    sticky = deployment.sticky_key
    columns = [*deployment.key_columns, *([] if sticky is None else [sticky])]
    for column in columns:
        if not isinstance(column, str) or not column.strip() or len(column) > _MAX_COLUMN:
            raise ValidationFailed(
                f"deployment '{name}': column name {column!r} must have 1 to {_MAX_COLUMN} "
                "characters"
            )
    if len(set(deployment.key_columns)) != len(deployment.key_columns):
        raise ValidationFailed(
            f"deployment '{name}' names a key column twice: {', '.join(deployment.key_columns)}"
        )


def _check(deployment: Deployment) -> None:
    name = check_deployment_name(deployment.name)
    if deployment.policy not in TRAFFIC_POLICIES:
        raise ValidationFailed(
            f"deployment '{name}' has unknown policy {deployment.policy!r}; "
            f"use one of {', '.join(TRAFFIC_POLICIES)}"
        )
    if not deployment.variants:
        raise ValidationFailed(
            f"deployment '{name}' has no variants; give at least one model to serve"
        )
    for variant in deployment.variants:
        _check_variant(name, variant)
    names = [variant.name for variant in deployment.variants]
    if len(set(names)) != len(names):
        raise ValidationFailed(f"deployment '{name}' names a variant twice: {', '.join(names)}")
    _check_columns(name, deployment)


def _variants_json(variants: tuple[Variant, ...]) -> list[dict[str, Any]]:  # Any: JSON values
    return [
        {"name": v.name, "model": v.model, "weight": float(v.weight), "shadow": v.shadow}
        for v in variants
    ]


def deployment_payload(deployment: Deployment) -> dict[str, Any]:  # Any: JSON values
    """The JSON form of a deployment, as its events carry it."""
    return {
        "name": deployment.name,
        "revision": deployment.revision,
        "policy": deployment.policy,
        "variants": _variants_json(deployment.variants),
        "sticky_key": deployment.sticky_key,
        "key_columns": list(deployment.key_columns),
    }


def _deployment(row: Any) -> Deployment:  # Any: a result row
    variants = tuple(
        Variant(name=v["name"], model=v["model"], weight=v["weight"], shadow=v["shadow"])
        for v in orjson.loads(row.variants)
    )
    return Deployment(
        name=row.name,
        variants=variants,
        policy=row.policy,
        sticky_key=row.sticky_key,
        key_columns=tuple(orjson.loads(row.key_columns)),
        revision=int(row.revision),
        created_at=from_epoch(row.created_at),
        updated_at=from_epoch(row.updated_at),
        actor=row.actor,
    )


def _same(old: Deployment, new: Deployment) -> bool:
    return (old.policy, old.sticky_key, old.key_columns) == (
        new.policy,
        new.sticky_key,
        tuple(new.key_columns),
    ) and _variants_json(old.variants) == _variants_json(tuple(new.variants))


def _find(conn: Connection, name: str) -> Deployment | None:
    row = conn.execute(select(deployments).where(deployments.c.name == name)).one_or_none()
    return None if row is None else _deployment(row)


def _not_found(conn: Connection, name: str) -> NotFound:
    known = list(conn.execute(select(deployments.c.name).order_by(deployments.c.name)).scalars())
    listed = ", ".join(known) if known else "none yet; create one with `mlcycle deploy`"
    return NotFound(f"no deployment '{name}' (known: {listed})")


class DeploymentsMixin:
    """``DeploymentCatalog`` in SQL."""

    _db: Database

    def put_deployment(self, deployment: Deployment, *, time: datetime) -> Deployment:
        """Create or change a deployment; an unchanged one is returned as stored, with no event."""
        _check(deployment)
        seconds = to_epoch(time)

        def work(conn: Connection) -> Deployment:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(EVENT_LOCK)))
            old = _find(conn, deployment.name)
            if old is not None and _same(old, deployment):
                return old
            revision = 1 if old is None else old.revision + 1
            values = {
                "policy": deployment.policy,
                "variants": orjson.dumps(_variants_json(deployment.variants)).decode(),
                "sticky_key": deployment.sticky_key,
                "key_columns": orjson.dumps(list(deployment.key_columns)).decode(),
                "revision": revision,
                "updated_at": seconds,
                "actor": deployment.actor,
            }
            if old is None:
                conn.execute(
                    insert(deployments).values(name=deployment.name, created_at=seconds, **values)
                )
            else:
                where = deployments.c.name == deployment.name
                conn.execute(update(deployments).where(where).values(**values))
            stored = _find(conn, deployment.name)
            assert stored is not None, "the row was written in this transaction"
            append_event(
                conn,
                "deployment.applied",
                subject=f"deployments:/{deployment.name}",
                actor=deployment.actor,
                time=time,
                payload=deployment_payload(stored),
            )
            return stored

        return self._db.write(work)

    def get_deployment(self, name: str) -> Deployment:
        """Raise ``NotFound`` naming the deployment and the known ones when there is none."""

        def work(conn: Connection) -> Deployment:
            found = _find(conn, name)
            if found is None:
                raise _not_found(conn, name)
            return found

        return self._db.read(work)

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, by name."""
        query = select(deployments).order_by(deployments.c.name)
        return self._db.read(lambda conn: [_deployment(row) for row in conn.execute(query)])

    def remove_deployment(self, name: str, *, actor: str, time: datetime) -> Deployment:
        """Delete a deployment and record ``deployment.removed``; returns what it was."""

        def work(conn: Connection) -> Deployment:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(EVENT_LOCK)))
            removed = _find(conn, name)
            if removed is None:
                raise _not_found(conn, name)
            conn.execute(delete(deployments).where(deployments.c.name == name))
            append_event(
                conn,
                "deployment.removed",
                subject=f"deployments:/{name}",
                actor=actor,
                time=time,
                payload={"name": name, "revision": removed.revision},
            )
            return removed

        return self._db.write(work)
