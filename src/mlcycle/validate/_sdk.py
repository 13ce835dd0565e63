"""``mc.validate.infer_schema("bike/3")`` and ``mc.validate.check(...)``: schemas in the project.

A dataset's schema lives in the project as ``schemas/<name>.yaml``, reviewed
and versioned with the code. Inferring from a dataset reference writes that
file; checking a reference without naming a schema reads it. A schema file
that exists is never replaced silently: a reviewed file may hold hand edits
(a widened bound, a category added), so writing different content over it
needs ``overwrite=True``. Writing the same content again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlcycle.data import DatasetProfile, DatasetRegistry, current_registry, parse_ref
from mlcycle.errors import AlreadyExists, ValidationFailed
from mlcycle.validate._check import check as check_data
from mlcycle.validate._infer import infer_schema as infer_from
from mlcycle.validate._report import ValidationReport
from mlcycle.validate._schema import Schema
from mlcycle.validate._tables import TableLike

__all__ = ["check", "infer_schema", "schema_path"]


def schema_path(name: str, *, registry: DatasetRegistry | None = None) -> Path:
    """Where the schema of dataset ``name`` lives: ``<project>/schemas/<name>.yaml``."""
    datasets = registry if registry is not None else current_registry()
    if datasets.schemas_dir is None:
        raise ValidationFailed(
            f"this dataset registry has no project schemas folder, so the schema of '{name}' "
            "has no default file; give the schema (or save=PATH) explicitly"
        )
    return datasets.schemas_dir / f"{parse_ref(name).name}.yaml"


def infer_schema(
    data: DatasetProfile | TableLike | str,
    *,
    slack: float = 0.1,
    max_categories: int = 100,
    key: Sequence[str] | None = None,
    dataset: str | None = None,
    registry: DatasetRegistry | None = None,
    save: bool | Path | str | None = None,
    overwrite: bool = False,
) -> Schema:
    """A schema the data passes (see the rules in ``mlcycle.validate``), saved in the project.

    ``data`` is a dataset reference (``"bike/3"``: its stored profile, and the
    dataset's registered key unless ``key`` is given), a profile, or a table or
    frame. ``save``: ``None`` (the default) writes ``schemas/<name>.yaml`` in the
    project for a reference and nothing for other data; ``True`` writes there for
    any data named by ``dataset``; a path writes there; ``False`` writes nothing.
    An existing file with other content is replaced only with ``overwrite=True``
    (it may hold reviewed hand edits); otherwise ``AlreadyExists`` names it.

    >>> import pyarrow as pa
    >>> infer_schema(pa.table({"hr": [0, 20]})).column("hr").max
    22.0
    """
    is_ref = isinstance(data, str)
    if is_ref and key is None:
        datasets = registry if registry is not None else current_registry()
        key = datasets.catalog.get_dataset(parse_ref(str(data)).name).key or None
    schema = infer_from(
        data,
        slack=slack,
        max_categories=max_categories,
        key=key,
        dataset=dataset,
        registry=registry,
    )
    target = _target(schema, save=save, is_ref=is_ref, registry=registry)
    if target is not None:
        _write(schema, target, overwrite=overwrite)
    return schema


def _target(
    schema: Schema,
    *,
    save: bool | Path | str | None,
    is_ref: bool,
    registry: DatasetRegistry | None,
) -> Path | None:
    if save is False or (save is None and not is_ref):
        return None
    if isinstance(save, str | Path):
        return Path(save)
    if schema.dataset is None:
        raise ValidationFailed(
            "save=True needs a dataset name for schemas/<name>.yaml; pass dataset='name', "
            "or save='path/to/schema.yaml'"
        )
    return schema_path(schema.dataset, registry=registry)


def _write(schema: Schema, target: Path, *, overwrite: bool) -> None:
    text = schema.to_yaml()
    if target.exists():
        try:
            current = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current == text:
            return
        if not overwrite:
            raise AlreadyExists(
                f"schema file {target} exists with other content (perhaps reviewed hand "
                "edits); compare it with the new schema (save=False returns it unsaved), "
                "then pass overwrite=True to replace it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)


def check(
    data: TableLike | str,
    schema: Schema | Path | str | None = None,
    *,
    registry: DatasetRegistry | None = None,
) -> ValidationReport:
    """Every way ``data`` breaks ``schema``, as a report of anomalies.

    ``data`` is a table or frame, or a dataset reference such as ``"bike/3"``;
    ``schema`` is a Schema or a YAML file, and for a reference defaults to the
    project's ``schemas/<name>.yaml``.

    >>> import pyarrow as pa
    >>> schema = infer_schema(pa.table({"x": [1.0, 2.0]}), slack=0.0)
    >>> check(pa.table({"x": [1.5, 9.0]}), schema).errors[0].kind
    'out_of_range'
    """
    if schema is None:
        if not isinstance(data, str):
            raise ValidationFailed(
                "give the schema to check a table or frame against: "
                "check(df, 'schemas/bike.yaml') or check(df, schema)"
            )
        schema = schema_path(data, registry=registry)
        if not schema.is_file():
            name = parse_ref(data).name
            raise ValidationFailed(
                f"dataset '{name}' has no schema file {schema}; infer one with "
                f"mc.validate.infer_schema({data!r}) or give schema=..."
            )
    return check_data(data, schema, registry=registry)
