"""Erasure predicates: a small, safe row filter language evaluated with Arrow compute.

``mc.data.erase("customers", where="email = 'ana@example.com'")`` names the
rows to erase with a restricted expression. It is parsed here, never passed
to ``eval`` or to a SQL engine, and runs as vectorised Arrow kernels. Grammar::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | comparison
    comparison := column ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") literal
                | column ["not"] "in" "(" literal ("," literal)* ")"
                | column "is" ["not"] "null"
    column     := identifier | "double-quoted name"
    literal    := 'single-quoted text' ('' for a quote) | number | true | false

Keywords are case-insensitive. Comparisons follow SQL: a null value matches
nothing (``is null`` finds it), so a row is erased only where the whole
expression is true. A literal is converted to its column's type (text to a
date or timestamp, for instance); one that cannot be is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import QuerySyntaxError, ValidationFailed

if TYPE_CHECKING:
    from mlcycle.store import DatasetVersion

__all__ = ["Erasure", "Predicate", "parse_predicate"]

Literal = str | int | float | bool
Mask = Callable[[pa.Table], pa.ChunkedArray | pa.Array]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")+")
      | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_COMPARE = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<>": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: rows removed per version number, and every version as stored."""

    name: str
    predicate: str
    reason: str
    rows_removed: dict[int, int]
    versions: list[DatasetVersion]

    @property
    def total_removed(self) -> int:
        """Rows removed over all versions (a row kept by many versions counts in each)."""
        return sum(self.rows_removed.values())


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


@dataclass(frozen=True)
class Predicate:
    """A parsed erasure predicate: its text, the columns it reads, and its mask."""

    text: str
    columns: frozenset[str]
    _mask: Mask

    def mask(self, table: pa.Table) -> pa.Array:
        """True for the rows to erase (never null)."""
        found = self._mask(table)
        if isinstance(found, pa.ChunkedArray):
            found = found.combine_chunks()
        return pc.fill_null(found, fill_value=False)


def parse_predicate(text: str) -> Predicate:
    """Parse ``text``; a mistake raises ``QuerySyntaxError`` pointing at it.

    >>> import pyarrow as pa
    >>> p = parse_predicate("email = 'ana@example.com' or age > 90")
    >>> p.mask(pa.table({"email": ["ana@example.com", "bo@x.org"], "age": [30, 95]})).to_pylist()
    [True, True]
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed(
            "where= must be a non-empty predicate such as \"email = 'ana@example.com'\""
        )
    parser = _Parser(text, _tokens(text))
    mask = parser.expression()
    parser.expect_end()
    return Predicate(text=text, columns=frozenset(parser.columns), _mask=mask)


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            start = len(text) - len(text[position:].lstrip())
            raise QuerySyntaxError(
                "cannot read the predicate here", expression=text, column=start + 1
            )
        kind = match.lastgroup or ""
        start = match.start(kind)
        found.append(_Token(kind, match.group(kind), start + 1))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.at = 0
        self.columns: set[str] = set()

    def fail(self, message: str, token: _Token | None = None) -> QuerySyntaxError:
        where = token or self.peek()
        column = where.column if where is not None else len(self.text) + 1
        return QuerySyntaxError(message, expression=self.text, column=column)

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.fail("the predicate ends too early")
        self.at += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() in words:
            self.at += 1
            return True
        return False

    def symbol(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == text:
            self.at += 1
            return True
        return False

    def expect_end(self) -> None:
        if self.peek() is not None:
            raise self.fail("expected 'and', 'or' or the end of the predicate")

    def expression(self) -> Mask:
        parts = [self.term()]
        while self.keyword("or"):
            parts.append(self.term())
        return _combine(parts, pc.or_kleene)

    def term(self) -> Mask:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return _combine(parts, pc.and_kleene)

    def factor(self) -> Mask:
        if self.keyword("not"):
            inner = self.factor()
            return lambda table: pc.invert(inner(table))
        if self.symbol("("):
            inner = self.expression()
            if not self.symbol(")"):
                raise self.fail("expected ')'")
            return inner
        return self.comparison()

    def column(self) -> str:
        token = self.take()
        if token.kind == "quoted":
            name = token.text[1:-1].replace('""', '"')
        elif token.kind == "word" and token.text.lower() not in _KEYWORDS:
            name = token.text
        else:
            raise self.fail("expected a column name", token)
        self.columns.add(name)
        return name

    def literal(self) -> Literal:
        token = self.take()
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "number":
            number = float(token.text)
            return int(token.text) if re.fullmatch(r"[-+]?\d+", token.text) else number
        if token.kind == "word" and token.text.lower() in {"true", "false"}:
            return token.text.lower() == "true"
        raise self.fail("expected a value: 'text', a number, true or false", token)

    def comparison(self) -> Mask:
        name = self.column()
        if self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("null"):
                raise self.fail("expected 'null' after 'is'")
            if negate:
                return lambda table: pc.is_valid(table.column(name))
            return lambda table: pc.is_null(table.column(name))
        negate = self.keyword("not")
        if self.keyword("in"):
            return self.membership(name, negate=negate)
        if negate:
            raise self.fail("expected 'in' after 'not'")
        token = self.take()
        compare = _COMPARE.get(token.text) if token.kind == "op" else None
        if compare is None:
            raise self.fail("expected a comparison (= != < <= > >=), 'in' or 'is'", token)
        value = self.literal()
        return lambda table: compare(table.column(name), _scalar(value, table, name))

    def membership(self, name: str, *, negate: bool) -> Mask:
        if not self.symbol("("):
            raise self.fail("expected '(' after 'in'")
        values = [self.literal()]
        while self.symbol(","):
            values.append(self.literal())
        if not self.symbol(")"):
            raise self.fail("expected ',' or ')'")

        def mask(table: pa.Table) -> pa.Array:
            column = table.column(name)
            options = pa.array([_scalar(v, table, name).as_py() for v in values], column.type)
            found = pc.is_in(column, value_set=options)
            found = pc.if_else(pc.is_null(column), pa.scalar(None, pa.bool_()), found)
            return pc.invert(found) if negate else found

        return mask


def _combine(parts: list[Mask], join: Callable[..., pa.Array]) -> Mask:
    if len(parts) == 1:
        return parts[0]

    def mask(table: pa.Table) -> pa.Array:
        found = parts[0](table)
        for part in parts[1:]:
            found = join(found, part(table))
        return found

    return mask


def _scalar(value: Literal, table: pa.Table, name: str) -> pa.Scalar:
    kind = table.schema.field(name).type
    try:
        return pa.scalar(value).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ValidationFailed(
            f"cannot compare column '{name}' ({kind}) with {value!r}: {exc}; "
            "write the value as the column's type"
        ) from exc
