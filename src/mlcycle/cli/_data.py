"""``mlcycle data``: register, inspect, compare, profile and validate versioned datasets.

Datasets are named by the reference grammar of ``mlcycle.data``: ``bike`` is
the latest version, ``bike/3`` version 3 (``bike@latest`` and ``data:/bike/3``
work too). Every command reads the profile stored with a version rather than
recomputing it, so ``show`` and ``report`` cost a small JSON read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from mlcycle.cli._context import console, load, open_workspace

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from mlcycle import Workspace
    from mlcycle.data import DatasetDiff, DatasetProfile
    from mlcycle.settings import Settings
    from mlcycle.store import Dataset, DatasetVersion
    from mlcycle.validate import ValidationReport

__all__ = ["app", "default_schema_path", "version_summary"]

app = typer.Typer(
    help="Register, inspect, compare, profile and validate versioned datasets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

REF_HELP = "A dataset (its latest version) or one version: bike, bike/3, bike@latest, data:/bike/3."
TOP_VALUES_SHOWN = 3
SCHEMAS_FOLDER = "schemas"


def default_schema_path(settings: Settings, name: str) -> Path:
    """Where a dataset's schema lives in the project: ``schemas/<name>.yaml``."""
    return settings.home / SCHEMAS_FOLDER / f"{name}.yaml"


# -- list, show, history, diff -------------------------------------------------------------------


@app.command("list")
def list_datasets(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every dataset with its latest version, size, last update and who made it."""
    with open_workspace(ctx) as workspace:
        registry = workspace.data
        rows = [
            (dataset, registry.catalog.latest_dataset_version(dataset.name))
            for dataset in registry.list()
        ]
    if as_json:
        _echo_json(
            [
                {
                    **_dataset_summary(dataset),
                    "latest": version_summary(latest) if latest is not None else None,
                }
                for dataset, latest in rows
            ]
        )
        return
    out = console()
    if not rows:
        out.print("no datasets yet; register one with [bold]mlcycle data register NAME FILE[/]")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("name", no_wrap=True)
    for title in ("latest", "rows", "columns"):
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    for dataset, latest in rows:
        if latest is None:
            table.add_row(dataset.name, "-", "", "", _time(dataset.created_at), dataset.actor)
            continue
        table.add_row(
            dataset.name,
            str(latest.version),
            f"{latest.rows:,}",
            str(len(latest.columns)),
            _time(latest.created_at),
            latest.actor,
        )
    out.print(table)
    out.print(f"{len(rows)} dataset(s). Details: [bold]mlcycle data show NAME[/] or NAME/VERSION")


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show one dataset version: its record, a profile of every column and policy findings.

    Per column: Arrow type, count of values, missing (null) values, distinct
    values, min, max, mean, standard deviation and the most frequent values.
    The profile is the one stored when the version was registered.
    """
    with open_workspace(ctx) as workspace:
        version = workspace.data.get(ref)
        dataset = workspace.data.catalog.get_dataset(version.name)
        profile = _stored_profile(workspace, version)
    if as_json:
        columns = []
        for column in profile.to_dict()["columns"]:
            column.pop("sample", None)  # up to 10,000 numbers per column: not for a terminal
            columns.append(column)
        _echo_json(
            {
                "dataset": _dataset_summary(dataset),
                "version": version_summary(version),
                "profile": {"rows": profile.rows, "columns": columns},
            }
        )
        return
    out = console()
    _print_record(out, dataset, version)
    out.print(_profile_table(profile))
    _print_policy(out, version.policy)
    out.print(
        f"Histograms: [bold]mlcycle data report {_ref(version)} --out {version.name}.html[/]; "
        f"check it: [bold]mlcycle data validate {_ref(version)}[/]",
        soft_wrap=True,
    )


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset's name, such as bike.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every version of a dataset, oldest first: what made it, its size and its source.

    Versions are never deleted: a rollback or an overwrite is a new version.
    """
    with open_workspace(ctx) as workspace:
        versions = workspace.data.history(_name_of(name))
    if as_json:
        _echo_json([version_summary(v) for v in versions])
        return
    from rich.table import Table

    out = console()
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("operation", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("columns", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    table.add_column("digest", no_wrap=True)
    table.add_column("source", overflow="fold")
    for v in versions:
        table.add_row(
            str(v.version),
            v.operation,
            f"{v.rows:,}",
            str(len(v.columns)),
            _time(v.created_at),
            v.actor,
            v.digest[:19],
            v.source,
        )
    out.print(table)
    if len(versions) > 1:
        last = versions[-1].version
        out.print(f"What changed: [bold]mlcycle data diff {versions[-1].name} {last - 1} {last}[/]")


@app.command("diff")
def diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset's name, such as bike.")],
    old: Annotated[int, typer.Argument(help="The older version number.", min=1)],
    new: Annotated[int, typer.Argument(help="The newer version number.", min=1)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Compare two versions: rows added, removed and changed, schema and per-column changes.

    Rows are matched by the dataset's key (a row whose key is in both versions
    with other values is changed); without a key, rows are compared by their
    hashes, so a changed row counts as one removed and one added. Per column:
    mean, standard deviation and missing fraction before and after.
    """
    with open_workspace(ctx) as workspace:
        found = workspace.data.diff(_name_of(name), old, new)
    if as_json:
        _echo_json(found.to_dict())
        return
    _print_diff(console(), found)


# -- register, schema, validate, report ----------------------------------------------------------


@app.command("register")
def register(  # noqa: PLR0917 (Typer maps each parameter to an option)
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset's name, such as bike.")],
    source: Annotated[
        str,
        typer.Argument(
            help="A CSV or Parquet file, or a glob of them in quotes ('data/2012-*.parquet')."
        ),
    ],
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            "-m",
            help="append: add the rows to the latest version; overwrite: replace them. "
            "Content identical to the latest version makes no new version (with overwrite, "
            "registering the same file again is a no-op).",
        ),
    ] = "append",
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time-column",
            "-t",
            help="The column holding each row's time (set when the dataset is created).",
        ),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            "-k",
            help="A column of the key that identifies a row; repeat for several "
            "(--key dteday --key hr). Used by diff and schema inference.",
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="The CSV field delimiter, such as ';' (default ',')."),
    ] = None,
    merge_schema: Annotated[
        bool,
        typer.Option(
            "--merge-schema", help="Let an append add (or leave out) columns: schema evolution."
        ),
    ] = False,
    description: Annotated[
        str | None,
        typer.Option("--description", help="What the dataset holds (set when it is created)."),
    ] = None,
    validate: Annotated[
        bool | None,
        typer.Option(
            "--validate/--no-validate",
            help="Check the new rows against the schema first (schemas/NAME.yaml or --schema) "
            "and register nothing when it finds errors. Default: as data.validate_on_register "
            "in mlcycle.toml says.",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            help="Schema file for --validate (default: schemas/NAME.yaml).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Register a CSV or Parquet file (or glob) as a new version of dataset NAME.

    The first registration creates the dataset. Each registration that changes
    the content makes a new version with a stored profile and policy findings
    (columns that look like personal data); the same content again makes none.
    """
    from mlcycle.data import CsvFile
    from mlcycle.errors import NotFound, ValidationFailed

    if mode not in {"append", "overwrite"}:
        raise ValidationFailed(f"--mode {mode!r} must be append or overwrite")
    checked_mode: Literal["append", "overwrite"] = "append" if mode == "append" else "overwrite"
    if schema is not None and validate is False:
        raise ValidationFailed("--schema is for --validate; leave out --no-validate")
    data: object = source if delimiter is None else CsvFile(path=source, delimiter=delimiter)
    with open_workspace(ctx) as workspace:
        registry = workspace.data
        if schema is not None:  # this file instead of schemas/NAME.yaml
            registry = dataclasses.replace(registry, schema_check=_registration_check(schema))
            validate = True
        try:
            before: int | None = registry.get(_name_of(name)).version
        except NotFound:
            before = None
        version = registry.register(
            name,
            data,
            mode=checked_mode,
            time_column=time_column,
            key=key or None,
            schema="merge" if merge_schema else None,
            description=description,
            validate=validate,
        )
    out = console()
    if version.version == before:
        out.print(
            f"dataset {name} is unchanged: version {version.version} already holds this content "
            "(no new version)"
        )
        return
    out.print(
        f"registered [bold]{_ref(version)}[/] ({version.operation}): {version.rows:,} rows, "
        f"{len(version.columns)} columns from {version.source}",
        soft_wrap=True,
    )
    if version.policy:
        _print_policy(out, version.policy)
    out.print(f"Next: [bold]mlcycle data show {_ref(version)}[/]")


def _registration_check(schema: Path) -> Any:  # Any: a schema check taking a pyarrow Table
    """A check refusing rows that break the schema file ``schema`` (read once, now)."""
    from mlcycle.errors import ValidationFailed
    from mlcycle.validate import check, load_schema

    rules = load_schema(schema)

    def run(name: str, table: Any) -> None:  # Any: a pyarrow Table
        del name  # the file was named on the command line
        try:
            check(table, rules).raise_for_errors()
        except ValidationFailed as exc:
            raise ValidationFailed(f"{exc}\nSchema: {schema}. Nothing was registered.") from exc

    return run


@app.command("schema")
def schema(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    out_path: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the YAML (default: schemas/NAME.yaml in the project; "
            "'-' prints it).",
        ),
    ] = None,
    slack: Annotated[
        float,
        typer.Option(
            "--slack",
            min=0.0,
            help="Widen numeric bounds by this fraction of the observed range, and missing "
            "fractions by this fraction.",
        ),
    ] = 0.1,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing schema file.")
    ] = False,
) -> None:
    """Infer a schema from a version's profile and save it as reviewable YAML.

    Per column: type, required or a maximum missing fraction, numeric bounds
    (widened by --slack), categorical domains; the dataset's key must be
    unique. Commit the file with the code; `mlcycle data validate` uses it.
    """
    from mlcycle.errors import AlreadyExists
    from mlcycle.validate import infer_schema

    with open_workspace(ctx) as workspace:
        version = workspace.data.get(ref)
        dataset = workspace.data.catalog.get_dataset(version.name)
        inferred = infer_schema(
            version.ref, registry=workspace.data, key=list(dataset.key), slack=slack, save=False
        )
        settings = workspace.settings
    text = inferred.to_yaml()
    if out_path == "-":
        typer.echo(text, nl=False)
        return
    path = Path(out_path) if out_path else default_schema_path(settings, version.name)
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
        console().print(f"{_shown(path)} already holds this schema (unchanged)")
        return
    if path.exists() and not force:
        raise AlreadyExists(
            f"{_shown(path)} exists with other content (perhaps reviewed hand edits); compare "
            f"with `mlcycle data schema {ref} --out -`, then pass --force to replace it, or "
            "--out another file"
        )
    inferred.save(path)
    key_text = f", key ({', '.join(inferred.key)})" if inferred.key else ""
    console().print(
        f"wrote {_shown(path)}: {len(inferred.columns)} columns{key_text}, from {_ref(version)}. "
        f"Review it, commit it, then [bold]mlcycle data validate {version.name}[/]",
        soft_wrap=True,
    )


@app.command("validate")
def validate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            "-s",
            help="The schema file (default: schemas/NAME.yaml in the project).",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write the report as a self-contained HTML page.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Check a dataset version against its schema and list the anomalies.

    Exits with status 1 when any anomaly is an error (a missing column, a type
    mismatch, a value out of range, an unseen category, too many missing
    values, a duplicate key, NaN or infinity, empty data), 0 otherwise
    (warnings allowed).
    """
    from mlcycle.data import parse_ref
    from mlcycle.errors import NotFound
    from mlcycle.validate import check, load_schema

    name = parse_ref(ref).name
    settings = load(ctx)
    path = schema if schema is not None else default_schema_path(settings, name)
    if schema is None and not path.is_file():
        raise NotFound(
            f"no schema for dataset '{name}' at {_shown(path)}; infer one with "
            f"`mlcycle data schema {name}`, or pass --schema FILE"
        )
    rules = load_schema(path)  # a malformed file fails before any data is read
    with open_workspace(ctx) as workspace:
        version = workspace.data.get(ref)
        report = check(version.ref, rules, registry=workspace.data)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(
            report.to_html(title=f"{_ref(version)} against {path.name}"), encoding="utf-8"
        )
    if as_json:
        typer.echo(report.to_json())
    else:
        _print_report(console(), report, version=version, schema=path, html=html)
        if rules.dataset is not None and rules.dataset != version.name:
            console().print(
                f"[yellow]note[/]: {_shown(path)} was written for dataset '{rules.dataset}'"
            )
    if not report.ok:
        raise typer.Exit(1)


@app.command("report")
def report(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The HTML file to write (default: NAME-vVERSION.html in the working directory).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Write a version's profile as one HTML page with a histogram per column.

    The page has inline styles and SVG only (no scripts, fonts or links), so it
    opens offline, from an e-mail attachment or on an air-gapped machine.
    """
    from mlcycle.data import render_profile_html

    with open_workspace(ctx) as workspace:
        version = workspace.data.get(ref)
        profile = _stored_profile(workspace, version)
    path = out_path if out_path is not None else Path(f"{version.name}-v{version.version}.html")
    title = f"{_ref(version)}: {version.rows:,} rows from {version.source}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_profile_html(profile, title=title), encoding="utf-8")
    console().print(f"wrote {_shown(path)} (profile of {_ref(version)}; open it in a browser)")


# -- helpers -------------------------------------------------------------------------------------


def _name_of(text: str) -> str:
    """The dataset name of ``text``, refusing a version or alias where only a name makes sense."""
    from mlcycle.data import parse_ref
    from mlcycle.errors import ValidationFailed

    parsed = parse_ref(text)
    if parsed.version is not None or parsed.alias is not None:
        raise ValidationFailed(f"give the dataset's name ({parsed.name!r}), not {text!r}")
    return parsed.name


def _stored_profile(workspace: Workspace, version: DatasetVersion) -> DatasetProfile:
    from mlcycle.data import DatasetProfile, profile_table

    if version.profile_digest is not None:
        with workspace.artifacts.open(version.profile_digest) as stream:
            return DatasetProfile.from_json(stream.read())
    return profile_table(workspace.data.load_table(version.ref))


def _ref(version: DatasetVersion) -> str:
    return f"{version.name}/{version.version}"


def _time(moment: Any) -> str:  # Any: a datetime
    return f"{moment.astimezone():%Y-%m-%d %H:%M:%S}"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _plain(value: Any) -> Any:  # Any: JSON values
    """JSON has no NaN or infinity: those become the strings ``NaN``, ``inf``, ``-inf``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _echo_json(value: Any) -> None:  # Any: JSON values
    typer.echo(json.dumps(_plain(value), indent=2, default=str))


def _dataset_summary(dataset: Dataset) -> dict[str, Any]:  # Any: JSON values
    return {
        "name": dataset.name,
        "created_at": dataset.created_at.isoformat(),
        "actor": dataset.actor,
        "time_column": dataset.time_column,
        "key": list(dataset.key),
        "description": dataset.description,
    }


def version_summary(version: DatasetVersion) -> dict[str, Any]:  # Any: JSON values
    """A dataset version as JSON: identity, shape, digest, origin and policy findings."""
    return {
        "name": version.name,
        "version": version.version,
        "ref": version.ref,
        "rows": version.rows,
        "columns": list(version.columns),
        "types": list(version.types),
        "digest": version.digest,
        "created_at": version.created_at.isoformat(),
        "source": version.source,
        "actor": version.actor,
        "operation": version.operation,
        "delta_version": version.delta_version,
        "profile_digest": version.profile_digest,
        "policy": list(version.policy),
        "description": version.description,
    }


def _print_record(out: Console, dataset: Dataset, version: DatasetVersion) -> None:
    out.print(f"[bold]dataset {_ref(version)}[/] ({version.ref})")
    facts = {
        "operation": version.operation,
        "rows": f"{version.rows:,}",
        "columns": str(len(version.columns)),
        "created": _time(version.created_at),
        "actor": version.actor,
        "source": version.source,
        "digest": version.digest,
        "key": ", ".join(dataset.key),
        "time column": dataset.time_column or "",
        "description": version.description or dataset.description or "",
    }
    for label, value in facts.items():
        if value:
            out.print(f"  {label:<12} {value}", markup=False, soft_wrap=True)


def _number(value: Any) -> str:  # Any: a statistic: int, float, ISO text or None
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return f"{value:.6g}"
    return str(value)


def _profile_table(profile: DatasetProfile) -> Table:
    from rich.table import Table

    table = Table(title=f"profile: {profile.rows:,} rows", title_justify="left")
    table.add_column("column", no_wrap=True)
    table.add_column("type", no_wrap=True)
    for title in ("count", "missing", "distinct", "min", "max", "mean", "std"):
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("top values", overflow="fold")
    for column in profile.columns:
        missing = _number(column.missing)
        if column.missing and profile.rows:
            missing = f"[yellow]{missing} ({column.missing / profile.rows:.1%})[/]"
        top = ", ".join(
            f"{value} ({count:,})" for value, count in column.top_values[:TOP_VALUES_SHOWN]
        )
        table.add_row(
            column.name,
            column.type,
            _number(column.count),
            missing,
            _number(column.distinct),
            _number(column.min),
            _number(column.max),
            _number(column.mean),
            _number(column.std),
            top,
        )
    return table


def _print_policy(out: Console, findings: list[dict[str, Any]]) -> None:  # Any: JSON findings
    if not findings:
        out.print("policy: no column looks like personal data or is on the deny-list")
        return
    from rich.table import Table

    table = Table(
        title="[yellow]policy findings[/] (personal data or denied columns)", title_justify="left"
    )
    for title in ("column", "kind", "matches", "examples (masked)"):
        table.add_column(title)
    for finding in findings:
        table.add_row(
            str(finding.get("column", "")),
            str(finding.get("kind", "")),
            _number(finding.get("matches")),
            ", ".join(map(str, finding.get("examples", []))),
        )
    out.print(table)


def _print_diff(out: Console, found: DatasetDiff) -> None:
    from rich.table import Table

    how = f"by key ({', '.join(found.key)})" if found.key else "by row hashes (no key)"
    out.print(f"[bold]dataset {found.name}: version {found.old} → {found.new}[/]")
    out.print(
        f"  rows     {found.rows_old:,} → {found.rows_new:,}: [green]+{found.rows_added:,} "
        f"added[/], [red]-{found.rows_removed:,} removed[/], "
        f"[yellow]{found.rows_changed:,} changed[/] ({how})"
    )
    schema_changes = [
        *(f"[green]+ {name}[/] ({kind})" for name, kind in found.columns_added),
        *(f"[red]- {name}[/] ({kind})" for name, kind in found.columns_removed),
        *(f"[yellow]~ {name}[/] ({old} → {new})" for name, old, new in found.types_changed),
    ]
    if found.key and found.rows_new - found.rows_old != found.rows_added - found.rows_removed:
        out.print(
            f"  [yellow]note[/]: the key ({', '.join(found.key)}) repeats within a version, so "
            "rows matched by key do not account for every row"
        )
    out.print(f"  schema   {', '.join(schema_changes) if schema_changes else 'unchanged'}")
    moved = [
        c
        for c in found.distributions
        if (c.mean_old, c.std_old, c.missing_old) != (c.mean_new, c.std_new, c.missing_new)
    ]
    if not moved:
        out.print("  columns  no shared column changed its mean, spread or missing values")
        return
    table = Table(title="per-column changes", title_justify="left")
    table.add_column("column", no_wrap=True)
    for title in (
        "mean before",
        "after",
        "Δ mean",
        "std before",
        "after",
        "missing before",
        "after",
    ):
        table.add_column(title, justify="right", no_wrap=True)
    for c in moved:
        table.add_row(
            c.name,
            _number(c.mean_old),
            _number(c.mean_new),
            _number(c.mean_delta),
            _number(c.std_old),
            _number(c.std_new),
            f"{c.missing_old:.1%}",
            f"{c.missing_new:.1%}",
        )
    out.print(table)
    unchanged = len(found.distributions) - len(moved)
    if unchanged:
        out.print(f"{unchanged} other shared column(s) unchanged; all of them: --json")


def _print_report(
    out: Console,
    report: ValidationReport,
    *,
    version: DatasetVersion,
    schema: Path,
    html: Path | None,
) -> None:
    from rich.table import Table

    if report.anomalies:
        table = Table(title="anomalies", title_justify="left")
        for title in ("severity", "kind", "column", "count", "examples", "message"):
            table.add_column(title, justify="right" if title == "count" else "left")
        for anomaly in report.anomalies:
            style = "red" if anomaly.severity == "error" else "yellow"
            table.add_row(
                f"[{style}]{anomaly.severity}[/]",
                anomaly.kind,
                anomaly.column or "",
                f"{anomaly.count:,}",
                ", ".join(map(repr, anomaly.examples)),
                anomaly.message,
            )
        out.print(table)
    verdict = "[bold green]passed[/]" if report.ok else "[bold red]failed[/]"
    out.print(
        f"{verdict}: {_ref(version)} against {_shown(schema)}: {report.rows:,} rows, "
        f"{report.columns} columns, {len(report.errors)} error(s), "
        f"{len(report.warnings)} warning(s)",
        soft_wrap=True,
    )
    if html is not None:
        out.print(f"wrote {_shown(html)}")
