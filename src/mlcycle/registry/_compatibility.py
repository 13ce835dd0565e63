"""Gates about a model's inputs: still compatible with production's, and free of denied columns.

Callers of the production model send its input columns. A candidate that
drops one of them, or expects another type, breaks whoever relies on it, so
the gate names each removed or retyped column (added columns are reported,
not judged). Columns the data policy denies (``data.deny_columns``, found at
registration) must never be features; names are compared as the policy
compares them: case-insensitively, ignoring separators.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlcycle.registry._gates import GateResult, gate_failed, gate_passed, gate_skipped
from mlcycle.registry._signature import Signature

__all__ = ["denied_column_gate", "signature_gate"]


def signature_gate(candidate: Signature, production: Signature | None) -> GateResult:
    """Fail when an input of ``production`` is missing from ``candidate`` or has another type."""
    name = "signature_compatible"
    if production is None:
        return gate_skipped(name, "no production version to compare with")
    if not production.inputs:
        return gate_skipped(name, "production has no recorded input signature")
    mine = {column.name: column for column in candidate.inputs}
    removed = [column.name for column in production.inputs if column.name not in mine]
    retyped = [
        f"{column.name} ({column.type} -> {mine[column.name].type})"
        for column in production.inputs
        if column.name in mine and mine[column.name].type != column.type
    ]
    theirs = set(production.input_names)
    added = [column for column in candidate.input_names if column not in theirs]
    problems = []
    if removed:
        problems.append(f"removes input column(s) production takes: {', '.join(removed)}")
    if retyped:
        problems.append(f"changes the type of: {', '.join(retyped)}")
    extra = f"; adds {', '.join(added)}" if added else ""
    if problems:
        return gate_failed(
            name, "; ".join(problems) + extra, float(len(removed) + len(retyped)), 0.0
        )
    return gate_passed(name, f"takes every input of production with its type{extra}", 0.0, 0.0)


def denied_column_gate(features: Iterable[str], denied: Iterable[str]) -> GateResult:
    """Fail when a feature is a column the data policy denies."""
    name = "no_denied_columns"
    keys = {_name_key(column) for column in denied}
    found = sorted(column for column in features if _name_key(column) in keys)
    if found:
        return gate_failed(
            name,
            f"feature(s) {', '.join(found)} were flagged by the data policy of the training "
            "data (personal data, or data.deny_columns); drop them from the model's inputs",
            float(len(found)),
            0.0,
        )
    return gate_passed(name, "no feature is a denied column", 0.0, 0.0)


def _name_key(name: str) -> str:
    return "".join(char for char in name.casefold() if char.isalnum())
