"""What alias history and stored gate results mean: rollback targets and gate verdicts.

Pure functions over records, so the rules are tested without a store.
A version's ``evaluation`` (JSON, as ``Evaluation.to_dict`` writes it) says
``passed`` and lists its gate ``results``, each a JSON object with at least
``name`` and ``passed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlcycle.store import AliasMove

__all__ = ["evaluation_passed", "failed_gates", "rollback_target"]


def rollback_target(history: Sequence[AliasMove], current: int | None) -> int | None:
    """The version a rollback of an alias returns to, walking its history back from the end.

    Each move's ``from_version`` is a version the alias held before; the
    first one that is not ``current`` and was never itself rolled back from
    is the target (``None`` when there is none).

    >>> from datetime import UTC, datetime
    >>> def move(old, new, kind="promote"):
    ...     return AliasMove("m", "production", old, new, kind, "ana", datetime.now(UTC))
    >>> history = [move(None, 1), move(1, 2), move(2, 3)]
    >>> rollback_target(history, 3)
    2
    >>> rollback_target([*history, move(3, 2, "rollback")], 2)
    1
    """
    rolled_back_from = {move.from_version for move in history if move.kind == "rollback"}
    if current is not None:
        rolled_back_from.add(current)
    for move in reversed(history):
        candidate = move.from_version
        if candidate is not None and candidate not in rolled_back_from:
            return candidate
    return None


def _gates(evaluation: Mapping[str, Any]) -> list[Mapping[str, Any]]:  # Any: JSON values
    return [gate for gate in evaluation.get("results", []) if isinstance(gate, Mapping)]


def failed_gates(evaluation: Mapping[str, Any]) -> list[str]:  # Any: JSON values
    """The names of the gates that failed in ``evaluation``.

    >>> failed_gates({"results": [{"name": "rmse", "passed": False},
    ...                           {"name": "nan", "passed": True}]})
    ['rmse']
    """
    return [str(gate.get("name", "?")) for gate in _gates(evaluation) if not gate.get("passed")]


def evaluation_passed(evaluation: Mapping[str, Any] | None) -> bool:  # Any: JSON values
    """Whether ``evaluation`` exists and every gate in it passed."""
    if evaluation is None:
        return False
    if "passed" in evaluation and not evaluation["passed"]:
        return False
    return not failed_gates(evaluation)
