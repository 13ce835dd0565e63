"""What a check found: anomalies, and their JSON, text and HTML renderings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any, Literal

import orjson

from mlcycle.errors import ValidationFailed

__all__ = ["Anomaly", "AnomalyKind", "Severity", "ValidationReport"]

Severity = Literal["error", "warning"]
AnomalyKind = Literal[
    "missing_column",
    "unexpected_column",
    "type_mismatch",
    "out_of_range",
    "unseen_category",
    "missing_fraction",
    "duplicate_key",
    "nan_or_inf",
    "empty_data",
]


@dataclass(frozen=True)
class Anomaly:
    """One broken rule: how often, where (``rows`` are 0-based positions of the examples)."""

    kind: AnomalyKind
    severity: Severity
    column: str | None
    count: int
    message: str
    examples: list[Any] = field(default_factory=list)  # Any: values of the column's type
    rows: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    def __str__(self) -> str:
        shown = f" e.g. {', '.join(map(repr, self.examples))}" if self.examples else ""
        return f"{self.severity}: {self.kind}: {self.message}{shown}"


@dataclass(frozen=True)
class ValidationReport:
    """The anomalies of one check; ``ok`` when none is an error."""

    anomalies: list[Anomaly]
    rows: int
    columns: int
    dataset: str | None = None

    @property
    def errors(self) -> list[Anomaly]:
        """Anomalies of severity ``error``."""
        return [a for a in self.anomalies if a.severity == "error"]

    @property
    def warnings(self) -> list[Anomaly]:
        """Anomalies of severity ``warning``."""
        return [a for a in self.anomalies if a.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no anomaly is an error (warnings allowed)."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`ValidationFailed` listing every error; do nothing when ``ok``."""
        if self.ok:
            return
        what = f"dataset {self.dataset!r}" if self.dataset else "the data"
        lines = "\n".join(f"  - {a}" for a in self.errors)
        raise ValidationFailed(
            f"{what} breaks its schema ({len(self.errors)} errors):\n{lines}\n"
            "Fix the data, or edit the schema if the change is intended."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, with a summary."""
        return {
            "dataset": self.dataset,
            "rows": self.rows,
            "columns": self.columns,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "anomalies": [a.to_dict() for a in self.anomalies],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        """Rebuild a report written by :meth:`to_dict`."""
        return cls(
            anomalies=[Anomaly(**a) for a in data["anomalies"]],
            rows=int(data["rows"]),
            columns=int(data["columns"]),
            dataset=data.get("dataset"),
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return orjson.dumps(
            self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
        ).decode()

    def __str__(self) -> str:
        head = f"{self.rows:,} rows, {self.columns} columns: "
        if not self.anomalies:
            return head + "no anomalies"
        body = "\n".join(f"  {a}" for a in self.anomalies)
        return head + f"{len(self.errors)} errors, {len(self.warnings)} warnings\n{body}"

    def to_html(self, *, title: str = "Validation report") -> str:
        """A self-contained HTML page (inline CSS, no scripts or remote resources)."""
        rows = "".join(
            f"<tr class='{a.severity}'><td>{a.severity}</td><td>{escape(a.kind)}</td>"
            f"<td>{escape(a.column or '')}</td><td>{a.count:,}</td>"
            f"<td>{escape(', '.join(map(repr, a.examples)))}</td><td>{escape(a.message)}</td></tr>"
            for a in self.anomalies
        )
        verdict = "passed" if self.ok else "failed"
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class='{verdict}'>{verdict}: {self.rows:,} rows, "
            f"{self.columns} columns, {len(self.errors)} errors, {len(self.warnings)} warnings</p>"
            "<table><tr><th>severity</th><th>kind</th><th>column</th><th>count</th>"
            f"<th>examples</th><th>message</th></tr>{rows}</table></body></html>\n"
        )


_CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;"
    "text-align:left}tr.error td:first-child,.failed{color:#b00020;font-weight:bold}"
    "tr.warning td:first-child{color:#a66b00}.passed{color:#1b7f3b;font-weight:bold}"
)
