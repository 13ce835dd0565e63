"""Datasets: versioned tables, their profiles and policy findings."""

from __future__ import annotations

from mlcycle.data._content import content_digest
from mlcycle.data._datasets import DatasetConflict, DatasetRegistry
from mlcycle.data._diff import ColumnChange, DatasetDiff
from mlcycle.data._erase import Erasure, parse_predicate
from mlcycle.data._policy import PolicyFinding, scan_policy
from mlcycle.data._profile import ColumnProfile, DatasetProfile, Histogram, profile_table
from mlcycle.data._profile_report import render_profile_html
from mlcycle.data._refs import DatasetRef, Ref, parse_ref, ref
from mlcycle.data._sdk import (
    csv,
    current_registry,
    diff,
    erase,
    get,
    history,
    load,
    load_table,
    policy,
    register,
    rollback,
    scan,
    sql,
)
from mlcycle.data._sdk import list_datasets as list  # noqa: A004  (mc.data.list(), as documented)
from mlcycle.data._sources import CsvFile, SqlQuery, read_source

__all__ = [
    "ColumnChange",
    "ColumnProfile",
    "CsvFile",
    "DatasetConflict",
    "DatasetDiff",
    "DatasetProfile",
    "DatasetRef",
    "DatasetRegistry",
    "Erasure",
    "Histogram",
    "PolicyFinding",
    "Ref",
    "SqlQuery",
    "content_digest",
    "csv",
    "current_registry",
    "diff",
    "erase",
    "get",
    "history",
    "list",
    "load",
    "load_table",
    "parse_predicate",
    "parse_ref",
    "policy",
    "profile_table",
    "read_source",
    "ref",
    "register",
    "render_profile_html",
    "rollback",
    "scan",
    "scan_policy",
    "sql",
]
