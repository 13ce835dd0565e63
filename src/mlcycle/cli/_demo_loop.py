"""What follows each replayed day: the monitors and the alerts they fire, then the training loop.

``configure`` writes the demo's ``[alerts.rules.*]``, ``[monitors.*]`` and
``[training.*]`` sections into ``mlcycle.toml``, each only when the project
has none of that name, so a project's own edits win. ``Loop.after_day`` runs
``ws.monitor.run`` up to the end of the last labelled day (which scores each
new daily window and evaluates the alert rules on it) and one pass of
``ws.training.run_once()`` (a fired alert starts a retrain on recent data; the
candidate is gated, tried as a shadow and promoted when it beats production
on the same labelled requests), and says what happened in a line each.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from mlcycle import Workspace
    from mlcycle.agent import Step
    from mlcycle.cli._demo_data import DemoData
    from mlcycle.monitor import WindowResult

__all__ = ["DRIFT_SHARE", "PIPELINE", "Loop", "configure", "rule_names"]

PIPELINE = "mlcycle.cli._demo_pipeline:demo_training"
DRIFT_SHARE = 0.5
"""Dataset drift: at least half of the monitored inputs drifted..."""
DRIFT_WINDOWS = 3
"""...for this many daily windows in a row."""
DECAY_FACTOR = 1.5
"""Decay: a daily rmse this many times the first model's test rmse (or accuracy this far below)."""
ACCURACY_DROP = 0.05
DECAY_WINDOWS = 2
STALE_DAYS = 21
"""A model older than this many days is retrained on recent data even without an alert."""
RECENT_DAYS = 28
MIN_LABELLED_DAYS = 4
"""A trial decides once both models answered this many days of labelled rows."""


def rule_names(data: DemoData) -> tuple[str, str, str]:
    """The demo's alert rules: dataset drift, decay of the served predictions, a stale model."""
    name = data.spec.model
    return f"{name}-drift", f"{name}-decay", f"{name}-stale"


def configure(path: Path, data: DemoData, *, test_metric: float, kind: str = "gbm") -> list[str]:
    """Append the demo's sections to ``path`` where the project has none; their headers.

    ``test_metric`` is the promoted model's test rmse (or accuracy), which the
    decay rule measures against; ``kind`` (``gbm``, ``linear``) is what it is,
    and what a retrain trains. Raises ``ValidationFailed`` when the file would
    no longer parse (a table the demo adds to is written inline there).
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    config = tomllib.loads(text)
    missing = {
        header: body
        for header, (where, body) in _sections(data, test_metric, kind).items()
        if not _has(config, where)
    }
    if not missing:
        return []
    added = "\n\n".join(f"{header}\n{body}" for header, body in missing.items())
    text = (
        f"{text.rstrip()}\n\n# Added by `mlcycle demo` for {data.spec.model} "
        f"(edit freely: the demo only adds sections that are missing).\n{added}\n"
    ).lstrip("\n")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed(
            f"the demo could not add {', '.join(missing)} to {path} ({exc}); a table there is "
            "written another way. Add them by hand, as docs/continuous-training.md shows"
        ) from None
    path.write_text(text, encoding="utf-8")
    return list(missing)


def _has(config: dict[str, Any], where: tuple[str, ...]) -> bool:  # Any: TOML values
    found: Any = config  # Any: TOML values
    for key in where:
        if not isinstance(found, dict) or key not in found:
            return False
        found = found[key]
    return True


Table = dict[str, "str | int | float | bool | list[str] | dict[str, str | int | bool]"]
"""One TOML table's keys and values."""


def _sections(
    data: DemoData, test_metric: float, kind: str
) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each section's header, where it sits in the parsed file, and its body."""
    tables = _tables(data, test_metric, kind)
    return {
        "[" + ".".join(where) + "]": (where, "\n".join(f"{k} = {_toml(v)}" for k, v in t.items()))
        for where, t in tables.items()
    }


def _tables(data: DemoData, test_metric: float, kind: str) -> dict[tuple[str, ...], Table]:
    spec, name = data.spec, data.spec.model
    drift, decay, stale = rule_names(data)
    if data.task == "regression":
        metric, condition = "rmse", f"rmse > {test_metric * DECAY_FACTOR:.4g}"
    else:
        metric, condition = "accuracy", f"accuracy < {test_metric - ACCURACY_DROP:.4g}"
    per_day = sum(len(data.day(day)) for day in data.days[:4]) / len(data.days[:4])
    monitor: Table = {"window": "1d", "label_column": spec.target}
    if spec.drift_features:
        monitor["features"] = list(spec.drift_features)
    return {
        ("alerts", "rules", drift): {
            "when": f"drift_share >= {DRIFT_SHARE} for {DRIFT_WINDOWS} windows",
            "severity": "warning",
            "deployments": [name],
            "cooldown": "7d",
            "description": f"the inputs of {name} drifted from its training data",
        },
        ("alerts", "rules", decay): {
            "when": f"{condition} for {DECAY_WINDOWS} windows",
            "severity": "critical",
            "deployments": [name],
            "cooldown": "7d",
            "description": f"{name} predicts worse than when it was trained",
        },
        ("alerts", "rules", stale): {
            "when": f"model_age_days > {STALE_DAYS}",
            "severity": "info",
            "deployments": [name],
            "cooldown": "1d",
            "description": f"{name} serves a model older than {STALE_DAYS} days",
        },
        ("monitors", name): monitor,
        ("training", name): {
            "pipeline": PIPELINE,
            "model": name,
            "on_alerts": [drift, decay, stale],
            "trial": "shadow",
            "metric": metric,
            "margin": 0.02,
            "min_labelled": MIN_LABELLED_DAYS * max(1, round(per_day)),
            "max_retrains": "1 per 14d",
            "params": {
                "data": f"{spec.dataset}@latest",
                "model": name,
                "target": spec.target,
                "task": data.task,
                "time": spec.time or "",
                "drop": ",".join(spec.drop),
                "train_from": "recent",
                "recent_days": RECENT_DAYS,
                "models": kind,
                "promote": False,
            },
        },
    }


def _toml(value: object) -> str:
    """A TOML value: a string, number, boolean, list of strings or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Loop:
    """Monitors, alerts and the training loop after each replayed day, with what they did."""

    workspace: Workspace
    data: DemoData
    windows: list[WindowResult] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # Any: alert.fired payloads
    steps: list[Step] = field(default_factory=list)
    changed: bool = False
    """Whether the last training pass took a step (the server may have to follow)."""
    _cursor: int = 0

    def after_day(self, until: datetime) -> list[str]:
        """Monitor every labelled window up to ``until``, then one training pass; what happened."""
        name = self.data.spec.model
        scored = self.workspace.monitor.run(name, until=until)
        self.windows += scored
        fired = self._new_alerts()
        self.alerts += fired
        notes = [self._alert_line(payload) for payload in fired]
        steps = self.workspace.training.run_once()
        self.steps += steps
        self.changed = bool(steps)
        notes += [f"{step.event}: {step.why}" for step in steps]
        return notes

    def story(self) -> list[str]:
        """What the monitors, alerts and training loop did over the whole replay."""
        name = self.data.spec.model
        lines = [f"monitored {len(self.windows)} daily windows of {name}"]
        if self.alerts:
            fired = ", ".join(f"{a['name']} ({a['window_end'][:10]})" for a in self.alerts)
            lines.append(f"alerts fired: {fired}")
        else:
            lines.append("no alert fired: no drift or decay crossed the rules")
        kinds = [step.event.removeprefix("training.") for step in self.steps]
        if kinds:
            counts = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
            lines.append(f"training loop: {counts}")
        promoted = [s for s in self.steps if s.event == "training.promoted"]
        production = self.workspace.registry.get(f"{name}@production")
        lines.append(
            f"production is {name}/{production.version}"
            + (
                f", promoted by the training loop on {promoted[-1].time:%Y-%m-%d}"
                if promoted
                else ""
            )
        )
        return lines

    def _new_alerts(self) -> list[dict[str, Any]]:  # Any: JSON payloads
        events = self.workspace.events(self._cursor, types=["alert.fired"], limit=1_000)
        if events:
            self._cursor = events[-1].position
        name = self.data.spec.model
        return [event.payload for event in events if event.payload.get("deployment") == name]

    @staticmethod
    def _alert_line(payload: dict[str, Any]) -> str:  # Any: JSON
        return f"alert.fired: {payload['name']} ({payload['severity']}): {payload['why']}"
