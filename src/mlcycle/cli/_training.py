"""``mlcycle training``: where each deployment's continuous-training loop stands, and its steps.

Policies live in ``[training.<deployment>]`` of ``mlcycle.toml``; the agent
(``mlcycle agent``) advances the loops, and ``run`` makes one pass by hand.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlcycle.cli._context import console, open_workspace

if TYPE_CHECKING:
    from mlcycle.agent import Step, TrainingStatus

__all__ = ["app"]

app = typer.Typer(
    help="Continuous training: where each [training.NAME] loop stands, its history, one pass.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("status")
def status(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="One deployment (default: every one with a policy).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each loop's phase (idle, retraining, trial, watching), candidate, production and why."""
    with open_workspace(ctx) as workspace:
        training = workspace.training
        names = [deployment] if deployment is not None else sorted(training.policies)
        found = [training.status(name) for name in names]
    if as_json:
        typer.echo(json.dumps([_status_dict(s) for s in found], indent=2))
        return
    out = console()
    if not found:
        out.print("no [training.NAME] policies in mlcycle.toml", markup=False)
        return
    for state in found:
        out.print(f"{state.deployment}: {state.phase}", markup=False)
        for label, value in _status_lines(state):
            out.print(f"  {label:<11}{value}", markup=False)


@app.command("history")
def history(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="The deployment whose steps to list.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every step of a deployment's loop, oldest first, with the alert that started it."""
    with open_workspace(ctx) as workspace:
        steps = workspace.training.history(deployment)
    if as_json:
        typer.echo(json.dumps([_step_dict(s) for s in steps], indent=2))
        return
    out = console()
    if not steps:
        out.print(f"no training steps for {deployment} yet", markup=False)
        return
    for step in steps:
        out.print(_step_line(step), markup=False)


@app.command("run")
def run(ctx: typer.Context) -> None:
    """One pass of every loop (what each pass of `mlcycle agent` does), printing its steps."""
    with open_workspace(ctx) as workspace:
        steps = workspace.training.run_once()
    out = console()
    for step in steps:
        out.print(_step_line(step), markup=False)
    if not steps:
        out.print("nothing to do", markup=False)


def _step_line(step: Step) -> str:
    version = "" if step.version is None else f" v{step.version}"
    alert = "" if step.alert_id is None else f" [alert {step.alert_id}]"
    kind = step.event.removeprefix("training.")
    return f"{step.time:%Y-%m-%d %H:%M} {step.deployment} {kind}{version}{alert}: {step.why}"


def _status_lines(state: TrainingStatus) -> list[tuple[str, str]]:
    lines = [
        ("production", _version(state.production)),
        ("candidate", _version(state.candidate)),
        ("alert", state.alert_id or "-"),
    ]
    if state.trial is not None and state.phase == "trial":
        lines.append(("trial", f"{state.trial} since {state.trial_since:%Y-%m-%d %H:%M}"))
    if state.watch_until is not None and state.phase == "watching":
        lines.append(("watching", f"until {state.watch_until:%Y-%m-%d %H:%M}"))
    if state.last is not None:
        lines.append(("last", f"{state.last.event} at {state.last.time:%Y-%m-%d %H:%M}"))
    lines.append(("why", state.why or "-"))
    return lines


def _version(value: int | None) -> str:
    return "-" if value is None else f"version {value}"


def _step_dict(step: Step) -> dict[str, Any]:  # Any: JSON values
    return {"event": step.event, "time": step.time.isoformat(), **step.payload}


def _status_dict(state: TrainingStatus) -> dict[str, Any]:  # Any: JSON values
    def iso(value: Any) -> Any:  # Any: a datetime or None
        return None if value is None else value.isoformat()

    return {
        "deployment": state.deployment,
        "phase": state.phase,
        "attempt": state.attempt,
        "alert_id": state.alert_id,
        "candidate": state.candidate,
        "production": state.production,
        "trial": state.trial,
        "trial_since": iso(state.trial_since),
        "watch_until": iso(state.watch_until),
        "last": None if state.last is None else _step_dict(state.last),
        "verdict": None if state.verdict is None else state.verdict.to_dict(),
        "why": state.why,
    }
