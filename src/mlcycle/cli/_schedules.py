"""``mlcycle schedules`` and ``mlcycle agent``: what to launch on which trigger, and the runner.

A schedule names a target (``pipelines.py:training``), its parameters and one
trigger: a cron expression, a dataset's new versions or an alert. ``mlcycle
agent`` fires them; ``--once`` makes one pass and exits.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated

import typer

from mlcycle.cli._context import console, open_workspace
from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    from mlcycle.store import Schedule, TriggerFiring

__all__ = ["agent", "app"]

app = typer.Typer(
    help="Add, list and remove schedules: targets launched on a cron tick, a new dataset "
    "version or an alert. `mlcycle agent` runs them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; ``ValidationFailed`` naming a pair without ``=``."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed(f"--param {pair!r} must be NAME=VALUE, such as n_estimators=200")
        params[key.strip()] = value
    return params


@app.command("add")
def add(  # noqa: PLR0917  (Typer passes every option positionally)
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's name, such as nightly-training.")],
    target: Annotated[str, typer.Argument(help="What to run: FILE.py:PIPELINE.")],
    cron: Annotated[
        str | None, typer.Option("--cron", help='A cron expression, such as "0 2 * * *".')
    ] = None,
    on_dataset: Annotated[
        str | None, typer.Option("--on-dataset", help="Fire on each new version of DATASET.")
    ] = None,
    on_alert: Annotated[
        str | None, typer.Option("--on-alert", help="Fire each time alert NAME fires.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A parameter for the target, NAME=VALUE (repeatable)."),
    ] = None,
) -> None:
    """Add a schedule with exactly one trigger: --cron, --on-dataset or --on-alert."""
    params = parse_params(param or [])
    with open_workspace(ctx) as workspace:
        schedule = workspace.schedules.add(
            name, target, cron=cron, on_dataset=on_dataset, on_alert=on_alert, params=params
        )
    console().print(
        f"added schedule [bold]{schedule.name}[/]: {schedule.target} {_trigger(schedule)}"
    )


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every schedule: its target, trigger, parameters and last firing."""
    with open_workspace(ctx) as workspace:
        found = workspace.schedules.list()
    if as_json:
        typer.echo(json.dumps([_as_dict(s) for s in found], indent=2))
        return
    from rich.table import Table

    table = Table("schedule", "target", "trigger", "params", "last fired", "by")
    for s in found:
        params = " ".join(f"{k}={v}" for k, v in sorted(s.params.items()))
        last = "" if s.last_fired_at is None else f"{s.last_fired_at:%Y-%m-%d %H:%M:%S}"
        table.add_row(s.name, s.target, _trigger(s), params, last, s.actor)
    console().print(table if found else "no schedules yet: add one with `mlcycle schedules add`")


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule to remove.")],
) -> None:
    """Remove a schedule; its past firings stay in the store."""
    with open_workspace(ctx) as workspace:
        workspace.schedules.remove(name)
    console().print(f"removed schedule [bold]{name}[/]")


def agent(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Make one pass, then exit.")] = False,
    poll: Annotated[
        float | None,
        typer.Option("--poll", min=0.01, help="Seconds between passes (agent.poll_interval_s)."),
    ] = None,
) -> None:
    """Fire schedules: due cron ticks, new dataset versions and alerts, each exactly once."""
    import signal
    import threading

    with open_workspace(ctx) as workspace:
        runner = workspace.agent()
        if once:
            try:
                fired = runner.run_once()
            finally:  # one pass: the next `agent --once` need not wait for the lease to expire
                runner.catalog.release_lease(runner.consumer, holder=runner.name)
            for firing in fired:
                console().print(_fired(firing), markup=False)
            for step in runner.training_steps:
                console().print(f"training {step.deployment}: {step.why}", markup=False)
            for d in runner.deliveries:
                error = f": {d.last_error}" if d.last_error else ""
                line = f"notification {d.event} -> {d.notifier}: {d.status}{error}"
                console().print(line, markup=False)
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        interval = poll or workspace.settings.agent.poll_interval_s
        console().print(f"agent {runner.name} polling every {interval:g} s", markup=False)
        with contextlib.suppress(KeyboardInterrupt):
            runner.run_forever(interval, stop=stop)


def _trigger(schedule: Schedule) -> str:
    option = {"cron": "--cron", "dataset": "--on-dataset", "alert": "--on-alert"}[schedule.kind]
    return f'{option} "{schedule.spec}"' if schedule.kind == "cron" else f"{option} {schedule.spec}"


def _fired(firing: TriggerFiring) -> str:
    outcome = f"exit {firing.exit_code}" if firing.exit_code is not None else "not started"
    return f"fired {firing.schedule} ({firing.key}): {' '.join(firing.command)} -> {outcome}"


def _as_dict(schedule: Schedule) -> dict[str, object]:
    def iso(value: object) -> object:
        return None if value is None else value.isoformat()  # type: ignore[attr-defined]

    return {
        "name": schedule.name,
        "target": schedule.target,
        "kind": schedule.kind,
        "spec": schedule.spec,
        "params": schedule.params,
        "enabled": schedule.enabled,
        "created_at": iso(schedule.created_at),
        "actor": schedule.actor,
        "last_fired_at": iso(schedule.last_fired_at),
        "last_fired_tick": iso(schedule.last_fired_tick),
    }
