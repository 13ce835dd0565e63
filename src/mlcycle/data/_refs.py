"""One reference grammar for datasets and models: ``bike/3``, ``bike@latest``, ``data:/bike/3``.

A reference names an object, then either a version number after ``/`` or an
alias after ``@`` (neither means the latest). As a URI it starts with its
kind: ``data:/bike/3``, ``models:/bike-demand@production``. Datasets and
registered models share the grammar, so lineage, the CLI and the registry
read references the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mlcycle.errors import ValidationFailed

__all__ = ["LATEST", "DatasetRef", "Ref", "RefKind", "parse_ref", "ref"]

RefKind = Literal["data", "models"]
LATEST = "latest"

_REF = re.compile(
    r"(?:(?P<kind>data|models):/)?"
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]{0,127})"
    r"(?:/(?P<version>[0-9]{1,9})|@(?P<alias>[A-Za-z][A-Za-z0-9_\-]{0,63}))?"
)


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference: ``kind``, ``name``, and a ``version`` or an ``alias`` (or neither)."""

    kind: RefKind
    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        """The reference as a URI, such as ``data:/bike/3`` or ``models:/bike@production``."""
        return f"{self.kind}:/{self}"

    @property
    def is_latest(self) -> bool:
        """Whether the reference means the newest version."""
        return self.version is None and self.alias in {None, LATEST}

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str, *, kind: RefKind = "data") -> Ref:
    """Parse ``text``; a reference without a ``data:/`` or ``models:/`` prefix is of ``kind``.

    >>> parse_ref("bike/3")
    Ref(kind='data', name='bike', version=3, alias=None)
    >>> parse_ref("models:/bike-demand@production").uri
    'models:/bike-demand@production'
    >>> parse_ref("bike@latest").is_latest
    True
    """
    found = _REF.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ValidationFailed(
            f"{text!r} is not a reference; write NAME, NAME/VERSION or NAME@ALIAS "
            "(such as 'bike', 'bike/3', 'bike@latest', 'data:/bike/3' or "
            "'models:/bike-demand@production')"
        )
    version = found["version"]
    if version is not None and int(version) < 1:
        raise ValidationFailed(f"{text!r}: versions are numbered from 1")
    prefix = found["kind"]
    return Ref(
        kind=prefix if prefix is not None else kind,  # type: ignore[arg-type]  # regex: data|models
        name=found["name"],
        version=None if version is None else int(version),
        alias=found["alias"],
    )


class DatasetRef(str):
    """A dataset reference as a typed value (``bike@latest``, ``bike/3``), checked when made.

    Pipelines resolve parameters of this type to a version before any step
    runs, so ``bike@latest`` becomes ``bike/3`` and the run records which.

    >>> DatasetRef("bike@latest").parsed.is_latest
    True
    """

    __slots__ = ()

    def __new__(cls, text: str) -> DatasetRef:
        """Check ``text`` names a dataset (``data:/`` prefix allowed), then keep it as given."""
        parsed = parse_ref(str(text))
        if parsed.kind != "data":
            raise ValidationFailed(f"{text!r} names a model; give a dataset such as 'bike@latest'")
        return super().__new__(cls, str(parsed))

    @property
    def parsed(self) -> Ref:
        """The reference's parts."""
        return parse_ref(self)

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.parsed.name

    @property
    def version(self) -> int | None:
        """The version number, once resolved (``None`` for ``bike@latest``)."""
        return self.parsed.version


def ref(text: str) -> DatasetRef:
    """A typed dataset reference, for pipeline parameters: ``mc.data.ref("bike@latest")``.

    >>> ref("data:/bike/3")
    'bike/3'
    """
    return DatasetRef(text)
