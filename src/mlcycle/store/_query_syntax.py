"""The run-search language itself: its parse tree, its parser and the checks on it.

The grammar lives in ``query.lark`` beside this module and is published in
``docs/query-language.md``. Parsing yields a small tree of frozen dataclasses that
is already checked (known fields, value types that fit them), so the CLI can
validate an expression before it opens a store; ``_query`` compiles the tree to SQL.

>>> parse_where("metrics.rmse < 45 and params.model = 'gbm'")  # doctest: +ELLIPSIS
And(operands=(Comparison(field=Field(kind='metric', key='rmse', ...), operator='<', ...
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Literal

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from mlcycle.errors import QuerySyntaxError
from mlcycle.store._records import RunStatus

__all__ = [
    "ATTRIBUTES",
    "And",
    "Comparison",
    "Expression",
    "Field",
    "FieldKind",
    "Not",
    "Number",
    "Or",
    "OrderKey",
    "String",
    "Value",
    "check_where",
    "parse_order_by",
    "parse_where",
    "quote_key",
    "quote_string",
]

FieldKind = Literal["metric", "param", "tag", "attribute"]

# How each attribute compares: as text, as a time (epoch seconds), or as a run status.
ATTRIBUTES: dict[str, Literal["text", "time", "status"]] = {
    "actor": "text",
    "end_time": "time",
    "experiment": "text",
    "experiment_id": "text",
    "name": "text",
    "parent_id": "text",
    "run_id": "text",
    "start_time": "time",
    "status": "status",
}
# MLflow's names for the same attributes, so MLflow habits keep working.
_ATTRIBUTE_ALIASES = {"run_name": "name", "user_id": "actor", "experiment_name": "experiment"}
_PREFIXES: dict[str, FieldKind] = {
    "metrics": "metric",
    "params": "param",
    "tags": "tag",
    "attributes": "attribute",
}
# Prefixes people type from habit (MLflow accepts some); we name the one we mean.
_PREFIX_HINTS = {
    "metric": "metrics",
    "param": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
ORDERING = frozenset({"<", "<=", ">", ">="})
_OPERATOR_SPELLINGS = {"==": "=", "<>": "!="}


@dataclass(frozen=True, slots=True)
class Field:
    """What a comparison looks at: a metric, param or tag key, or a run attribute."""

    kind: FieldKind
    key: str
    column: int

    def __str__(self) -> str:
        return self.key if self.kind == "attribute" else f"{self.kind}s.{quote_key(self.key)}"


@dataclass(frozen=True, slots=True)
class String:
    """A quoted text value, with its escapes already resolved."""

    value: str
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric value (``nan`` and ``inf`` included), with the text it was written as."""

    value: float
    text: str
    column: int


Value = String | Number


@dataclass(frozen=True, slots=True)
class Comparison:
    """One test of a field: ``operator`` is upper-case SQL (``=``, ``NOT IN``, ``IS NULL``...)."""

    field: Field
    operator: str
    values: tuple[Value, ...]
    column: int


@dataclass(frozen=True, slots=True)
class And:
    """Every operand holds."""

    operands: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one operand holds."""

    operands: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The operand does not hold (a run missing the field counts as not holding it)."""

    operand: Expression


Expression = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One sort key; runs without a value sort last in either direction."""

    field: Field
    descending: bool = False


def quote_string(value: str) -> str:
    """Write ``value`` as a string literal of the language.

    >>> quote_string("it's")
    "'it\\\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_key(key: str) -> str:
    """Write a metric, param or tag key so the language reads it back unchanged.

    >>> quote_key("val loss"), quote_key("val/loss")
    ('`val loss`', 'val/loss')
    """
    plain = key and key[0] not in "`" and all(c.isalnum() or c in "_./:-" for c in key)
    return key if plain else "`" + key.replace("`", "``") + "`"


def parse_where(text: str) -> Expression:
    """Parse and check a ``where`` expression; raises QuerySyntaxError pointing at the problem."""
    if not text.strip():
        raise _error("the expression is empty; write a condition such as metrics.rmse < 1", text, 1)
    tree = _parse(text, "where")
    return _Checker(text).expression(tree.children[0])


def check_where(text: str | None) -> None:
    """Raise QuerySyntaxError if ``text`` is not a valid ``where`` expression (blank is valid)."""
    if text is not None and text.strip():
        parse_where(text)


def parse_order_by(text: str) -> tuple[OrderKey, ...]:
    """Parse ``metrics.rmse``, ``start_time DESC`` or several keys separated by commas."""
    if not text.strip():
        raise _error("the order_by key is empty; write one such as metrics.rmse DESC", text, 1)
    tree = _parse(text, "order_by")
    checker = _Checker(text)
    keys: list[OrderKey] = []
    for key in tree.children:
        assert isinstance(key, Tree)
        ident, *direction = key.children
        descending = bool(direction) and str(direction[0]).lower() == "desc"
        keys.append(OrderKey(checker.field(_token(ident)), descending=descending))
    return tuple(keys)


@cache
def _parser() -> Lark:
    grammar = files("mlcycle.store").joinpath("query.lark").read_text(encoding="utf-8")
    # The basic lexer reads keywords as keywords everywhere, so "and" is never taken for a field.
    return Lark(
        grammar,
        parser="lalr",
        lexer="basic",
        start=["where", "order_by"],
        maybe_placeholders=False,
    )


_EXPECTED = {  # terminal -> how an error message names it, in the order messages list them
    "IDENT": "a field such as metrics.rmse",
    "NOT": "'not'",
    "LPAR": "'('",
    "OPERATOR": "a comparison (=, !=, <, <=, >, >=)",
    "LIKE": "'like'",
    "ILIKE": "'ilike'",
    "IN": "'in'",
    "IS": "'is'",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "NULL": "'null'",
    "AND": "'and'",
    "OR": "'or'",
    "ASC": "'asc'",
    "DESC": "'desc'",
    "COMMA": "','",
    "RPAR": "')'",
}


def _parse(text: str, start: str) -> Tree[Token]:
    try:
        return _parser().parse(text, start=start)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, start) from None


def _syntax_error(exc: UnexpectedInput, text: str, start: str) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream or 0
        return _character_error(text, position, _expected(text, position, start))
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    if token.type == "$END":
        expected = _describe(_expected(text, len(text), start))
        message = f"the expression ends too early; expected {expected}"
        return _error(message, text, len(text.rstrip()) + 1)
    position = token.start_pos or 0
    expected = _describe(_expected(text, position, start))
    what = "keyword" if token.type in _KEYWORDS else "token"
    return _error(f"unexpected {what} '{token}'; expected {expected}", text, position + 1)


_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "LIKE", "ILIKE", "IN", "IS", "NULL", "NAN", "INF", "ASC", "DESC"}
)


def _expected(text: str, position: int, start: str) -> set[str]:
    """The terminals the grammar accepts right after ``text[:position]``."""
    interactive = _parser().parse_interactive(text[:position], start=start)
    interactive.exhaust_lexer()
    accepted: set[str] = interactive.accepts()  # type: ignore[no-untyped-call]  # lark leaves it untyped
    return accepted


def _character_error(text: str, position: int, expected: set[str]) -> QuerySyntaxError:
    char = text[position]
    column = position + 1
    if char in "'\"":
        return _error(f"unterminated string: add the closing {char}", text, column)
    following = text[position + 1 : position + 2]
    if char == "." and following == "`":
        return _error("unterminated backquoted key: add the closing `", text, column + 1)
    if char == "." and (not following or following.isspace()):
        return _error("a key must follow the dot, as in metrics.rmse", text, column + 1)
    message = f"unexpected character {char!r}; expected {_describe(expected)}"
    return _error(message, text, column)


def _describe(names: set[str]) -> str:
    if names & {"SIGN", "NAN", "INF"}:
        names.add("NUMBER")
    found = [label for name, label in _EXPECTED.items() if name in names]
    if "$END" in names:
        found.append("the end of the expression")
    return ", ".join(found[:-1]) + f" or {found[-1]}" if len(found) > 1 else "".join(found)


def _error(message: str, text: str, column: int) -> QuerySyntaxError:
    # The message draws the expression on one line with a caret under the column.
    shown = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return QuerySyntaxError(message, expression=shown, column=column)


def _token(node: Tree[Token] | Token) -> Token:
    assert isinstance(node, Token)
    return node


def _tree(node: Tree[Token] | Token) -> Tree[Token]:
    assert isinstance(node, Tree)
    return node


class _Checker:
    """Turns lark's parse tree into checked dataclasses, reporting errors against ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, message: str, column: int) -> QuerySyntaxError:
        return _error(message, self.text, column)

    def expression(self, node: Tree[Token] | Token) -> Expression:
        tree = _tree(node)
        kind = str(tree.data)
        parts = [child for child in tree.children if isinstance(child, Tree)]
        if kind in {"and_", "or_"}:
            operands: list[Expression] = []
            for part in map(self.expression, parts):
                same = isinstance(part, And if kind == "and_" else Or)
                operands.extend(part.operands if isinstance(part, And | Or) and same else [part])
            return And(tuple(operands)) if kind == "and_" else Or(tuple(operands))
        if kind == "not_":
            return Not(self.expression(parts[0]))
        return self.comparison(tree)

    def comparison(self, tree: Tree[Token]) -> Comparison:
        tokens = [child for child in tree.children if isinstance(child, Token)]
        field = self.field(tokens[0])
        column = (tokens[1].start_pos or 0) + 1
        kind = str(tree.data)
        values: tuple[Value, ...]
        if kind == "binary":
            operator = str(tokens[1]).upper()
            operator = _OPERATOR_SPELLINGS.get(operator, operator)
            values = (self.value(_tree(tree.children[-1])),)
        elif kind in {"in_", "not_in"}:
            operator = "IN" if kind == "in_" else "NOT IN"
            values = tuple(self.value(_tree(v)) for v in _tree(tree.children[-1]).children)
        else:
            operator = "IS NULL" if kind == "is_null" else "IS NOT NULL"
            values = ()
        return _check_types(self, Comparison(field, operator, values, column))

    def field(self, token: Token) -> Field:
        column = (token.start_pos or 0) + 1
        prefix, dot, key = str(token).partition(".")
        if key.startswith("`"):
            key = key[1:-1].replace("``", "`")
        lower = prefix.lower()
        if not dot:
            return self.attribute(prefix, column)
        if lower not in _PREFIXES:
            hint = _PREFIX_HINTS.get(lower) or next(
                iter(difflib.get_close_matches(lower, _PREFIXES)), None
            )
            fix = (
                f"did you mean {hint}.{key}?"
                if hint
                else "use metrics., params., tags. or attributes."
            )
            raise self.fail(f"unknown prefix '{prefix}.': {fix}", column)
        if not key:
            raise self.fail("the key is empty; write metrics.`name` with a name inside", column)
        if _PREFIXES[lower] == "attribute":
            return self.attribute(key, column)
        return Field(_PREFIXES[lower], key, column)

    def attribute(self, name: str, column: int) -> Field:
        canonical = _ATTRIBUTE_ALIASES.get(name.lower(), name.lower())
        if canonical in ATTRIBUTES:
            return Field("attribute", canonical, column)
        known = ", ".join(sorted(ATTRIBUTES))
        raise self.fail(
            f"unknown attribute '{name}'; attributes are {known}"
            f" (for a metric, param or tag write metrics.{name}, params.{name} or tags.{name})",
            column,
        )

    def value(self, tree: Tree[Token]) -> Value:
        tokens = [_token(child) for child in tree.children]
        column = (tokens[0].start_pos or 0) + 1
        if str(tree.data) == "string":
            return String(_unescape(str(tokens[0])), column)
        text = "".join(map(str, tokens))
        return Number(float(text.lower().replace("infinity", "inf")), text, column)


def _unescape(literal: str) -> str:
    quote, body = literal[0], literal[1:-1]
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars)
            out.append(_ESCAPES.get(escaped, "\\" + escaped))
        elif char == quote:
            next(chars)  # a doubled quote stands for one
            out.append(quote)
        else:
            out.append(char)
    return "".join(out)


# Other escapes keep their backslash, so LIKE patterns can say \% and \_.
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


# --- checking value types ----------------------------------------------------------------------


def _check_types(checker: _Checker, comparison: Comparison) -> Comparison:
    field = comparison.field
    if field.kind == "metric":
        return _check_metric(checker, comparison)
    if field.kind in {"param", "tag"}:
        values = tuple(_as_text(value) for value in comparison.values)
        return _check_like(
            checker, Comparison(field, comparison.operator, values, comparison.column)
        )
    nature = ATTRIBUTES[field.key]
    if nature == "time":
        return _check_time(checker, comparison)
    for value in comparison.values:
        if isinstance(value, Number):
            example = "'finished'" if nature == "status" else f"'{value.text}'"
            raise checker.fail(
                f"{field} is text; quote the value: {field} = {example}", value.column
            )
    if nature == "status":
        return _check_status(checker, comparison)
    return _check_like(checker, comparison)


def _check_metric(checker: _Checker, comparison: Comparison) -> Comparison:
    field, operator = comparison.field, comparison.operator
    if operator in {"LIKE", "ILIKE"}:
        raise checker.fail(
            f"{operator} works on text, and {field} is a number; use =, !=, <, <=, >, >= or IN",
            comparison.column,
        )
    for value in comparison.values:
        if isinstance(value, String):
            raise checker.fail(
                f"{field} is a number; compare it with a number, not the text '{value.value}'",
                value.column,
            )
        if math.isnan(value.value) and operator in ORDERING:
            raise checker.fail(
                "nothing is less or greater than nan; compare nan with = or !=", value.column
            )
    return comparison


def _check_time(checker: _Checker, comparison: Comparison) -> Comparison:
    field, operator = comparison.field, comparison.operator
    if operator in {"LIKE", "ILIKE"}:
        raise checker.fail(
            f"{operator} works on text, and {field} is a time; use =, !=, <, <=, >, >= or IN",
            comparison.column,
        )
    values: list[Value] = []
    for value in comparison.values:
        if isinstance(value, String):
            values.append(Number(_epoch(checker, value), value.value, value.column))
        elif math.isnan(value.value):
            raise checker.fail(f"{field} is a time and cannot be nan", value.column)
        else:
            values.append(value)
    return Comparison(field, operator, tuple(values), comparison.column)


def _epoch(checker: _Checker, value: String) -> float:
    try:
        moment = datetime.fromisoformat(value.value.strip())
    except ValueError:
        raise checker.fail(
            f"'{value.value}' is not a time; write epoch seconds (1767225600)"
            " or an ISO timestamp ('2026-01-01T00:00:00Z'; without a zone it means UTC)",
            value.column,
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _check_status(checker: _Checker, comparison: Comparison) -> Comparison:
    operator = comparison.operator
    if operator in ORDERING:
        raise checker.fail(
            "status has no order; use =, !=, IN, NOT IN, LIKE or ILIKE", comparison.column
        )
    if operator in {"LIKE", "ILIKE"}:
        return _check_like(checker, comparison)
    values: list[Value] = []
    statuses = [status.value for status in RunStatus]
    for value in comparison.values:
        assert isinstance(value, String)
        if value.value.lower() not in statuses:
            known = ", ".join(f"'{status}'" for status in statuses)
            raise checker.fail(f"unknown status '{value.value}'; use one of {known}", value.column)
        values.append(String(value.value.lower(), value.column))
    return Comparison(comparison.field, operator, tuple(values), comparison.column)


def _check_like(checker: _Checker, comparison: Comparison) -> Comparison:
    if comparison.operator in {"LIKE", "ILIKE"}:
        pattern = comparison.values[0]
        assert isinstance(pattern, String)
        if (len(pattern.value) - len(pattern.value.rstrip("\\"))) % 2:
            raise checker.fail(
                "the pattern ends with a lone backslash, which escapes nothing;"
                " write \\\\\\\\ for a literal backslash",
                pattern.column,
            )
    return comparison


def _as_text(value: Value) -> String:
    return String(value.text, value.column) if isinstance(value, Number) else value
