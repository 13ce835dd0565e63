"""LightGBM boosters and scikit-learn wrappers, stored as LightGBM's model text.

The model text holds the trees; a wrapper's parameters and class labels go
beside it as JSON, and loading rebuilds the wrapper around the booster read
from the text. Loading never unpickles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ValidationFailed
from mlcycle.registry._boosters import (
    decode_labels,
    encode_labels,
    json_params,
    read_container,
    write_container,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["LightGBMFlavor"]

_MODEL = "model.txt"
_WRAPPERS = ("LGBMRegressor", "LGBMClassifier", "LGBMRanker")


class LightGBMFlavor:
    """``lightgbm.Booster`` and its scikit-learn wrappers (``LGBMRegressor``...)."""

    name = "lightgbm"
    safe = True
    suffix = ".lgb.zip"

    def handles(self, model: object) -> bool:
        """Whether ``model`` is a booster or a wrapper from the ``lightgbm`` package."""
        kind = type(model)
        return kind.__module__.split(".", 1)[0] == "lightgbm" and (
            kind.__name__ == "Booster" or kind.__name__ in _WRAPPERS
        )

    def save(self, model: object, path: Path) -> None:
        """Write the model text and, for a wrapper, its class, parameters and labels."""
        kind = type(model).__name__
        meta: dict[str, Any] = {"class": kind}  # Any: JSON values
        if kind == "Booster":
            booster: Any = model  # Any: a lightgbm.Booster
        else:
            wrapper: Any = model  # Any: a fitted lightgbm wrapper
            booster = wrapper.booster_
            meta["params"] = json_params(wrapper.get_params())
            meta["objective"] = wrapper.objective_
            meta["feature_names"] = wrapper._fitted_with_feature_names
            if kind == "LGBMClassifier":
                meta["classes"] = encode_labels(wrapper.classes_)
        text = booster.model_to_string().encode()
        write_container(path, model_name=_MODEL, model=text, meta=meta)

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """The booster or wrapper written by ``save``; ``trusted_types`` does not apply."""
        del trusted_types
        import lightgbm  # noqa: PLC0415  (the lightgbm extra, loaded when such a model is)

        content, meta = read_container(path, model_name=_MODEL)
        kind = meta.get("class")
        if kind != "Booster" and kind not in _WRAPPERS:
            raise ValidationFailed(f"{path.name} names an unknown LightGBM class {kind!r}")
        try:
            booster = lightgbm.Booster(model_str=content.decode())
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"{path.name} holds no readable LightGBM model: {exc}") from exc
        if kind == "Booster":
            return booster
        return _rebuild(getattr(lightgbm, kind), booster, meta)

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """``model.predict(frame)``, for boosters and wrappers alike."""
        import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

        return np.asarray(model.predict(frame))  # type: ignore[attr-defined]  # booster or wrapper


def _rebuild(kind: Any, booster: Any, meta: dict[str, Any]) -> Any:  # Any: lightgbm objects
    """A fitted wrapper around ``booster``, with the attributes ``fit`` would have set.

    LightGBM has no public way to wrap a loaded booster; these are the attributes
    its ``fit`` sets (checked by the round-trip tests on every supported release).
    """
    wrapper = kind(**meta.get("params", {}))
    wrapper._Booster = booster
    wrapper.fitted_ = True
    wrapper._objective = meta.get("objective")
    wrapper._n_features = booster.num_feature()
    wrapper._n_features_in = booster.num_feature()
    wrapper._fitted_with_feature_names = bool(meta.get("feature_names"))
    if "classes" in meta:
        from lightgbm.compat import _LGBMLabelEncoder  # noqa: PLC0415

        encoder = _LGBMLabelEncoder().fit(decode_labels(meta["classes"]))
        wrapper._le = encoder
        wrapper._classes = encoder.classes_
        wrapper._n_classes = len(encoder.classes_)
        wrapper._class_map = dict(
            zip(encoder.classes_, encoder.transform(encoder.classes_), strict=True)
        )
    return wrapper
