"""``mlcycle deploy`` and ``mlcycle deployments``: what each serving target serves, and how.

A deployment names its variants (model versions or aliases) and a traffic
policy. Every change is stored as a new revision with a ``deployment.applied``
event, which running servers follow without a restart.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated

import typer

from mlcycle.cli._context import console, open_workspace
from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    from mlcycle.serve import Change
    from mlcycle.store import Deployment

__all__ = ["app", "deploy", "describe", "parse_split"]

app = typer.Typer(
    help="List, show and remove deployments (create or change them with `mlcycle deploy`).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_POLICIES = ("single", "canary", "ab", "shadow")


def parse_split(pairs: list[str]) -> dict[str, float]:
    """``["bike/4=10", ...]`` as ``{"bike/4": 10.0}``; ``ValidationFailed`` naming a bad pair."""
    split: dict[str, float] = {}
    for pair in pairs:
        ref, sep, share = pair.rpartition("=")
        try:
            percent = float(share)
        except ValueError:
            percent = math.nan
        if not sep or not ref.strip() or not math.isfinite(percent):
            raise ValidationFailed(
                f"--canary {pair!r} must be MODEL=PERCENT, such as bike-demand/4=10"
            )
        split[ref.strip()] = percent
    return split


def deploy(  # noqa: PLR0917  (Typer passes every option positionally)
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="The deployment's name, such as bike-demand (not with --from-toml)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="The model that answers: NAME@ALIAS (followed as it moves) or NAME/N."
        ),
    ] = None,
    canary: Annotated[
        list[str] | None,
        typer.Option(
            "--canary",
            help="Send PERCENT of the traffic to MODEL, as MODEL=PERCENT (repeatable); "
            "--model gets the rest.",
        ),
    ] = None,
    shadow: Annotated[
        list[str] | None,
        typer.Option(
            "--shadow",
            help="Mirror every request to MODEL off the request path; its answers are logged, "
            "never returned (repeatable).",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="single, canary, ab or shadow (default: canary with --canary, shadow with "
            "--shadow, else single).",
        ),
    ] = None,
    sticky_key: Annotated[
        str | None,
        typer.Option(
            "--sticky-key",
            help="Request column whose value keeps a caller on one variant (canary and ab).",
        ),
    ] = None,
    key_columns: Annotated[
        str | None,
        typer.Option(
            "--key-columns",
            help="Comma-separated input columns that identify a prediction, to join labels "
            "from a dataset later.",
        ),
    ] = None,
    from_toml: Annotated[
        bool,
        typer.Option(
            "--from-toml",
            help="Apply every [deployments.NAME] table of mlcycle.toml (the desired state).",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="With --from-toml: remove deployments not in the file."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
) -> None:
    """Create or change a deployment, or apply mlcycle.toml's with --from-toml.

    \b
      mlcycle deploy bike-demand --model bike-demand@production
      mlcycle deploy bike-demand --model bike-demand@production --canary bike-demand/4=10
      mlcycle deploy bike-demand --model bike-demand@production --shadow bike-demand@challenger
      mlcycle deploy --from-toml --dry-run
    """
    if from_toml:
        if (
            name is not None
            or model is not None
            or canary
            or shadow
            or policy
            or sticky_key is not None
            or key_columns
        ):
            raise ValidationFailed(
                "--from-toml applies mlcycle.toml as it is; give no NAME, --model, --canary, "
                "--shadow, --policy, --sticky-key or --key-columns with it"
            )
        _apply_toml(ctx, prune=prune, dry_run=dry_run)
        return
    if name is None or model is None:
        raise ValidationFailed(
            "give a NAME and --model, such as `mlcycle deploy bike-demand --model "
            "bike-demand@production`, or --from-toml"
        )
    if policy is not None and policy not in _POLICIES:
        raise ValidationFailed(f"--policy {policy!r} is unknown; use one of {', '.join(_POLICIES)}")
    if prune:
        raise ValidationFailed("--prune only applies with --from-toml")
    from mlcycle.serve import compose

    wanted = compose(
        name,
        model=model,
        canary=parse_split(canary or []),
        shadow=shadow or (),
        policy=policy,  # type: ignore[arg-type]  # checked against _POLICIES above
        sticky_key=sticky_key,
        key_columns=[c.strip() for c in (key_columns or "").split(",") if c.strip()],
    )
    with open_workspace(ctx) as workspace:
        deployments = workspace.deployments
        if dry_run:
            plan = deployments.apply_desired([wanted], dry_run=True)
            _show_changes([c for c in plan if c.name == name], dry_run=True)
            return
        stored = deployments.apply(wanted)
    console().print(f"applied deployment {stored.name} revision {stored.revision}", markup=False)
    for line in describe(stored):
        console().print(line, markup=False)


def _apply_toml(ctx: typer.Context, *, prune: bool, dry_run: bool) -> None:
    from mlcycle.serve import parse_deployments

    with open_workspace(ctx) as workspace:
        desired = parse_deployments(workspace.settings.deployments)
        if not desired and not prune:
            console().print(
                "mlcycle.toml has no [deployments.NAME] tables; add one, such as\n"
                '  [deployments.bike-demand]\n  model = "bike-demand@production"',
                markup=False,
            )
            return
        changes = workspace.deployments.apply_desired(desired, prune=prune, dry_run=dry_run)
    _show_changes(changes, dry_run=dry_run)


def _show_changes(changes: list[Change], *, dry_run: bool) -> None:
    out = console()
    for change in changes:
        for line in change.lines():
            out.print(line, markup=False)
    acted = sum(c.action in {"create", "change", "remove"} for c in changes)
    verb = "would apply" if dry_run else "applied"
    out.print(f"{verb} {acted} change(s); {len(changes) - acted} left as they are", markup=False)


def describe(deployment: Deployment) -> list[str]:
    """A deployment as lines of text: policy, keys, then one line per variant."""
    lines = [f"policy: {deployment.policy}"]
    if deployment.sticky_key:
        lines.append(f"sticky key: {deployment.sticky_key}")
    if deployment.key_columns:
        lines.append(f"key columns: {', '.join(deployment.key_columns)}")
    for v in deployment.variants:
        role = "shadow (gets copies, answers nobody)" if v.shadow else f"{v.weight:g}% of traffic"
        lines.append(f"  {v.name}: {v.model}, {role}")
    return lines


def _as_dict(deployment: Deployment) -> dict[str, object]:
    from mlcycle.store import deployment_payload

    found = deployment_payload(deployment)
    found["created_at"] = (
        None if deployment.created_at is None else deployment.created_at.isoformat()
    )
    found["updated_at"] = (
        None if deployment.updated_at is None else deployment.updated_at.isoformat()
    )
    found["actor"] = deployment.actor
    return found


@app.command("list")
def list_deployments(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every deployment: its policy, variants and revision."""
    with open_workspace(ctx) as workspace:
        found = workspace.deployments.list()
    if as_json:
        typer.echo(json.dumps([_as_dict(d) for d in found], indent=2))
        return
    if not found:
        console().print("no deployments yet: create one with `mlcycle deploy`", markup=False)
        return
    from rich.table import Table

    table = Table("deployment", "policy", "variants", "revision", "updated", "by")
    for d in found:
        variants = " ".join(
            f"{v.name}={v.model}" + ("(shadow)" if v.shadow else f"({v.weight:g}%)")
            for v in d.variants
        )
        updated = "" if d.updated_at is None else f"{d.updated_at:%Y-%m-%d %H:%M:%S}"
        table.add_row(d.name, d.policy, variants, str(d.revision), updated, d.actor)
    console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One deployment as applied: policy, keys and variants."""
    with open_workspace(ctx) as workspace:
        found = workspace.deployments.get(name)
    if as_json:
        typer.echo(json.dumps(_as_dict(found), indent=2))
        return
    console().print(f"deployment {found.name} revision {found.revision}", markup=False)
    for line in describe(found):
        console().print(line, markup=False)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment to remove.")],
) -> None:
    """Remove a deployment; servers following it stop serving it."""
    with open_workspace(ctx) as workspace:
        removed = workspace.deployments.remove(name)
    console().print(
        f"removed deployment {removed.name} (was revision {removed.revision})", markup=False
    )
