"""Compile run searches to SQL: one ``SELECT runs.id`` per page, every user value bound.

The language (grammar, parse tree, checks) is in ``_query_syntax``; this module
re-exports its entry points. Each distinct metric, param or tag key a search
mentions becomes one LEFT OUTER JOIN on an aliased table, with the key itself a
bound parameter in the ON clause, so the database can use its primary keys and
the ``latest_metrics (key, value)`` index. Keys and values never become SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import eq, ge, gt, le, lt, ne
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, and_, false, func, not_, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean, Text

from mlcycle.errors import ValidationFailed
from mlcycle.store._query_syntax import (
    ATTRIBUTES,
    ORDERING,
    And,
    Comparison,
    Expression,
    Field,
    Not,
    Number,
    Or,
    OrderKey,
    String,
    Value,
    check_where,
    parse_order_by,
    parse_where,
    quote_key,
    quote_string,
)
from mlcycle.store._schema import experiments, latest_metrics, params, runs, tags

__all__ = [
    "ATTRIBUTES",
    "And",
    "Comparison",
    "Expression",
    "Field",
    "Not",
    "Number",
    "Or",
    "OrderKey",
    "String",
    "Value",
    "check_where",
    "compile_search",
    "parse_order_by",
    "parse_where",
    "quote_key",
    "quote_string",
]


def compile_search(
    *,
    experiment_ids: Sequence[str] | None,
    where: str | None,
    order_by: Sequence[str],
    limit: int,
    offset: int,
) -> Select[Any]:
    """Build ``SELECT runs.id`` for one page of a run search, in result order.

    Every user value is a bound parameter. The default order is newest first;
    ``start_time DESC, id`` always ends the order so pages are stable.

    >>> sql = compile_search(experiment_ids=None, where="metrics.rmse < 45",
    ...                      order_by=["metrics.rmse"], limit=10, offset=0)
    >>> "45" in str(sql), "rmse" in str(sql)
    (False, False)
    """
    if limit < 0 or offset < 0:
        raise ValidationFailed(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
    texts = [order_by] if isinstance(order_by, str) else list(order_by)
    order = [key for text in texts for key in parse_order_by(text)]
    sources = _Sources()
    conditions: list[ColumnElement[bool]] = []
    if experiment_ids is not None:
        conditions.append(runs.c.experiment_id.in_(list(experiment_ids)))
    if where is not None and where.strip():
        conditions.append(sources.condition(parse_where(where)))
    ordering = [sources.order(key) for key in order] or [runs.c.start_time.desc()]
    return (
        select(runs.c.id)
        .select_from(sources.from_clause)
        .where(*conditions)
        .order_by(*ordering, runs.c.start_time.desc(), runs.c.id.asc())
        .limit(limit)
        .offset(offset)
    )


class _binary_text(FunctionElement[str]):  # noqa: N801 - SQLAlchemy names constructs like functions
    """A text column compared by code point, the same on every backend."""

    name = "binary_text"
    inherit_cache = True
    type = Text()


@compiles(_binary_text)
def _binary_text_default(element: _binary_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_binary_text, "postgresql")
def _binary_text_postgresql(element: _binary_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


class _case_sensitive_like(FunctionElement[bool]):  # noqa: N801 - as above
    """``column LIKE pattern`` with case mattering everywhere (SQLite's LIKE ignores it)."""

    name = "case_sensitive_like"
    inherit_cache = True
    type = Boolean()


@compiles(_case_sensitive_like)
def _like_default(element: _case_sensitive_like, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern, _ = element.clauses.clauses
    like = column.like(pattern, escape="\\")
    return f"({compiler.process(like, **kw)})"


@compiles(_case_sensitive_like, "sqlite")
def _like_sqlite(element: _case_sensitive_like, compiler: SQLCompiler, **kw: Any) -> str:
    column, _, glob = element.clauses.clauses
    return f"({compiler.process(column.op('GLOB')(glob), **kw)})"


def _like_to_glob(pattern: str) -> str:
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            literal = next(chars)
            out.append(f"[{literal}]" if literal in "*?[" else literal)
        else:
            out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(char, char))
    return "".join(out)


_TABLES = {"metric": latest_metrics, "param": params, "tag": tags}


class _Sources:
    """The FROM clause of a search: runs, plus one outer join per distinct key it mentions."""

    def __init__(self) -> None:
        self.from_clause: FromClause = runs
        self._aliases: dict[tuple[str, str], FromClause] = {}
        self._experiments: FromClause | None = None

    def joined(self, field: Field) -> FromClause:
        found = self._aliases.get((field.kind, field.key))
        if found is None:
            found = _TABLES[field.kind].alias(f"{field.kind[0]}_{len(self._aliases) + 1}")
            on = and_(found.c.run_id == runs.c.id, found.c.key == field.key)
            self.from_clause = self.from_clause.outerjoin(found, on)
            self._aliases[(field.kind, field.key)] = found
        return found

    def column(self, field: Field) -> ColumnElement[Any]:
        if field.kind != "attribute":
            return self.joined(field).c.value
        if field.key == "experiment":
            if self._experiments is None:
                self._experiments = experiments.alias("e")
                on = self._experiments.c.id == runs.c.experiment_id
                self.from_clause = self.from_clause.join(self._experiments, on)
            return self._experiments.c.name
        return runs.c[{"run_id": "id"}.get(field.key, field.key)]

    def is_text(self, field: Field) -> bool:
        return field.kind in {"param", "tag"} or ATTRIBUTES.get(field.key) in {"text", "status"}

    def order(self, key: OrderKey) -> ColumnElement[Any]:
        column = self.column(key.field)
        if self.is_text(key.field):
            column = _binary_text(column)
        return (column.desc() if key.descending else column.asc()).nulls_last()

    def condition(self, expression: Expression) -> ColumnElement[bool]:
        if isinstance(expression, And):
            return and_(*map(self.condition, expression.operands))
        if isinstance(expression, Or):
            return or_(*map(self.condition, expression.operands))
        if isinstance(expression, Not):
            # A missing field makes a comparison NULL; "not" of it should hold, not stay NULL.
            return not_(func.coalesce(self.condition(expression.operand), false()))
        return self.comparison(expression)

    def comparison(self, comparison: Comparison) -> ColumnElement[bool]:
        field, operator = comparison.field, comparison.operator
        if operator in {"IS NULL", "IS NOT NULL"}:
            present = self.joined(field).c.run_id if field.kind != "attribute" else None
            target = present if present is not None else self.column(field)
            return target.is_(None) if operator == "IS NULL" else target.is_not(None)
        if field.kind == "metric":
            return self.metric(comparison)
        column = self.column(field)
        values = [value.value for value in comparison.values]
        if operator == "LIKE" and self.is_text(field):
            pattern = str(values[0])
            return _case_sensitive_like(column, pattern, _like_to_glob(pattern))
        if operator in ORDERING and self.is_text(field):
            column = _binary_text(column)
        return _apply(column, operator, values)

    def metric(self, comparison: Comparison) -> ColumnElement[bool]:
        joined = self.joined(comparison.field)
        numbers = [v.value for v in comparison.values if isinstance(v, Number)]
        finite = [number for number in numbers if not math.isnan(number)]
        has_nan = len(finite) < len(numbers)
        operator = comparison.operator
        if operator == "IN":
            test = joined.c.value.in_(finite) if finite else false()
            return or_(test, joined.c.is_nan) if has_nan else test
        if operator == "NOT IN":
            # NaN values are NULL, so NOT IN never matches them, listed or not.
            return joined.c.value.not_in(finite) if finite else not_(joined.c.is_nan)
        if has_nan:
            return joined.c.is_nan if operator == "=" else not_(joined.c.is_nan)
        return _apply(joined.c.value, operator, finite)


def _apply(column: ColumnElement[Any], operator: str, values: list[Any]) -> ColumnElement[bool]:
    if operator == "IN":
        return column.in_(values)
    if operator == "NOT IN":
        return column.not_in(values)
    if operator == "ILIKE":
        return column.ilike(values[0], escape="\\")
    result: ColumnElement[bool] = _OPERATORS[operator](column, values[0])
    return result


_OPERATORS = {
    "=": eq,
    "!=": ne,
    "<": lt,
    "<=": le,
    ">": gt,
    ">=": ge,
}
