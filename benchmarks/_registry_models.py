"""A small custom model for the registry benchmark's pyfunc flavor, importable by module path.

The pyfunc flavor pickles a reference to the class, so the class must live in a module the
loading process can import (``benchmarks/`` is on its path), not in ``__main__``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class HourlyMeans:
    """Predicts the training mean of the target for each (hour, working day) pair."""

    def __init__(self, keys: tuple[str, ...] = ("hr", "workingday")) -> None:
        self.keys = list(keys)
        self.means: dict[tuple[int, ...], float] = {}
        self.fallback = 0.0

    def fit(self, frame: pd.DataFrame, target: pd.Series) -> HourlyMeans:
        """Learn the mean target of every key combination."""
        grouped = target.groupby([frame[key] for key in self.keys]).mean()
        self.means = {tuple(int(v) for v in key): float(mean) for key, mean in grouped.items()}
        self.fallback = float(target.mean())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The learned mean of each row's key (the overall mean for an unseen key)."""
        rows = frame[self.keys].to_numpy(dtype=np.int64)
        return np.array([self.means.get(tuple(row), self.fallback) for row in rows.tolist()])
