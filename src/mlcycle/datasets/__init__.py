"""Real public datasets bundled for the demo and tests (see BIKE_SHARING.md for provenance)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BIKE_SHARING_HOURLY"]

BIKE_SHARING_HOURLY = Path(__file__).with_name("hour.csv")
"""UCI Bike Sharing, hourly (17,379 rows); CC BY 4.0, Fanaee-T and Gama (2013)."""
