"""Model classes for the server's tests, importable by module path (the pyfunc flavor needs it)."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd


class RaisesOnNegative:
    """Echoes column ``id``, and raises when any ``id`` is negative (a model bug on some rows)."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["id"] < 0).any():
            raise ArithmeticError("negative ids break this model")
        return np.asarray(frame["id"], dtype=np.float64)


class Planted:
    """A pickle whose loading makes a marker folder: it must never be loaded by the server."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.mkdir, (self.marker,))  # loading it creates the marker folder

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(frame))


class Slow:
    """Echoes column ``id`` after a pause: keeps requests in flight long enough to pile up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(self.seconds)
        return np.asarray(frame["id"], dtype=np.float64)


class Pid:
    """Predicts the id of the process it runs in, for every row; raises on a negative ``id``."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["id"] < 0).any():
            raise ArithmeticError("negative ids break this model")
        return np.full(len(frame), float(os.getpid()))


class FirstOnly:
    """Predicts only the first row of every batch: a model that miscounts its outputs."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(frame["id"], dtype=np.float64)[:1]
