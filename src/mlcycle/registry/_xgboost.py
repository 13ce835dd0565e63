"""XGBoost boosters and scikit-learn wrappers, stored in XGBoost's own UBJSON format.

``save_model`` keeps the trees and, for the wrappers, their parameters and
class count inside the UBJSON document; the zip around it names the wrapper
class, which is looked up in a fixed list. Loading never unpickles.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import ValidationFailed
from mlcycle.registry._boosters import read_container, write_container

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["XGBoostFlavor"]

_MODEL = "model.ubj"
_WRAPPERS = ("XGBRegressor", "XGBClassifier", "XGBRanker", "XGBRFRegressor", "XGBRFClassifier")


class XGBoostFlavor:
    """``xgboost.Booster`` and its scikit-learn wrappers (``XGBRegressor``...)."""

    name = "xgboost"
    safe = True
    suffix = ".xgb.zip"

    def handles(self, model: object) -> bool:
        """Whether ``model`` is a booster or a wrapper from the ``xgboost`` package."""
        kind = type(model)
        return kind.__module__.split(".", 1)[0] == "xgboost" and (
            kind.__name__ == "Booster" or kind.__name__ in _WRAPPERS
        )

    def save(self, model: object, path: Path) -> None:
        """Write the model as UBJSON inside a zip naming its class."""
        with tempfile.TemporaryDirectory() as scratch:
            native = Path(scratch) / _MODEL
            model.save_model(native)  # type: ignore[attr-defined]  # Booster and wrappers both
            content = native.read_bytes()
        write_container(
            path, model_name=_MODEL, model=content, meta={"class": type(model).__name__}
        )

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """The booster or wrapper written by ``save``; ``trusted_types`` does not apply."""
        del trusted_types
        import xgboost  # noqa: PLC0415  (the xgboost extra, loaded when such a model is)

        content, meta = read_container(path, model_name=_MODEL)
        kind = meta.get("class")
        if kind != "Booster" and kind not in _WRAPPERS:
            raise ValidationFailed(f"{path.name} names an unknown XGBoost class {kind!r}")
        model = getattr(xgboost, kind)()
        with tempfile.TemporaryDirectory() as scratch:
            native = Path(scratch) / _MODEL
            native.write_bytes(content)
            try:
                model.load_model(native)
            except xgboost.core.XGBoostError as exc:
                raise ValidationFailed(
                    f"{path.name} holds no readable XGBoost model: {exc}"
                ) from exc
        return model

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """``predict`` on a wrapper; on a booster, over a ``DMatrix`` of the frame."""
        import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)
        import xgboost  # noqa: PLC0415  (loaded already: the model is one)

        if isinstance(model, xgboost.Booster):
            return np.asarray(model.predict(xgboost.DMatrix(frame)))
        return np.asarray(model.predict(frame))  # type: ignore[attr-defined]  # a wrapper
