"""``mlcycle models``: list, show, evaluate, promote, roll back, trace, card, export, import.

Models are named by the reference grammar of the registry: ``bike-demand`` is
the latest version, ``bike-demand/3`` version 3, ``bike-demand@production``
the version an alias names (``models:/`` in front works too). A promotion
refused by failed gates prints the gate results and exits with 3; an alias
that moved meanwhile exits with 4; other errors exit with 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlcycle.cli._context import console, open_workspace, print_error

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle import Workspace
    from mlcycle.store import AliasMove, ModelVersion, RegisteredModel

__all__ = ["EXIT_ALIAS_CONFLICT", "EXIT_GATE_FAILED", "app"]

app = typer.Typer(
    help="List, show, evaluate, promote, roll back and trace registered models; write model "
    "cards; export to and import from MLflow's format.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

EXIT_GATE_FAILED = 3
EXIT_ALIAS_CONFLICT = 4
REF_HELP = "A model (its latest version), a version or an alias: bike, bike/3, bike@production."
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("list")
def list_models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every registered model: its latest version and its aliases."""
    with open_workspace(ctx) as workspace:
        found = [(m, workspace.registry.versions(m.name)) for m in workspace.registry.models()]
    if as_json:
        _echo_json([{**_model(m), "latest": v[-1].version if v else None} for m, v in found])
        return
    from rich.table import Table

    table = Table("model", "latest", "aliases", "created", "by")
    for model, versions in found:
        aliases = ", ".join(f"{a} -> {v}" for a, v in model.aliases.items())
        latest = str(versions[-1].version) if versions else ""
        table.add_row(model.name, latest, aliases, _time(model.created_at), model.actor)
    console().print(table if found else "no models yet: register one with mc.registry.register")


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    as_json: JsonOption = False,
) -> None:
    """One version: flavor, digest, signature, origin, metrics, tags and gate results."""
    with open_workspace(ctx) as workspace:
        version = workspace.registry.get(ref)
        aliases = workspace.registry.catalog.get_model(version.name).aliases
    summary = _version(version)
    summary["aliases"] = sorted(a for a, v in aliases.items() if v == version.version)
    if as_json:
        _echo_json(summary)
        return
    out = console()
    out.print(f"[bold]{version.ref}[/]")
    for key in ("flavor", "digest", "safe", "run_id", "code_version", "created_at"):
        out.print(f"  {key}: {'-' if summary[key] is None else summary[key]}")
    out.print(f"  size: {version.size:,} bytes")
    out.print(f"  actor: {version.actor}")
    out.print(f"  aliases: {', '.join(summary['aliases']) or '-'}")
    out.print(f"  datasets: {', '.join(version.dataset_versions) or '-'}")
    for key in ("metrics", "params", "tags"):
        values = summary[key]
        out.print(f"  {key}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "-"))
    inputs = version.signature.get("inputs", [])
    out.print("  inputs: " + (", ".join(f"{c['name']}:{c['type']}" for c in inputs) or "-"))
    if version.description:
        out.print(f"  description: {version.description}")
    if version.limitations:
        out.print(f"  limitations: {version.limitations}")
    _print_gates(version.evaluation)


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Held-out rows: a CSV or Parquet file, or a dataset version such as bike/3. "
            "Default: the test rows of the split the training run recorded.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="The label column (default: the model's gate settings)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a version's validation gates and store the verdict; exit 3 when a gate fails."""
    with open_workspace(ctx) as workspace:
        rows = None if data is None else _rows(workspace, data)
        evaluation = workspace.registry.evaluate(ref, rows, target=target)
        stored = workspace.registry.gate_results(ref)
    if as_json:
        _echo_json(stored)
    else:
        console().print(evaluation.summary(), markup=False)
        _print_gates(stored)
    if not evaluation.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


@app.command("card")
def card(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[int, typer.Argument(help="The version.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="The folder to write to (default: model-cards/ in the project)."
        ),
    ] = None,
) -> None:
    """Write a version's model card as Markdown and HTML (offline, one file each).

    Purpose and owner (tags purpose and owner), training data versions and
    their profiles, metrics overall and per slice, gate results, feature
    importance, hyperparameters, environment, limitations and alias history.
    """
    with open_workspace(ctx) as workspace:
        model_card = workspace.registry.card(f"{name}/{version}")
        folder = out or workspace.settings.home / "model-cards"
        markdown, html = model_card.write(folder)
    console().print(f"wrote {markdown} and {html}", markup=False)


@app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    directory: Annotated[Path, typer.Argument(help="A new folder for the MLflow model.")],
) -> None:
    """Write a scikit-learn version in MLflow's model format (skops inside, never pickle).

    mlflow.pyfunc.load_model(DIRECTORY) then loads it, as does `mlflow models serve`.
    """
    with open_workspace(ctx) as workspace:
        version = workspace.registry.get(ref)
        written = workspace.registry.export_mlflow(version, directory)
    console().print(f"exported {version.ref} to {written} (MLflow model format)", markup=False)


@app.command("import")
def import_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model to register it as.")],
    directory: Annotated[Path, typer.Argument(help="An MLflow scikit-learn model folder.")],
    trust: Annotated[
        bool,
        typer.Option(
            "--trust", help="Read a pickled model (runs its code): only from a publisher you trust."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register an MLflow scikit-learn model as a new version, stored as skops.

    A pickled MLflow model is refused unless --trust is given; once imported
    it is skops, and loads without trust.
    """
    with open_workspace(ctx) as workspace:
        version = workspace.registry.import_mlflow(name, directory, trust=trust)
    if as_json:
        _echo_json(_version(version))
        return
    console().print(f"registered {version.ref} from {directory} (stored as skops)", markup=False)


@app.command("promote")
def promote(  # noqa: PLR0917 (Typer maps each parameter to an argument or option)
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[int, typer.Argument(help="The version to promote.")],
    to: Annotated[str, typer.Option("--to", help="The alias to move.")] = "production",
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in history.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote past failed gates (needs --reason).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a version; guarded aliases need passed gates or --force --reason."""
    from mlcycle.errors import AliasConflict, GateFailed

    with open_workspace(ctx) as workspace:
        try:
            move = workspace.registry.promote(name, version, to, reason=reason, force=force)
        except GateFailed as exc:
            print_error(exc)
            _print_gates(exc.results, stderr=True)
            raise typer.Exit(EXIT_GATE_FAILED) from None
        except AliasConflict as exc:
            print_error(exc)
            raise typer.Exit(EXIT_ALIAS_CONFLICT) from None
    _report_move(move, as_json=as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model.")],
    alias: Annotated[str, typer.Option("--alias", help="The alias to roll back.")] = "production",
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in history.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Return an alias to the version it held before; again walks further back."""
    from mlcycle.errors import AliasConflict

    with open_workspace(ctx) as workspace:
        try:
            move = workspace.registry.rollback(name, alias, reason=reason)
        except AliasConflict as exc:
            print_error(exc)
            raise typer.Exit(EXIT_ALIAS_CONFLICT) from None
    _report_move(move, as_json=as_json)


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model.")],
    alias: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every alias move, oldest first: who, when, from, to, why, forced."""
    with open_workspace(ctx) as workspace:
        moves = workspace.registry.history(name, alias)
    if as_json:
        _echo_json([_move(m) for m in moves])
        return
    from rich.table import Table

    table = Table("#", "time", "alias", "kind", "from", "to", "actor", "forced", "reason")
    for move in moves:
        table.add_row(
            str(move.position),
            _time(move.time),
            move.alias,
            move.kind,
            _number(move.from_version),
            _number(move.to_version),
            move.actor,
            "yes" if move.forced else "",
            move.reason or "",
        )
    console().print(table if moves else f"model '{name}' has no alias moves yet")


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    as_json: JsonOption = False,
) -> None:
    """The chain a version came from: run, dataset versions, their sources, code."""
    with open_workspace(ctx) as workspace:
        if not ref.startswith("models:/"):
            ref = f"models:/{ref}"
        tree = workspace.lineage(ref)
    if as_json:
        _echo_json(tree.to_dict())
        return
    out = console()
    for line in tree.lines():
        out.print(line, markup=False)


def _rows(workspace: Workspace, data: str) -> pd.DataFrame:
    """A file's rows (CSV or Parquet), or else the dataset version ``data`` names."""
    import pandas as pd

    from mlcycle.errors import ValidationFailed

    path = Path(data)
    if path.suffix.lower() in {".csv", ".parquet"}:
        if not path.is_file():
            raise ValidationFailed(f"no file {data}: give an existing CSV or Parquet file")
        return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    return workspace.data.load(data)


def _report_move(move: AliasMove, *, as_json: bool) -> None:
    if as_json:
        _echo_json(_move(move))
        return
    start = "nothing" if move.from_version is None else f"version {move.from_version}"
    forced = " (forced)" if move.forced else ""
    console().print(
        f"{move.name}@{move.alias}: {start} -> version {move.to_version} ({move.kind}){forced}",
        markup=False,
    )


def _print_gates(evaluation: dict[str, Any] | None, *, stderr: bool = False) -> None:  # Any: JSON
    from rich.console import Console
    from rich.table import Table

    out = Console(stderr=True, highlight=False) if stderr else console()
    if not evaluation:
        out.print("  gates: not evaluated")
        return
    table = Table("gate", "passed", "details", title="gate results")
    for result in evaluation.get("results", []):
        verdict = "skipped" if result.get("skipped") else "yes" if result.get("passed") else "NO"
        table.add_row(str(result.get("name", "?")), verdict, str(result.get("detail", "")))
    out.print(table)


def _model(model: RegisteredModel) -> dict[str, Any]:  # Any: JSON values
    return {
        "name": model.name,
        "aliases": model.aliases,
        "created_at": _time(model.created_at),
        "actor": model.actor,
        "description": model.description,
    }


def _version(version: ModelVersion) -> dict[str, Any]:  # Any: JSON values
    return {
        "ref": version.ref,
        "name": version.name,
        "version": version.version,
        "flavor": version.flavor,
        "digest": version.digest,
        "size": version.size,
        "safe": version.safe,
        "run_id": version.run_id,
        "dataset_versions": list(version.dataset_versions),
        "code_version": version.code_version,
        "created_at": _time(version.created_at),
        "actor": version.actor,
        "signature": version.signature,
        "files": version.files,
        "metrics": version.metrics,
        "params": version.params,
        "tags": version.tags,
        "description": version.description,
        "limitations": version.limitations,
        "evaluation": version.evaluation,
    }


def _move(move: AliasMove) -> dict[str, Any]:  # Any: JSON values
    return {
        "position": move.position,
        "time": _time(move.time),
        "name": move.name,
        "alias": move.alias,
        "kind": move.kind,
        "from_version": move.from_version,
        "to_version": move.to_version,
        "actor": move.actor,
        "forced": move.forced,
        "reason": move.reason,
        "gates": move.gates,
    }


def _time(moment: Any) -> str:  # Any: a datetime
    return str(moment.isoformat(timespec="seconds"))


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def _echo_json(value: Any) -> None:  # Any: JSON values
    from mlcycle.cli._tables import json_number

    def plain(item: Any) -> Any:  # Any: JSON values
        if isinstance(item, float):
            return json_number(item)
        if isinstance(item, dict):
            return {str(k): plain(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v) for v in item]
        return item

    typer.echo(json.dumps(plain(value), indent=2, default=str))
