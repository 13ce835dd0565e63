"""Fixtures for the registry: a workspace, and small fitted scikit-learn models with their data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from mlcycle.settings import Settings
from mlcycle.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.open(Settings(home=tmp_path, actor="ana")) as opened:
        yield opened


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "temp": rng.uniform(0, 1, 40),
            "hr": rng.integers(0, 24, 40),
            "holiday": rng.integers(0, 2, 40).astype(bool),
        }
    )


@pytest.fixture
def target(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(3.0 * frame["temp"] + 0.1 * frame["hr"])


@pytest.fixture
def ridge(frame: pd.DataFrame, target: np.ndarray) -> Ridge:
    return Ridge(alpha=0.1).fit(frame, target)
