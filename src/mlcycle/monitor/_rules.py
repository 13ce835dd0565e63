"""Alert rules: a small language over monitor results, parsed with errors that point at the column.

A rule's condition compares metrics of one window with numbers, joined with
``and``, ``or``, ``not`` and parentheses, and may ask that it hold for several
windows in a row::

    drift_share > 0.3 for 2 windows
    f1 < 0.8 or roc_auc < 0.7
    model_age_days > 30

A metric a window does not have (or has as NaN) is unknown: a comparison on
it is neither true nor false, ``and``/``or`` follow three-valued logic, and a
window whose condition is unknown leaves the rule as it was.

>>> rule = parse_rule("drift-high", "drift_share > 0.3 for 2 windows")
>>> rule.windows, rule.metrics, rule.test({"drift_share": 0.41})
(2, ('drift_share',), True)
>>> rule.test({"f1": 0.9}) is None
True
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, get_args

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from mlcycle.errors import QuerySyntaxError, ValidationFailed
from mlcycle.store import Severity, check_alert_rule_name, check_deployment_name

if TYPE_CHECKING:
    from mlcycle.settings import AlertRuleSettings, AlertSettings

__all__ = [
    "SEVERITIES",
    "And",
    "Comparison",
    "Condition",
    "Not",
    "Or",
    "Rule",
    "parse_condition",
    "parse_duration",
    "parse_rule",
    "rule_from_settings",
    "rules_from_settings",
]

SEVERITIES: tuple[str, ...] = get_args(Severity)
_MAX_WINDOWS = 1000

_GRAMMAR = r"""
start: or_expr for_clause?

?or_expr: and_expr
        | or_expr OR and_expr          -> or_
?and_expr: not_expr
         | and_expr AND not_expr       -> and_
?not_expr: NOT not_expr                -> not_
         | atom
?atom: comparison
     | LPAR or_expr RPAR

comparison: METRIC OPERATOR number
number: SIGN? (NUMBER | INF)
for_clause: FOR NUMBER WINDOWS

AND.2: /and(?![\w.\/:-])/i
OR.2: /or(?![\w.\/:-])/i
NOT.2: /not(?![\w.\/:-])/i
FOR.2: /for(?![\w.\/:-])/i
WINDOWS.2: /windows?(?![\w.\/:-])/i
INF.2: /inf(inity)?(?![\w.\/:-])/i
METRIC: /[^\W\d][\w.\/:-]*/ | /`([^`]|``)+`/
OPERATOR: "==" | "!=" | "<=" | ">=" | "=" | "<" | ">"
SIGN: "-" | "+"
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
LPAR: "("
RPAR: ")"

%import common.WS
%ignore WS
"""

_LABELS = {  # terminal -> how an error message names it, in the order messages list them
    "METRIC": "a metric name such as drift_share",
    "NOT": "'not'",
    "LPAR": "'('",
    "OPERATOR": "a comparison (>, >=, <, <=, ==, !=)",
    "SIGN": "a number",
    "NUMBER": "a number",
    "INF": "a number",
    "AND": "'and'",
    "OR": "'or'",
    "FOR": "'for N windows'",
    "WINDOWS": "'windows'",
    "RPAR": "')'",
    "$END": "the end of the rule",
}
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """``metric operator value``; unknown (``None``) when the window lacks the metric."""

    metric: str
    operator: str
    value: float

    def test(self, values: Mapping[str, float | None]) -> bool | None:
        """Whether the comparison holds for one window's ``values``."""
        found = values.get(self.metric)
        if found is None or math.isnan(found):
            return None
        return _OPERATORS[self.operator](found, self.value)

    def __str__(self) -> str:
        return f"{_quote(self.metric)} {self.operator} {self.value!r}"


@dataclass(frozen=True, slots=True)
class And:
    """Every operand holds (false if one is false, unknown if none is but one is unknown)."""

    operands: tuple[Condition, ...]

    def test(self, values: Mapping[str, float | None]) -> bool | None:
        """Three-valued ``and`` over the operands."""
        results = [operand.test(values) for operand in self.operands]
        if False in results:
            return False
        return None if None in results else True


@dataclass(frozen=True, slots=True)
class Or:
    """One operand holds (true if one is true, unknown if none is but one is unknown)."""

    operands: tuple[Condition, ...]

    def test(self, values: Mapping[str, float | None]) -> bool | None:
        """Three-valued ``or`` over the operands."""
        results = [operand.test(values) for operand in self.operands]
        if True in results:
            return True
        return None if None in results else False


@dataclass(frozen=True, slots=True)
class Not:
    """The operand does not hold (unknown stays unknown)."""

    operand: Condition

    def test(self, values: Mapping[str, float | None]) -> bool | None:
        """Three-valued ``not``."""
        result = self.operand.test(values)
        return None if result is None else not result


Condition = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class Rule:
    """A named condition over monitor results, with what to do when it fires.

    ``windows`` is how many windows in a row the condition must hold;
    ``deployments`` the deployments it watches (empty: every one);
    ``cooldown`` how long after resolving a new firing is a flap of the same
    alert; ``notify`` the notifiers it tells.
    """

    name: str
    expression: str
    condition: Condition
    windows: int = 1
    severity: Severity = "warning"
    deployments: tuple[str, ...] = ()
    cooldown: timedelta = timedelta(hours=1)
    notify: tuple[str, ...] = ()
    description: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the condition reads, in the order they appear."""
        return tuple(dict.fromkeys(_metrics(self.condition)))

    def applies_to(self, deployment: str) -> bool:
        """Whether the rule watches ``deployment``."""
        return not self.deployments or deployment in self.deployments

    def test(self, values: Mapping[str, float | None]) -> bool | None:
        """Whether the condition holds for one window (``None``: the window cannot say)."""
        return self.condition.test(values)


def _metrics(condition: Condition) -> list[str]:
    if isinstance(condition, Comparison):
        return [condition.metric]
    if isinstance(condition, Not):
        return _metrics(condition.operand)
    return [name for operand in condition.operands for name in _metrics(operand)]


def _quote(metric: str) -> str:
    plain = re.fullmatch(r"[^\W\d][\w.\/:-]*", metric) and metric.lower() not in _KEYWORDS
    return metric if plain else "`" + metric.replace("`", "``") + "`"


_KEYWORDS = frozenset({"and", "or", "not", "for", "window", "windows", "inf", "infinity"})


def parse_rule(
    name: str,
    when: str,
    *,
    severity: str = "warning",
    deployments: tuple[str, ...] = (),
    cooldown: str | timedelta = "1h",
    notify: tuple[str, ...] = (),
    description: str = "",
) -> Rule:
    """Parse and check one rule; ``QuerySyntaxError`` points at the column of a bad expression."""
    check_alert_rule_name(name)
    condition, windows = parse_condition(when, rule=name)
    if severity not in SEVERITIES:
        raise ValidationFailed(
            f"alert rule '{name}' has severity {severity!r}; use one of {', '.join(SEVERITIES)}"
        )
    for deployment in deployments:
        check_deployment_name(deployment)
    gap = cooldown if isinstance(cooldown, timedelta) else parse_duration(cooldown, what=name)
    return Rule(
        name=name,
        expression=when.strip(),
        condition=condition,
        windows=windows,
        severity=severity,  # type: ignore[arg-type]  # checked against SEVERITIES above
        deployments=tuple(deployments),
        cooldown=gap,
        notify=tuple(notify),
        description=description,
    )


def parse_condition(text: str, *, rule: str = "") -> tuple[Condition, int]:
    """The condition of ``text`` and its ``for N windows`` (1 without one)."""
    label = f"alert rule '{rule}': " if rule else ""
    if not text.strip():
        raise _error(f"{label}the rule is empty; write one such as drift_share > 0.3", text, 1)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, label) from None
    condition = _condition(tree.children[0], text, label)
    windows = 1
    if len(tree.children) > 1:
        windows = _windows(_as_tree(tree.children[1]), text, label)
    return condition, windows


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="basic", maybe_placeholders=False)


def _syntax_error(exc: UnexpectedInput, text: str, label: str) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream or 0
        char = text[position]
        if char == "`":
            return _error(
                f"{label}unterminated `quoted metric`: add the closing `", text, position + 1
            )
        expected = _describe(_expected(text, position))
        return _error(
            f"{label}unexpected character {char!r}; expected {expected}", text, position + 1
        )
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    if token.type == "$END":
        expected = _describe(_expected(text, len(text)))
        return _error(
            f"{label}the rule ends too early; expected {expected}", text, len(text.rstrip()) + 1
        )
    position = token.start_pos or 0
    expected = _describe(_expected(text, position))
    return _error(f"{label}unexpected '{token}'; expected {expected}", text, position + 1)


def _expected(text: str, position: int) -> set[str]:
    interactive = _parser().parse_interactive(text[:position])
    interactive.exhaust_lexer()
    accepted: set[str] = interactive.accepts()  # type: ignore[no-untyped-call]  # lark leaves it untyped
    return accepted


def _describe(names: set[str]) -> str:
    found = list(dict.fromkeys(label for name, label in _LABELS.items() if name in names))
    return ", ".join(found[:-1]) + f" or {found[-1]}" if len(found) > 1 else "".join(found)


def _error(message: str, text: str, column: int) -> QuerySyntaxError:
    shown = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return QuerySyntaxError(message, expression=shown, column=column)


def _as_tree(node: Tree[Token] | Token) -> Tree[Token]:
    assert isinstance(node, Tree)
    return node


def _condition(node: Tree[Token] | Token, text: str, label: str) -> Condition:
    tree = _as_tree(node)
    kind = str(tree.data)
    parts = [child for child in tree.children if isinstance(child, Tree)]
    if kind in {"and_", "or_"}:
        joined = And if kind == "and_" else Or
        operands: list[Condition] = []
        for part in (_condition(p, text, label) for p in parts):
            operands.extend(part.operands if isinstance(part, joined) else [part])
        return joined(tuple(operands))
    if kind == "not_":
        return Not(_condition(parts[0], text, label))
    if kind == "comparison":
        metric, op, number = tree.children
        name = str(metric)
        if name.startswith("`"):
            name = name[1:-1].replace("``", "`")
        value = float(
            "".join(str(t) for t in _as_tree(number).children).lower().replace("infinity", "inf")
        )
        spelled = "==" if str(op) == "=" else str(op)
        return Comparison(name, spelled, value)
    return _condition(parts[0], text, label)  # a parenthesised condition


def _windows(tree: Tree[Token], text: str, label: str) -> int:
    count = tree.children[1]
    assert isinstance(count, Token)
    column = (count.start_pos or 0) + 1
    if not re.fullmatch(r"\d+", str(count)) or not 1 <= int(count) <= _MAX_WINDOWS:
        raise _error(
            f"{label}'for {count} windows' needs a whole number of windows "
            f"from 1 to {_MAX_WINDOWS}",
            text,
            column,
        )
    return int(count)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float, *, what: str = "") -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w`` (or plain seconds) as a ``timedelta``.

    >>> parse_duration("1h"), parse_duration(90)
    (datetime.timedelta(seconds=3600), datetime.timedelta(seconds=90))
    """
    if isinstance(text, int | float) and not isinstance(text, bool) and text >= 0:
        return timedelta(seconds=float(text))
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        owner = f" of alert rule '{what}'" if what else ""
        raise ValidationFailed(
            f"the duration {text!r}{owner} is not a duration; write a number with a unit: "
            "90s, 30m, 1h, 2d or 1w"
        )
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNITS[(unit or "s").lower()])


def rule_from_settings(name: str, config: AlertRuleSettings) -> Rule:
    """The rule ``[alerts.rules.NAME]`` declares."""
    return parse_rule(
        name,
        config.when,
        severity=config.severity,
        deployments=config.deployments,
        cooldown=config.cooldown,
        notify=config.notify,
        description=config.description,
    )


def rules_from_settings(settings: AlertSettings) -> dict[str, Rule]:
    """Every rule of ``[alerts.rules]``, checked, with each notifier it names declared.

    Raises ``QuerySyntaxError`` for a rule that does not parse and
    ``ValidationFailed`` for anything else, naming the rule.
    """
    from mlcycle.monitor._notifiers import known_kinds  # noqa: PLC0415  (entry points: read on use)

    rules = {name: rule_from_settings(name, config) for name, config in settings.rules.items()}
    declared = sorted(settings.notifiers)
    for rule in rules.values():
        for notifier in rule.notify:
            if notifier not in settings.notifiers:
                listed = ", ".join(declared) if declared else "none declared"
                raise ValidationFailed(
                    f"alert rule '{rule.name}' notifies '{notifier}', which is not a notifier "
                    f"(declared: {listed}); add [alerts.notifiers.{notifier}] to mlcycle.toml "
                    f"with a kind ({', '.join(known_kinds())})"
                )
    return rules
