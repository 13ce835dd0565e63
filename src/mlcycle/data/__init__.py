"""Datasets: versioned tables, their profiles and policy findings."""

from __future__ import annotations

from mlcycle.data._policy import PolicyFinding, scan_policy
from mlcycle.data._profile import ColumnProfile, DatasetProfile, Histogram, profile_table
from mlcycle.data._profile_report import render_profile_html

__all__ = [
    "ColumnProfile",
    "DatasetProfile",
    "Histogram",
    "PolicyFinding",
    "profile_table",
    "render_profile_html",
    "scan_policy",
]
