"""A custom model class importable by its module path, for the pyfunc flavor's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


class Doubler:
    """Predicts twice the sum of each row, plus an offset."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(frame.sum(axis=1) * 2 + self.offset)
