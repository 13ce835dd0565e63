"""``mlcycle alerts``: alerts monitoring raised, the rules in mlcycle.toml, their notifications.

Rules live in ``[alerts.rules.NAME]`` and notifiers in ``[alerts.notifiers.NAME]``
of ``mlcycle.toml``. ``rules`` checks and shows them; ``test`` tries one rule
on values given on the command line; ``list`` and ``show`` read the alerts
stored; ``deliver`` sends notifications still waiting (after a receiver was down).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from mlcycle.cli._context import console, load, open_workspace
from mlcycle.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from mlcycle.monitor import Rule
    from mlcycle.settings import Settings
    from mlcycle.store import Alert, AlertDelivery, AlertLog

__all__ = ["app", "parse_values"]

app = typer.Typer(
    help="Alerts over monitoring results: list and show them, check the rules in "
    "mlcycle.toml, try a rule on values, and send notifications still waiting.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def parse_values(pairs: list[str]) -> dict[str, float]:
    """``["drift_share=0.4", ...]`` as numbers; ``ValidationFailed`` naming a bad pair."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        try:
            number = float(text)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise ValidationFailed(
                f"--value {pair!r} must be METRIC=NUMBER, such as drift_share=0.4"
            )
        values[name.strip()] = number
    return values


@contextmanager
def _alert_log(ctx: typer.Context) -> Iterator[AlertLog]:
    """The store's alerts, readable even while a rule in mlcycle.toml is broken."""
    with open_workspace(ctx) as workspace:
        yield cast("AlertLog", workspace.metadata)  # the SQL store is every catalog


@app.command("list")
def list_alerts(  # noqa: PLR0917  (Typer passes every option positionally)
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option("--state", help="Only alerts in this state: firing or resolved.")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only alerts of this rule.")] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", help="Only alerts on this deployment.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most N alerts.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Alerts, newest first: rule, deployment, severity, state, when, and why."""
    with _alert_log(ctx) as log:
        found = log.list_alerts(state=state, rule=rule, deployment=deployment, limit=limit)
    if as_json:
        typer.echo(json.dumps([_alert_dict(a) for a in found], indent=2))
        return
    if not found:
        console().print("no alerts" + (f" in state {state}" if state else ""), markup=False)
        return
    from rich.table import Table

    table = Table("id", "rule", "deployment", "severity", "state", "fired", "resolved", "why")
    for a in found:
        resolved = "" if a.resolved_at is None else f"{a.resolved_at:%Y-%m-%d %H:%M}"
        fired = f"{a.fired_at:%Y-%m-%d %H:%M}"
        table.add_row(a.id, a.rule, a.deployment, a.severity, a.state, fired, resolved, a.why)
    out = console()
    out.print(table)
    out.print(f"{len(found)} alert(s)", markup=False)


@app.command("show")
def show(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="The alert's id, from `mlcycle alerts list`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One alert: its windows and values, why it fired, and each notification's fate."""
    with _alert_log(ctx) as log:
        alert = log.get_alert(alert_id)
        deliveries = log.list_deliveries(alert_id=alert_id)
    if as_json:
        found = _alert_dict(alert) | {"deliveries": [_delivery_dict(d) for d in deliveries]}
        typer.echo(json.dumps(found, indent=2))
        return
    out = console()
    out.print(f"alert {alert.id}: {alert.rule} on {alert.deployment}", markup=False)
    out.print(f"  severity {alert.severity}, {alert.state}", markup=False)
    out.print(f"  rule     {alert.expression}", markup=False)
    out.print(f"  fired    {alert.fired_at:%Y-%m-%d %H:%M:%S}", markup=False)
    if alert.resolved_at is not None:
        out.print(f"  resolved {alert.resolved_at:%Y-%m-%d %H:%M:%S}", markup=False)
    if alert.flaps:
        out.print(f"  flapped  {alert.flaps} time(s) within the cooldown", markup=False)
    out.print(f"  why      {alert.why}", markup=False)
    for d in deliveries:
        error = f": {d.last_error}" if d.last_error else ""
        out.print(
            f"  {d.event} -> {d.notifier}: {d.status} after {d.attempts} attempt(s){error}",
            markup=False,
        )


@app.command("rules")
def rules(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Check every rule and notifier in mlcycle.toml and show them; exit 1 on the first problem."""
    settings = load(ctx)
    found = _checked_rules(settings)
    if as_json:
        notifiers = {n: c.kind for n, c in settings.alerts.notifiers.items()}
        typer.echo(
            json.dumps(
                {"rules": [_rule_dict(r) for r in found.values()], "notifiers": notifiers},
                indent=2,
            )
        )
        return
    out = console()
    if not found:
        out.print(
            'no alert rules: add [alerts.rules.NAME] with when = "..." to mlcycle.toml',
            markup=False,
        )
        return
    from rich.table import Table

    table = Table("rule", "when", "severity", "deployments", "cooldown", "notify")
    for r in found.values():
        deployments = ", ".join(r.deployments) or "all"
        table.add_row(
            r.name, r.expression, r.severity, deployments, str(r.cooldown), ", ".join(r.notify)
        )
    out.print(table)
    out.print(f"{len(found)} rule(s) OK", markup=False)


@app.command("test")
def try_rule(
    ctx: typer.Context,
    rule: Annotated[str, typer.Argument(help="A rule of [alerts.rules] in mlcycle.toml.")],
    value: Annotated[
        list[str] | None,
        typer.Option("--value", help="A metric of the window, METRIC=NUMBER (repeatable)."),
    ] = None,
) -> None:
    """Say whether RULE holds for one window with these values (nothing is stored or sent)."""
    settings = load(ctx)
    found = _checked_rules(settings)
    if rule not in found:
        known = ", ".join(found) or "none in mlcycle.toml"
        raise NotFound(f"no alert rule '{rule}' (rules: {known})")
    chosen = found[rule]
    values = parse_values(value or [])
    outcome = chosen.test(values)
    missing = [m for m in chosen.metrics if m not in values]
    verdict = {True: "holds", False: "does not hold", None: "cannot say"}[outcome]
    out = console()
    out.print(f"{chosen.name}: {chosen.expression} {verdict}", markup=False)
    if missing:
        out.print(f"missing: {', '.join(missing)} (give them with --value)", markup=False)
    if outcome and chosen.windows > 1:
        out.print(f"it fires once it holds for {chosen.windows} windows in a row", markup=False)


@app.command("deliver")
def deliver(ctx: typer.Context) -> None:
    """Send the notifications that are due now (those retried after a receiver failed)."""
    with open_workspace(ctx) as workspace:
        done = workspace.alerts.deliver()
    out = console()
    for d in done:
        error = f": {d.last_error}" if d.last_error else ""
        out.print(f"{d.event} -> {d.notifier}: {d.status}{error}", markup=False)
    out.print(f"{len(done)} notification(s) tried", markup=False)


def _checked_rules(settings: Settings) -> dict[str, Rule]:
    from mlcycle.monitor import build_notifiers, rules_from_settings

    build_notifiers(settings.alerts, home=settings.home)
    return rules_from_settings(settings.alerts)


def _iso(value: Any) -> Any:  # Any: a datetime or None
    return None if value is None else value.isoformat()


def _alert_dict(alert: Alert) -> dict[str, Any]:  # Any: JSON values
    return {
        "id": alert.id,
        "rule": alert.rule,
        "deployment": alert.deployment,
        "severity": alert.severity,
        "state": alert.state,
        "expression": alert.expression,
        "fired_at": _iso(alert.fired_at),
        "window_end": _iso(alert.window_end),
        "resolved_at": _iso(alert.resolved_at),
        "flaps": alert.flaps,
        "why": alert.why,
        "windows": [{"window_end": _iso(w.window_end), "values": w.values} for w in alert.windows],
    }


def _delivery_dict(delivery: AlertDelivery) -> dict[str, Any]:  # Any: JSON values
    return {
        "notifier": delivery.notifier,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "next_attempt_at": _iso(delivery.next_attempt_at),
        "delivered_at": _iso(delivery.delivered_at),
    }


def _rule_dict(rule: Rule) -> dict[str, Any]:  # Any: JSON values
    return {
        "name": rule.name,
        "when": rule.expression,
        "metrics": list(rule.metrics),
        "windows": rule.windows,
        "severity": rule.severity,
        "deployments": list(rule.deployments),
        "cooldown_s": rule.cooldown.total_seconds(),
        "notify": list(rule.notify),
        "description": rule.description,
    }
