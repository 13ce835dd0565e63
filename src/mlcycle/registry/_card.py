"""A model card: what a registered version is for, what it was trained on and how it was judged.

Reviewers and auditors read it without access to the store, so it is
written as Markdown and as one self-contained HTML page (inline CSS, no
script, nothing fetched). It is built from plain records the registry
already holds: the ``ModelVersion`` (tags ``purpose`` and ``owner``, params,
limitations), its ``Evaluation``, the alias history, the training data
versions' profiles and the training run's environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from mlcycle.data import DatasetProfile
from mlcycle.registry._gates import Evaluation
from mlcycle.store import AliasMove, Environment, ModelVersion

__all__ = ["ModelCard"]

_KEY_PACKAGES: tuple[str, ...] = (
    "mlcycle",
    "scikit-learn",
    "numpy",
    "pandas",
    "skops",
    "onnxruntime",
    "shap",
)
_KEY_PACKAGES += ("xgboost", "lightgbm")
_TOP_FEATURES = 15
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border:1px solid #e3e3e3}
th{background:#f6f6f6;text-align:left}.fail{color:#b00020;font-weight:600}.pass{color:#1b7a2e}
"""

Table = tuple[Sequence[str], Sequence[Sequence[str]]]
Block = str | Table


@dataclass(frozen=True)
class ModelCard:
    """The card of one model version; ``to_markdown``, ``to_html`` or ``write`` it.

    ``profiles`` maps training data references (``data:/bike/1``) to their
    profiles; ``environment`` is the training run's captured environment.

    >>> from datetime import datetime, UTC
    >>> from mlcycle.ids import Digest
    >>> mv = ModelVersion("churn", 3, "sklearn", Digest("ab" * 32), {}, None, (), None,
    ...                   datetime(2025, 1, 1, tzinfo=UTC), "ana", tags={"owner": "risk team"})
    >>> "| Owner | risk team |" in ModelCard(mv).to_markdown()
    True
    """

    version: ModelVersion
    evaluation: Evaluation | None = None
    history: Sequence[AliasMove] = ()
    profiles: Mapping[str, DatasetProfile] = field(default_factory=dict)
    environment: Environment | None = None

    @classmethod
    def build(
        cls,
        version: ModelVersion,
        *,
        evaluation: Evaluation | None = None,
        history: Sequence[AliasMove] = (),
        profiles: Mapping[str, DatasetProfile] | None = None,
        environment: Environment | None = None,
    ) -> ModelCard:
        """A card for ``version``; its stored evaluation is used unless one is given."""
        if evaluation is None and version.evaluation is not None:
            evaluation = Evaluation.from_dict(version.evaluation)
        moves = [move for move in history if move.name == version.name]
        return cls(version, evaluation, moves, dict(profiles or {}), environment)

    @property
    def title(self) -> str:
        """``Model card: bike-demand version 3``."""
        return f"Model card: {self.version.name} version {self.version.version}"

    def sections(self) -> list[tuple[str, list[Block]]]:
        """The card's content, section by section: text paragraphs and tables."""
        return [
            ("Overview", self._overview()),
            ("Training data", self._data()),
            ("Metrics", self._metrics()),
            ("Validation gates", self._gates()),
            ("Feature importance", self._importance()),
            (
                "Hyperparameters",
                [_pairs(self.version.params)] if self.version.params else ["None recorded."],
            ),
            ("Environment", self._environment()),
            ("Limitations", self._limitations()),
            ("Alias history", self._history()),
        ]

    def to_markdown(self) -> str:
        """The card as Markdown."""
        lines = [f"# {self.title}", ""]
        for heading, blocks in self.sections():
            lines += [f"## {heading}", ""]
            for block in blocks:
                lines += [*_markdown_block(block), ""]
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self) -> str:
        """The card as one self-contained HTML page (inline CSS, no script, works offline)."""
        body = "".join(
            f"<section><h2>{escape(heading)}</h2>{''.join(map(_html_block, blocks))}</section>"
            for heading, blocks in self.sections()
        )
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(self.title)}</h1>{body}</body></html>\n"
        )

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``<name>-v<version>.md`` and ``.html`` into ``directory``; returns both paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"{self.version.name}-v{self.version.version}"
        markdown, html = directory / f"{stem}.md", directory / f"{stem}.html"
        markdown.write_text(self.to_markdown(), encoding="utf-8")
        html.write_text(self.to_html(), encoding="utf-8")
        return markdown, html

    def _overview(self) -> list[Block]:
        mv, tags = self.version, self.version.tags
        purpose = tags.get("purpose") or mv.description or "Not stated (tag `purpose`)."
        rows = [
            ("Purpose", purpose),
            ("Owner", tags.get("owner", "Not stated (tag `owner`).")),
            ("Version", f"{mv.name} {mv.version} ({mv.ref})"),
            ("Registered", f"{mv.created_at:%Y-%m-%d %H:%M} UTC by {mv.actor}"),
            (
                "Flavor",
                f"{mv.flavor} ({'safe format' if mv.safe else 'pickle: loads only trusted'})",
            ),
            ("Digest", mv.digest),
            ("Size", f"{mv.size:,} bytes"),
            ("Training run", str(mv.run_id or "none recorded")),
            ("Code version", mv.code_version or "none recorded"),
            ("Current aliases", ", ".join(self._aliases()) or "none"),
        ]
        other = {k: v for k, v in sorted(tags.items()) if k not in {"purpose", "owner"}}
        rows += [(f"Tag {key}", value) for key, value in other.items()]
        return [(("Field", "Value"), rows)]

    def _aliases(self) -> list[str]:
        held: dict[str, int | None] = {}
        for move in self.history:
            held[move.alias] = move.to_version
        return sorted(alias for alias, version in held.items() if version == self.version.version)

    def _data(self) -> list[Block]:
        refs = self.version.dataset_versions
        if not refs:
            return ["No training data version was recorded."]
        blocks: list[Block] = []
        for ref in refs:
            profile = self.profiles.get(ref)
            if profile is None:
                blocks.append(f"`{ref}`: no profile available.")
                continue
            blocks.append(f"`{ref}`: {profile.rows:,} rows, {len(profile.columns)} columns.")
            rows = [
                (
                    c.name,
                    str(c.kind),
                    f"{c.missing:,}",
                    _number(c.mean),
                    _number(c.min),
                    _number(c.max),
                )
                for c in profile.columns
            ]
            blocks.append((("column", "kind", "missing", "mean", "min", "max"), rows))
        return blocks

    def _metrics(self) -> list[Block]:
        found = self.evaluation
        metrics = found.metrics if found is not None else self.version.metrics
        if not metrics:
            return ["No metrics recorded."]
        head = ("metric", "candidate", *(found.compared if found else {}))
        rows = [
            (
                name,
                _number(value),
                *(_number(other.get(name)) for other in (found.compared if found else {}).values()),
            )
            for name, value in sorted(metrics.items())
        ]
        blocks: list[Block] = []
        if found is not None:
            blocks.append(f"On {found.rows:,} test rows (target `{found.target}`, {found.task}).")
        blocks.append((head, rows))
        if found is not None and found.slices:
            names = sorted({name for item in found.slices for name in item.metrics})
            slice_rows = [
                (
                    f"{item.column}={item.value}",
                    f"{item.rows:,}",
                    "yes" if item.judged else "no (too few rows)",
                    *(_number(item.metrics.get(name)) for name in names),
                )
                for item in found.slices
            ]
            blocks += ["Per slice:", (("slice", "rows", "judged", *names), slice_rows)]
        return blocks

    def _gates(self) -> list[Block]:
        found = self.evaluation
        if found is None:
            return ["This version has not been evaluated (`mc.registry.evaluate`)."]
        verdict = "PASSED" if found.passed else "FAILED"
        rows = [
            (r.name, "skipped" if r.skipped else ("pass" if r.passed else "FAIL"), r.detail)
            for r in found.results
        ]
        return [
            f"Verdict: {verdict}. {found.summary().splitlines()[0]}.",
            (("gate", "result", "detail"), rows),
        ]

    def _importance(self) -> list[Block]:
        found = self.evaluation
        if found is None or not found.importance:
            return ["Not computed."]
        permutation = found.importance.get("permutation", {})
        spread = found.importance.get("permutation_std", {})
        shap = found.importance.get("shap", {})
        order = sorted(permutation, key=lambda name: -permutation[name])[:_TOP_FEATURES]
        blocks: list[Block] = [
            (
                f"Permutation importance: the drop of the {found.primary_metric} score when a "
                "feature is shuffled (mean ± std)."
            )
        ]
        rows = [(n, f"{_number(permutation[n])} ± {_number(spread.get(n))}") for n in order]
        blocks.append((("feature", "permutation"), rows))
        if shap:
            top = sorted(shap, key=lambda name: -shap[name])[:_TOP_FEATURES]
            blocks += [
                "Mean absolute SHAP value:",
                (("feature", "mean |SHAP|"), [(n, _number(shap[n])) for n in top]),
            ]
        blocks += list(found.notes)
        return blocks

    def _environment(self) -> list[Block]:
        env = self.environment
        if env is None:
            return ["The training environment was not recorded."]
        rows = [("python", env.python), ("platform", env.platform)]
        rows += [(name, env.packages[name]) for name in _KEY_PACKAGES if name in env.packages]
        others = len(env.packages) - (len(rows) - 2)
        return [
            (("component", "version"), rows),
            f"{others} other packages (environment {env.digest[:12]}).",
        ]

    def _limitations(self) -> list[Block]:
        blocks: list[Block] = [
            self.version.limitations or "Not stated by the owner (field `limitations`)."
        ]
        found = self.evaluation
        if found is not None:
            blocks += [f"Failed gate {r.name}: {r.detail}" for r in found.failures]
            small = [f"{s.column}={s.value} ({s.rows} rows)" for s in found.slices if not s.judged]
            if small:
                blocks.append(f"Too few test rows to judge: {', '.join(small)}.")
        return blocks

    def _history(self) -> list[Block]:
        if not self.history:
            return ["No alias was ever moved to or from this model."]
        rows = [
            (
                f"{move.time:%Y-%m-%d %H:%M}",
                move.alias,
                move.kind + (" (forced)" if move.forced else ""),
                _version(move.from_version),
                _version(move.to_version),
                move.actor,
                move.reason or "",
            )
            for move in self.history
        ]
        return [(("time (UTC)", "alias", "move", "from", "to", "actor", "reason"), rows)]


def _pairs(values: Mapping[str, str]) -> Table:
    return ("name", "value"), [(key, values[key]) for key in sorted(values)]


def _version(number: int | None) -> str:
    return "-" if number is None else str(number)


def _number(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


def _markdown_block(block: Block) -> list[str]:
    if isinstance(block, str):
        return [block]
    head, rows = block
    cells = [_md_cell(cell) for cell in head]
    lines = ["| " + " | ".join(cells) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _html_block(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{_inline(block)}</p>"
    head, rows = block
    header = "".join(f"<th>{escape(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(_html_cell(cell) for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _html_cell(cell: str) -> str:
    kind = {"FAIL": " class='fail'", "pass": " class='pass'"}.get(cell, "")
    return f"<td{kind}>{escape(str(cell))}</td>"


def _inline(text: str) -> str:
    """Escape ``text``; Markdown code spans become ``<code>``."""
    parts = escape(text).split("`")
    return "".join(
        f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts)
    )
