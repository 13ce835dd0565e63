"""An object's ancestry, walked from lineage edges and drawn as a tree or as JSON.

References are plain strings (``run:<id>``, ``data:/bike/3``,
``models:/bike/3``, ``env:sha256:...``), so any stage can add edges without a
new table. The walk follows ``edges_into`` upwards; an ancestor reached by two
paths appears under both, and a reference already on the current path is shown
once more marked as a cycle and not followed, so the walk always ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlcycle.store._protocols import LineageGraph
from mlcycle.store._records import LineageEdge

__all__ = ["LineageTree", "ancestry"]


@dataclass(frozen=True, slots=True)
class LineageTree:
    """A reference and the trees of what it was made from.

    ``kind`` is how this reference was used by the node below it (``None`` at
    the root); ``cycle`` marks a reference already on the path to the root, and
    ``truncated`` one whose parents lie beyond ``max_depth``.
    """

    ref: str
    kind: str | None = None
    parents: list[LineageTree] = field(default_factory=list)
    cycle: bool = False
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The tree as JSON-able dicts."""
        data: dict[str, Any] = {  # Any: JSON values
            "ref": self.ref,
            "kind": self.kind,
            "parents": [parent.to_dict() for parent in self.parents],
        }
        if self.cycle:
            data["cycle"] = True
        if self.truncated:
            data["truncated"] = True
        return data

    def lines(self) -> list[str]:
        """The tree as indented text, one reference per line.

        >>> tree = LineageTree("models:/bike/3", parents=[
        ...     LineageTree("run:01", "produced", [LineageTree("data:/bike/2", "input")])])
        >>> print("\\n".join(tree.lines()))
        models:/bike/3
        └── run:01 (produced)
            └── data:/bike/2 (input)
        """
        return [self._label(), *self._parent_lines("")]

    def _label(self) -> str:
        label = self.ref if self.kind is None else f"{self.ref} ({self.kind})"
        if self.cycle:
            label += " [cycle]"
        if self.truncated:
            label += " [...]"
        return label

    def _parent_lines(self, indent: str) -> list[str]:
        out: list[str] = []
        for index, parent in enumerate(self.parents):
            last = index == len(self.parents) - 1
            out.append(f"{indent}{'└── ' if last else '├── '}{parent._label()}")
            out.extend(parent._parent_lines(indent + ("    " if last else "│   ")))
        return out


def ancestry(graph: LineageGraph, ref: str, *, max_depth: int | None = None) -> LineageTree:
    """The tree of everything ``ref`` was made from, up to ``max_depth`` levels.

    Each reference's edges are read from ``graph`` once, however often it appears.
    """
    edges: dict[str, list[LineageEdge]] = {}

    def into(target: str) -> list[LineageEdge]:
        if target not in edges:
            edges[target] = graph.edges_into(target)
        return edges[target]

    def walk(node: str, kind: str | None, path: frozenset[str], depth: int) -> LineageTree:
        if node in path:
            return LineageTree(node, kind, cycle=True)
        if max_depth is not None and depth >= max_depth:
            return LineageTree(node, kind, truncated=bool(into(node)))
        inner = path | {node}
        parents = [walk(edge.source, edge.kind, inner, depth + 1) for edge in into(node)]
        return LineageTree(node, kind, parents)

    return walk(ref, None, frozenset(), 0)
